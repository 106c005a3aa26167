#!/usr/bin/env python3
"""A full score run over 20,000 localities: every step's seconds and the peak memory.

Data: the anchor set (../shared/bench-anchors/make_data.py: 20,000 Voronoi localities with
~110 vertices in /tmp/benchdata/localities.gpkg and a 10,000 x 10,000 float32 COG); built by
bench_exposure.py's helper when missing. On top of it this script makes, deterministically:
a 2,000 x 2,000 population raster, 5,000 dated conflict events, 2,000 institutions, and
survey observations (4 indicators x 2 periods x 3 subgroups per locality). Everything goes
in through `geo.ingest.load.ingest` into a private PostGIS cluster under /tmp; the one COG
serves as three hazard layers (flood, landslide, drought), as three uploads of 400 MB each
would only time the ingest again.

    .venv/bin/python bench/bench_score_run.py            # 20,000 localities
    .venv/bin/python bench/bench_score_run.py --limit 5000
    .venv/bin/python bench/bench_score_run.py --vs-exactextract   # + exposure side by side

--vs-exactextract then times, on the same localities (read from the database like the run)
and the same three layer paths: bare exact_extract(mean, max, count) per raster
(raster-sequential, the faster strategy here) in one process and split by centroid x-order
over two, and our exposure step alone (run_exposure_layers) with one and two workers.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_bounds
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geo.db import build_engine  # noqa: E402
from geo.embedded import EmbeddedCluster  # noqa: E402
from geo.ingest.load import ingest  # noqa: E402
from geo.migrate import upgrade  # noqa: E402
from geo.runs.lifecycle import run_scores  # noqa: E402
from geo.runs.methodologies import ensure_methodology  # noqa: E402
from geo.settings import DatabaseSettings, Settings, StorageSettings  # noqa: E402

DATA = Path(os.environ.get("BENCH_DATA", "/tmp/benchdata"))


def peak_rss_mb() -> float:
    """Return the larger of this process's and its children's peak RSS, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def tree_rss_mb(root: int) -> float:
    """Return the resident memory of process `root` and its Python descendants, in MB.

    Pool workers count (they do the exposure work); the PostgreSQL cluster does not.
    """
    parents: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:]
        parents.setdefault(int(rest.split()[1]), []).append(int(entry.name))
        names[int(entry.name)] = name
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid != root and not names.get(pid, "").startswith("python"):
            continue
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(parents.get(pid, []))
    return total / 1024


# Progress messages of geo.runs, mapped to the step names of its timings.
STEP_OF_MESSAGE = {"reading the data": "read", "conflict": "conflict",
                   "service access": "access", "indicators": "indicators",
                   "subgroups and trends": "subgroups",
                   "scoring": "score", "storing the results": "store", "done": "done"}


class StepMemory:
    """Sample this process tree's RSS every 50 ms and keep the peak of each run step."""

    def __init__(self) -> None:
        self.step = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def listener(self, fraction: float, message: str) -> None:
        """Follow the run's progress messages to know which step is running."""
        self.step = STEP_OF_MESSAGE.get(message, "exposure" if message.startswith("exposure")
                                        else self.step)

    def _sample(self) -> None:
        pid = os.getpid()
        while not self._stop.is_set():
            rss = tree_rss_mb(pid)
            self.peaks[self.step] = max(self.peaks.get(self.step, 0.0), rss)
            self._stop.wait(0.05)

    def __enter__(self) -> StepMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ensure_anchor_data() -> None:
    """Build the anchor polygons and COG with bench_exposure's helper when missing."""
    if (DATA / "localities.gpkg").exists() and (DATA / "hazard_cog.tif").exists():
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_exposure import make_data

    print("building the anchor data (a few minutes)...")
    make_data(str(DATA), 20_000, 10_000)


