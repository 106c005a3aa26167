"""Job status: what an upload or a score run is doing, how far it is, and why it failed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from api.deps import SessionDep
from geo.errors import NotFoundError
from geo.models import Job

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])


class JobOut(BaseModel):
    """A job's status, progress (0..1), message, errors and result."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    progress: float
    message: str | None
    params: dict[str, Any]
    result: dict[str, Any] | None
    errors: list[dict[str, Any]] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@router.get("/{job_id}", response_model=JobOut, summary="One job's status and progress")
def get_job(job_id: uuid.UUID, session: SessionDep) -> Job:
    """Return the job; poll it until `status` is `succeeded` or `failed`."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"no job with id {job_id}")
    return job


@router.get("", response_model=list[JobOut], summary="Recent jobs, newest first")
def list_jobs(
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500, description="How many jobs to return"),
    status: str | None = Query(None, description="Only jobs in this status",
                               pattern="^(queued|running|succeeded|failed)$"),
) -> list[Job]:
    """Return recent jobs, optionally filtered by status."""
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    return list(session.scalars(query))
