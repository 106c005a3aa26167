"""Score runs: compute every figure of the analysis over current data and store it immutably.

A run reads one snapshot (`inputs.load_inputs`), turns it into the raw component table
(`components`), scores each admin level (`results`) and writes one `score_results` row per
locality (`storage`). Completed runs never change.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from geo.analysis.methodology import parse_methodology
from geo.errors import NotFoundError, ValidationError
from geo.ingest.coverage import current_coverage_warnings
from geo.jobs import create_job, fail_job, run_job
from geo.runs.components import build_raw_table
from geo.runs.inputs import load_inputs
from geo.runs.methodologies import ensure_methodology
from geo.runs.results import run_summary, score_all_levels
from geo.runs.storage import store_results
from geo.settings import Settings

Progress = Callable[[float, str], None]


def start_score_run(engine: Engine, methodology_id: int | None = None,
                    parameters: dict[str, Any] | None = None) -> tuple[int, uuid.UUID]:
    """Record a queued run and its job; return (run id, job id).

    Refuses at once (ValidationError, a 422 over HTTP) when there is nothing to score: no
    localities, or no population table nor population raster.
    """
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT count(*) AS localities, count(*) FILTER (WHERE population > 0) AS people, "
            "EXISTS (SELECT 1 FROM raster_layers WHERE role = 'population') AS raster "
            "FROM localities")).one()
    refuse_unscorable(pd.DataFrame({"population": [1.0] * int(counts.people)
                                    + [np.nan] * int(counts.localities - counts.people)}),
                      bool(counts.raster))
    methodology_id = methodology_id or ensure_methodology(engine)
    job_id = create_job(engine, "score", {"methodology_id": methodology_id,
                                          **(parameters or {})}, lock_key="score")
    try:
        with engine.begin() as conn:
            found = conn.execute(text("SELECT 1 FROM methodologies WHERE id = :id"),
                                 {"id": methodology_id}).scalar()
            if not found:
                raise NotFoundError(f"no methodology with id {methodology_id}")
            run_id = int(conn.execute(text(
                "INSERT INTO score_runs (methodology_id, status, parameters, data_versions, "
                "summary, job_id) VALUES (:m, 'queued', CAST(:p AS jsonb), '{}', '{}', :job) "
                "RETURNING id"),
                {"m": methodology_id, "p": json.dumps(parameters or {}), "job": job_id},
            ).scalar_one())
    except BaseException as exc:
        # The job must not stay queued, or it would hold the run lock for good.
        fail_job(engine, job_id, str(getattr(exc, "message", exc)))
        raise
    return run_id, job_id


def execute_score_run(
    engine: Engine, settings: Settings, run_id: int, job_id: uuid.UUID,
    executor: cf.Executor | None = None,
    listeners: list[Callable[[float, str], None]] | None = None,
) -> dict[str, Any]:
    """Run the whole analysis as job `job_id` and store run `run_id`; return its summary."""
    def work(report: Progress) -> dict[str, Any]:
        _set_run(engine, run_id, status="running")
        try:
            summary = compute_and_store(engine, settings, run_id, report, executor)
        except BaseException:
            _set_run(engine, run_id, status="failed")
            raise
        return {"run_id": run_id, **summary}

    return run_job(engine, job_id, work, listeners)


def _set_run(engine: Engine, run_id: int, **values: Any) -> None:
    assignments = ", ".join(f"{key} = :{key}" for key in values)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE score_runs SET {assignments} WHERE id = :id"),
                     {**values, "id": run_id})


def compute_and_store(engine: Engine, settings: Settings, run_id: int, report: Progress,
                      executor: cf.Executor | None = None) -> dict[str, Any]:
    """Compute every figure for run `run_id` and store them; return the run summary."""
    timings: dict[str, float] = {}
    facts: dict[str, Any] = {}
    started = time.perf_counter()
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT m.document, r.parameters FROM score_runs r JOIN methodologies m "
            "ON m.id = r.methodology_id WHERE r.id = :id"), {"id": run_id}).one()
    methodology = parse_methodology(row.document)
    parameters = dict(row.parameters or {})
    report(0.02, "reading the data")
    inputs = load_inputs(engine)
    refuse_unscorable(inputs.localities, inputs.population is not None)
    timings["read"] = time.perf_counter() - started
    raw, details, gaps = build_raw_table(inputs, parameters, executor, report, timings,
                                         settings, facts, methodology)
    report(0.75, "scoring")
    step = time.perf_counter()
    results, levels = score_all_levels(inputs, raw, methodology, details, gaps)
    timings["score"] = time.perf_counter() - step
    report(0.9, "storing the results")
    step = time.perf_counter()
    store_results(engine, run_id, results)
    timings["store"] = time.perf_counter() - step
    summary = run_summary(inputs, results, timings, levels, methodology, raw) | facts
    with engine.begin() as conn:
        # Layers covering part of the country (geo/ingest/coverage.py): scores outside mislead.
        summary["coverage_warnings"] = current_coverage_warnings(conn)
        conn.execute(text(
            "UPDATE score_runs SET status = 'succeeded', completed_at = now(), "
            "data_versions = CAST(:dv AS jsonb), summary = CAST(:s AS jsonb) WHERE id = :id"),
            {"dv": json.dumps(inputs.data_versions()), "s": json.dumps(summary, default=str),
             "id": run_id})
    report(1.0, "done")
    return summary


def refuse_unscorable(localities: pd.DataFrame, population_raster: bool) -> None:
    """Raise ValidationError when nothing could be scored: no localities, no population."""
    if localities.empty:
        raise ValidationError("there are no localities to score; load boundaries first",
                              {"field": "localities"})
    has_population = pd.to_numeric(localities["population"], errors="coerce").gt(0).any()
    if not has_population and not population_raster:
        raise ValidationError(
            "no population: load a population table (per locality) or a population raster "
            "before scoring; rates per 100,000 people and people-weighted access need it",
            {"field": "population"})


def run_scores(engine: Engine, settings: Settings, *, executor: cf.Executor | None = None,
               listeners: list[Callable[[float, str], None]] | None = None,
               parameters: dict[str, Any] | None = None,
               methodology_id: int | None = None) -> dict[str, Any]:
    """Start and run a score run (default: the shipped methodology); return its summary."""
    run_id, job_id = start_score_run(engine, methodology_id, parameters=parameters)
    return execute_score_run(engine, settings, run_id, job_id, executor, listeners)