def make_inputs(workdir: Path, limit: int, rng: np.random.Generator) -> dict[str, Path]:
    """Write localities, population, events, institutions and survey files; return paths."""
    localities = gpd.read_file(DATA / "localities.gpkg").head(limit)
    localities["code"] = [f"BN{i:05d}" for i in localities["id"]]
    localities["name"] = [f"Locality {i}" for i in localities["id"]]
    paths = {"localities": workdir / "localities.gpkg"}
    localities[["code", "name", "geometry"]].to_file(paths["localities"], driver="GPKG")
    west, south, east, north = localities.total_bounds
    paths["population"] = workdir / "population.tif"
    people = rng.gamma(0.6, 40.0, size=(2000, 2000)).astype("float32")
    with rasterio.open(paths["population"], "w", driver="GTiff", width=2000, height=2000,
                       count=1, dtype="float32", crs="EPSG:4326", nodata=-1, tiled=True,
                       transform=from_bounds(west, south, east, north, 2000, 2000)) as out:
        out.write(people, 1)
    lon, lat = rng.uniform(west, east, 5000), rng.uniform(south, north, 5000)
    dates = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 900, 5000), "D")
    paths["events"] = workdir / "events.csv"
    pd.DataFrame({"event_date": dates.strftime("%Y-%m-%d"), "event_type": "Battles",
                  "actor1": "Group A", "fatalities": rng.poisson(1.5, 5000),
                  "latitude": lat, "longitude": lon}).to_csv(paths["events"], index=False)
    paths["institutions"] = workdir / "institutions.csv"
    kinds = rng.choice(["health_centre", "hospital", "school_primary", "school_secondary"], 2000)
    pd.DataFrame({"name": [f"Site {i}" for i in range(2000)], "type": kinds,
                  "latitude": rng.uniform(south, north, 2000),
                  "longitude": rng.uniform(west, east, 2000)}).to_csv(paths["institutions"],
                                                                       index=False)
    paths["indicators"] = workdir / "indicators.csv"
    pd.DataFrame({"code": ["poverty_rate", "food_insecurity", "stunting", "school_attendance"],
                  "name": ["Poverty", "Food insecurity", "Stunting", "School attendance"],
                  "dimension": ["economic", "food", "health", "education"],
                  "polarity": ["higher_is_worse"] * 3 + ["higher_is_better"],
                  "cutoff": [30, 25, 20, 80], "unit": ["%"] * 4}).to_csv(paths["indicators"],
                                                                          index=False)
    rows = []
    for indicator in ("poverty_rate", "food_insecurity", "stunting", "school_attendance"):
        for period in ("2024", "2026"):
            for subgroup in ("all", "sex=female", "disability=yes"):
                rows.append(pd.DataFrame({
                    "locality_code": localities["code"], "indicator": indicator,
                    "period": period, "subgroup": subgroup,
                    "value": rng.uniform(5, 95, len(localities)).round(1),
                    "sample_size": rng.integers(3, 400, len(localities))}))
    paths["observations"] = workdir / "observations.csv"
    pd.concat(rows).to_csv(paths["observations"], index=False)
    return paths


def _bare_part(paths: list[str], part: gpd.GeoDataFrame) -> int:
    """Return the rows of bare exact_extract(mean, max, count) over each raster in turn."""
    from exactextract import exact_extract

    return sum(len(exact_extract(path, part, ["mean", "max", "count"], output="pandas",
                                 strategy="raster-sequential")) for path in paths)


