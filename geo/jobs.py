"""Jobs: heavy work recorded with status and progress, so clients poll and restarts lose nothing."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from geo.errors import ConflictError, NotFoundError, RiskAtlasError
from geo.models import Job

log = logging.getLogger(__name__)
HOST = socket.gethostname()
UPLOAD_GRACE_S = 15 * 60


def create_job(
    engine: Engine, kind: str, params: dict[str, Any], lock_key: str | None = None
) -> uuid.UUID:
    """Record a queued job and return its id; ConflictError if its lock key is busy."""
    job_id = uuid.uuid4()
    with Session(engine) as session:
        session.add(Job(id=job_id, kind=kind, params=params, lock_key=lock_key, status="queued",
                        worker_pid=os.getpid(), worker_host=HOST))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            busy = session.scalar(
                select(Job.id).where(
                    Job.lock_key == lock_key, Job.status.in_(("queued", "running"))
                )
            )
            raise ConflictError(
                f"another job ({busy}) is already working on {lock_key}; wait for it to finish",
                {"job_id": str(busy) if busy else None, "lock_key": lock_key},
            ) from None
    return job_id


def get_job(engine: Engine, job_id: uuid.UUID) -> Job:
    """Return the job or raise NotFoundError."""
    with Session(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFoundError(f"no job with id {job_id}")
        return job


@dataclass
class JobReporter:
    """Writes progress of one job in short transactions of its own, visible while work runs."""

    engine: Engine
    job_id: uuid.UUID
    listeners: list[Callable[[float, str], None]] = field(default_factory=list)
    _last_written: float = -1.0

    def __call__(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1) and a short message; throttled to 1 % steps."""
        fraction = max(0.0, min(1.0, fraction))
        for listener in self.listeners:
            listener(fraction, message)
        if fraction - self._last_written < 0.01 and fraction < 1.0:
            return
        self._last_written = fraction
        with self.engine.begin() as conn:
            conn.execute(
                update(Job).where(Job.id == self.job_id).values(progress=fraction, message=message)
            )


def run_job(
    engine: Engine,
    job_id: uuid.UUID,
    work: Callable[[JobReporter], dict[str, Any]],
    listeners: list[Callable[[float, str], None]] | None = None,
) -> dict[str, Any]:
    """Run `work` as the job; record its result on success or its errors on failure."""
    _set(engine, job_id, status="running", started_at=func.now())
    reporter = JobReporter(engine, job_id, listeners or [])
    try:
        result = work(reporter)
    except RiskAtlasError as exc:
        errors = exc.details if isinstance(exc.details, list) else [exc.details or {}]
        _set(engine, job_id, status="failed", finished_at=func.now(), message=exc.message,
             errors=[{"code": exc.code, **e} if isinstance(e, dict) else {"detail": e}
                     for e in errors])
        raise
    except BaseException:
        log.exception("job %s failed unexpectedly", job_id)
        _set(engine, job_id, status="failed", finished_at=func.now(),
             message="internal error; the server log has the details",
             errors=[{"code": "internal_error"}])
        raise
    _set(engine, job_id, status="succeeded", finished_at=func.now(), progress=1.0,
         result=result, message="done")
    return result


def fail_job(engine: Engine, job_id: uuid.UUID, message: str) -> None:
    """Mark a job failed before it ran (its preparation went wrong)."""
    _set(engine, job_id, status="failed", finished_at=func.now(), message=message,
         errors=[{"code": "invalid_input", "problem": message}])


def _set(engine: Engine, job_id: uuid.UUID, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(**values))


def recover_interrupted_jobs(engine: Engine, staging_dir: Path) -> int:
    """Fail jobs whose worker on this host died, remove their staged files; return how many."""
    with Session(engine) as session:
        active = session.scalars(select(Job).where(Job.status.in_(("queued", "running")))).all()
        dead = [job for job in active if not _worker_alive(job)]
        for job in dead:
            job.status = "failed"
            job.message = "interrupted: the process running this job stopped before it finished"
            job.errors = [{"code": "interrupted"}]
            job.finished_at = func.now()
        session.commit()
        alive_ids = {str(job.id) for job in active if job not in dead}
    if staging_dir.exists():
        for entry in staging_dir.iterdir():
            if entry.name not in alive_ids and not _upload_in_flight(entry):
                shutil.rmtree(entry, ignore_errors=True)
    return len(dead)


def _upload_in_flight(entry: Path) -> bool:
    # An upload is saved before its job exists; another process may be writing it now.
    # One untouched for UPLOAD_GRACE_S was abandoned by a process that died.
    if not entry.name.startswith("upload-"):
        return False
    try:
        newest = max([entry.stat().st_mtime, *(p.stat().st_mtime for p in entry.iterdir())])
    except OSError:
        return False
    return time.time() - newest < UPLOAD_GRACE_S


def _worker_alive(job: Job) -> bool:
    # A job belongs to the process that created it; another host's jobs cannot be judged here.
    if job.worker_host != HOST or job.worker_pid is None:
        return True
    try:
        os.kill(job.worker_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
