"""Ingestion as a job: the one path the API and the CLI share."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from geo.disk import naming_full_storage
from geo.ingest.load import ingest
from geo.ingest.options import parse_options
from geo.jobs import JobReporter, create_job, run_job
from geo.settings import Settings


def lock_key(kind: str, options: Any) -> str:
    """Return what two concurrent uploads must not share: a raster layer's name, an event layer."""
    if kind in ("hazard", "population"):
        return f"raster:{options.name}"
    if kind in ("events", "institutions"):
        return f"{kind}:{options.layer_name}"
    return f"{kind}"


def start_ingest_job(
    engine: Engine, kind: str, raw_options: dict[str, Any], original_name: str
) -> uuid.UUID:
    """Validate the options and record a queued ingest job; ConflictError if its lock is busy."""
    options = parse_options(kind, raw_options, original_name)
    params = {"kind": kind, "file": original_name, "options": options.model_dump()}
    return create_job(engine, f"ingest:{kind}", params, lock_key(kind, options))


def run_ingest_job(
    engine: Engine,
    settings: Settings,
    job_id: uuid.UUID,
    kind: str,
    path: Path,
    original_name: str,
    raw_options: dict[str, Any],
    listeners: list[Callable[[float, str], None]] | None = None,
    staged_upload_dir: Path | None = None,
) -> dict[str, Any]:
    """Run the ingest as job `job_id`; remove the staged upload whatever happens."""
    try:
        def work(reporter: JobReporter) -> dict[str, Any]:
            # A full disk is the operator's problem, not the file's: 507 naming the disk.
            with naming_full_storage(settings.storage, where=settings.storage.staging_dir):
                return ingest(engine, settings, kind, path, original_name, raw_options,
                              reporter, job_id)

        return run_job(engine, job_id, work, listeners)
    finally:
        shutil.rmtree(settings.storage.staging_dir / str(job_id), ignore_errors=True)
        if staged_upload_dir is not None:
            shutil.rmtree(staged_upload_dir, ignore_errors=True)


def check_ingest(
    engine: Engine, settings: Settings, kind: str, path: Path, original_name: str,
    raw_options: dict[str, Any],
) -> dict[str, Any]:
    """Return the dry run of an ingest: what would load, every problem; nothing is written."""
    from geo.ingest.load import check_upload

    return check_upload(engine, settings, kind, path, original_name, raw_options)