def exposure_side_by_side(engine: object, paths: list[str], population: str | None
                          ) -> list[tuple[str, float]]:
    """Return (case, seconds) for bare exactextract and our exposure step, 1 and 2 cores."""
    from geo.analysis import exposure
    from geo.runs.inputs import load_inputs

    inputs = load_inputs(engine)  # type: ignore[arg-type]
    localities = inputs.localities[["geom"]].set_geometry("geom")
    layers = [exposure.HazardLayer(h.path, h.exposure_threshold(), h.polarity,
                                   h.level_thresholds, h.level_share) for h in inputs.hazards]
    bounds = localities.geometry.bounds
    order = np.argsort(((bounds.minx + bounds.maxx) / 2).to_numpy())
    halves = [localities.iloc[ix] for ix in np.array_split(order, 2)]
    cases: list[tuple[str, float]] = []

    def timed(name: str, work: object) -> None:
        started = time.perf_counter()
        work()  # type: ignore[operator]
        cases.append((name, time.perf_counter() - started))
        print(f"  {name:<34}{cases[-1][1]:>8.1f} s", flush=True)

    timed("bare exactextract, 1 process", lambda: _bare_part(paths, localities))
    with mp.get_context("fork").Pool(2) as pool:
        timed("bare exactextract, 2 processes",
              lambda: pool.starmap(_bare_part, [(paths, half) for half in halves]))
    timed("ours (exposure step), 1 worker", lambda: exposure.run_exposure_layers(
        localities, layers, population_path=population, workers=1))
    timed("ours (exposure step), 2 workers", lambda: exposure.run_exposure_layers(
        localities, layers, population_path=population, workers=2))
    return cases


def relative_variant() -> dict:
    """Return the default methodology with every component scaled relative to the country."""
    from geo.analysis.methodology import load_default_methodology

    document = load_default_methodology().model_dump(mode="json")
    document["name"] = "riskatlas-default-relative"
    for component in document["components"]:
        component.update(scale="relative", goalposts=None,
                         cap_percentiles=[2, 98] if component["transform"] == "log" else None)
    return document


def rank_agreement(engine: object, first: int, second: int) -> float:
    """Return the Spearman correlation of two runs' composites over the same localities."""
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(text(
            "SELECT a.composite, b.composite FROM score_results a JOIN score_results b "
            "ON a.locality_id = b.locality_id WHERE a.run_id = :a AND b.run_id = :b "
            "AND a.composite IS NOT NULL AND b.composite IS NOT NULL"),
            {"a": first, "b": second}).all()
    frame = pd.DataFrame(rows, columns=["a", "b"])
    return float(frame["a"].rank().corr(frame["b"].rank()))


