"""Load the synthetic demo region through the same ingestion jobs a user's uploads go through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from geo.demo.generate import generate_demo
from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.settings import Settings

DEMO_ROOT_CODE = "XY01"
Progress = Callable[[float, str], None]


@dataclass
class DemoSummary:
    """What `riskatlas demo load` did."""

    already_loaded: bool
    seed: int
    loaded: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """Return a short human-readable account."""
        if self.already_loaded:
            return "the demo region is already loaded (governorate XY01); nothing to do"
        lines = [f"loaded the demo region (seed {self.seed}):"]
        lines += [f"  {item['kind']:<13} {item['file']:<28} {item['summary']}"
                  for item in self.loaded]
        return "\n".join(lines)


def demo_loaded(engine: Engine) -> bool:
    """Return True when the demo governorate is in the database."""
    with engine.connect() as conn:
        return bool(conn.execute(
            text("SELECT 1 FROM localities WHERE code = :code"), {"code": DEMO_ROOT_CODE}
        ).scalar())


def load_demo(
    engine: Engine, settings: Settings, *, seed: int = 20261125, progress: Progress | None = None
) -> DemoSummary:
    """Generate the demo files and ingest each one as a job; skip when already loaded."""
    report = progress or (lambda fraction, message: None)
    if demo_loaded(engine):
        return DemoSummary(already_loaded=True, seed=seed)
    out_dir = settings.storage.data_dir / "demo" / str(seed)
    report(0.0, "generating the demo region")
    manifest = generate_demo(out_dir, seed=seed)
    summary = DemoSummary(already_loaded=False, seed=seed,
                          counts=manifest.to_dict()["counts"])
    steps = len(manifest.files)
    for index, demo_file in enumerate(manifest.files):
        def step(fraction: float, message: str, index: int = index,
                 name: str = demo_file.path.name) -> None:
            report((index + 0.1 + 0.9 * fraction) / steps, f"{name}: {message}")

        job_id = start_ingest_job(engine, demo_file.kind, demo_file.options, demo_file.path.name)
        result = run_ingest_job(engine, settings, job_id, demo_file.kind, demo_file.path,
                                demo_file.path.name, demo_file.options, [step])
        summary.loaded.append({"kind": demo_file.kind, "file": demo_file.path.name,
                               "summary": _short(result)})
    report(1.0, "done")
    return summary


def _short(result: dict[str, Any]) -> str:
    keys = ("rows", "levels", "layer", "version", "by_type", "periods", "population_by_level")
    return ", ".join(f"{k}={result[k]}" for k in keys if k in result)