def main() -> None:
    """Load the data, run one full score run, print a table of step times and memory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=20_000, help="localities to use")
    parser.add_argument("--vs-exactextract", action="store_true",
                        help="after the run, time bare exactextract and our exposure step "
                             "alone on the same inputs (1 and 2 cores)")
    args = parser.parse_args()
    ensure_anchor_data()
    root = Path(tempfile.mkdtemp(prefix="riskatlas-bench-", dir="/tmp"))
    root.chmod(0o755)
    cluster = EmbeddedCluster(root / "data", 55477)
    try:
        url = cluster.ensure_running()
        upgrade(url)
        settings = Settings(database=DatabaseSettings(url=url),
                            storage=StorageSettings(data_dir=root / "data"))
        engine = build_engine(url, settings)
        paths = make_inputs(root, args.limit, np.random.default_rng(7))
        timings: list[tuple[str, float]] = []
        loads = [("localities", paths["localities"], {"level": 1}),
                 ("population", paths["population"], {"name": "population"}),
                 ("hazard", DATA / "hazard_cog.tif", {"name": "flood", "kind": "flood"}),
                 ("events", paths["events"], {}), ("institutions", paths["institutions"], {}),
                 ("indicators", paths["indicators"], {}),
                 ("observations", paths["observations"], {})]
        for kind, path, options in loads:
            started = time.perf_counter()
            ingest(engine, settings, kind, path, path.name, options)
            timings.append((f"ingest {kind}", time.perf_counter() - started))
        with engine.begin() as conn:
            flood_path = conn.execute(text(
                "SELECT v.path FROM raster_versions v JOIN raster_layers l ON l.id = v.layer_id "
                "WHERE l.name = 'flood'")).scalar_one()
            for kind in ("landslide", "drought"):
                # The same COG again under its own name (paths are unique per version).
                alias = root / f"{kind}.tif"
                alias.symlink_to(flood_path)
                conn.execute(text(
                    "WITH l AS (INSERT INTO raster_layers (name, role, kind, polarity, "
                    "level_share) VALUES (:k, 'hazard', :k, 'higher_is_worse', 0.1) RETURNING id) "
                    "INSERT INTO raster_versions (layer_id, version, path, crs, width, height, "
                    "resolution, nodata, dtype, statistics, footprint) SELECT l.id, 1, :path, "
                    "v.crs, v.width, v.height, v.resolution, v.nodata, v.dtype, v.statistics, "
                    "v.footprint FROM l, raster_versions v WHERE v.path = :flood"),
                    {"k": kind, "path": str(alias), "flood": flood_path})
        started = time.perf_counter()
        with StepMemory() as memory:
            summary = run_scores(engine, settings, listeners=[memory.listener])
        total = time.perf_counter() - started
        print(f"\nfull score run over {summary['localities']:,} localities "
              f"(3 hazard layers of 10,000 x 10,000, population 2,000 x 2,000)")
        print(f"{'step':<24}{'seconds':>10}{'peak RSS MB':>14}")
        for name, seconds in timings:
            print(f"{name:<24}{seconds:>10.1f}")
        for name, seconds in summary["seconds"].items():
            peak = memory.peaks.get(name)
            print(f"{'run: ' + name:<24}{seconds:>10.1f}"
                  f"{f'{peak:,.0f}' if peak is not None else '-':>14}")
        print(f"{'run: total':<24}{total:>10.1f}{max(memory.peaks.values()):>14,.0f}")
        print("peak RSS per step: this process plus its Python workers, sampled every 50 ms")
        print(f"peak RSS (this process and children, whole script): {peak_rss_mb():,.0f} MB")
        # The same run with the other kind of goalposts. The default methodology scales
        # every component between fixed goalposts; the variant makes each one relative to
        # the country (min-max or percentile caps over the finest localities). Boundaries
        # and rasters are unchanged, so exposure comes from the first run's stored tables.
        started = time.perf_counter()
        again = run_scores(engine, settings, methodology_id=ensure_methodology(
            engine, relative_variant()))
        relative_seconds = time.perf_counter() - started
        print(f"\nscore run, default methodology (fixed goalposts): {total:.1f} s, "
              f"{summary['scored']:,} of {summary['localities']:,} scored")
        print(f"same run, every component relative to the country: {relative_seconds:.1f} s "
              f"({again['exposure_layers_reused']} of 3 layers' exposure reused), "
              f"{again['scored']:,} scored")
        print("rank agreement of the two runs (Spearman, composite): "
              f"{rank_agreement(engine, summary['run_id'], again['run_id']):.3f}")
        if args.vs_exactextract:
            with engine.connect() as conn:
                rows = conn.execute(text(
                    "SELECT l.role, v.path FROM raster_versions v JOIN raster_layers l "
                    "ON l.id = v.layer_id ORDER BY l.id")).all()
            paths = [path for role, path in rows if role == "hazard"]
            population = next((path for role, path in rows if role == "population"), None)
            print("\nexposure side by side (same localities, same three layer paths):")
            cases = dict(exposure_side_by_side(engine, paths, population))
            for cores in (1, 2):
                suffix = "1 process" if cores == 1 else "2 processes"
                ours = cases[f"ours (exposure step), {cores} worker{'s' if cores > 1 else ''}"]
                print(f"  ours / bare exactextract on {cores} core(s): "
                      f"{ours / cases[f'bare exactextract, {suffix}']:.2f}")
        load1, load5, _ = os.getloadavg()
        print(f"load average during the run: {load1:.1f} (1 min), {load5:.1f} (5 min) "
              f"on {os.cpu_count()} cores")
        engine.dispose()
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
