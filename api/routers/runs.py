"""Score runs and methodologies: start a run as a job, read runs, store methodology versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from api.auth import require_role
from api.deps import EngineDep, SessionDep
from geo.errors import NotFoundError
from geo.models import Methodology, ScoreRun
from geo.runs.compare import compare_csv, compare_geojson, compare_runs
from geo.runs.lifecycle import execute_score_run, start_score_run
from geo.runs.lookup import latest_run_id
from geo.runs.methodologies import ensure_methodology

router = APIRouter(prefix="/api/v1", tags=["runs"])


class RunOut(BaseModel):
    """A score run: its methodology, the data versions it used, status and summary."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    methodology_id: int
    status: str
    data_versions: dict[str, Any]
    parameters: dict[str, Any]
    summary: dict[str, Any]
    job_id: uuid.UUID | None
    created_at: datetime
    completed_at: datetime | None


class MethodologyOut(BaseModel):
    """A stored, versioned methodology document."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    version: int
    document: dict[str, Any]
    created_at: datetime


class RunRequest(BaseModel):
    """What to compute: a methodology (default: the newest stored) and run parameters."""

    methodology_id: int | None = Field(None, ge=1, le=2**31 - 1,
                                       description="Stored methodology to use")
    window_end: str | None = Field(None, description="Last day of the conflict window, ISO date",
                                   pattern=r"^\d{4}-\d{2}-\d{2}$")
    window_months: int = Field(12, ge=1, le=120, description="Length of the conflict window")
    band_km: float = Field(25, gt=0, le=500, description="Spill-over band around a locality")


class RunStarted(BaseModel):
    """A run that has been queued, and where to poll its job."""

    run_id: int
    job_id: uuid.UUID
    status_url: str


def resolve_run(session: Any, engine: Any, run: str) -> ScoreRun:
    """Return the run named by id or `latest`, or raise NotFoundError."""
    if run == "latest":
        run_id = latest_run_id(engine)
        if run_id is None:
            raise NotFoundError("no score run has completed yet; start one with POST /api/v1/runs")
    elif run.isdigit() and len(run) < 10:
        run_id = int(run)
    else:
        raise NotFoundError(f"no run {run!r}: use a run id or 'latest'")
    found = session.get(ScoreRun, run_id)
    if found is None:
        raise NotFoundError(f"no run with id {run_id}")
    return found


@router.post("/runs", response_model=RunStarted, status_code=202, summary="Start a score run")
def start_run(
    request: Request, engine: EngineDep,
    body: RunRequest = Body(default_factory=RunRequest),
    _: str = Depends(require_role("uploader")),
) -> JSONResponse:
    """Queue a full score run as a job and answer at once; poll the job for progress."""
    parameters = body.model_dump(exclude={"methodology_id"}, exclude_none=True)
    run_id, job_id = start_score_run(engine, body.methodology_id, parameters)
    request.app.state.jobs.submit(execute_score_run, engine, request.app.state.settings,
                                  run_id, job_id)
    status_url = str(request.url_for("get_job", job_id=job_id))
    return JSONResponse(RunStarted(run_id=run_id, job_id=job_id, status_url=status_url)
                        .model_dump(mode="json"), status_code=202)


@router.get("/runs", response_model=list[RunOut], summary="Score runs, newest first")
def list_runs(session: SessionDep) -> list[ScoreRun]:
    """Return every run, newest first."""
    return list(session.scalars(select(ScoreRun).order_by(ScoreRun.id.desc())))


@router.get("/runs/{run}", response_model=RunOut, summary="One score run (id or `latest`)")
def get_run(run: str, session: SessionDep, engine: EngineDep) -> ScoreRun:
    """Return the run by id, or the newest completed one for `latest`."""
    return resolve_run(session, engine, run)


LEVEL_QUERY = Query(None, ge=0, le=20, description="Only localities of this admin level")


def _compared(session: Any, engine: Any, a: str, b: str, level: int | None) -> dict[str, Any]:
    before, after = resolve_run(session, engine, a), resolve_run(session, engine, b)
    with engine.connect() as conn:
        return compare_runs(conn, before.id, after.id, level)


@router.get("/runs/{a}/compare/{b}.{fmt}", summary="Export a run comparison (CSV or GeoJSON)",
            response_class=StreamingResponse)
def export_run_comparison(
    a: str, b: str, session: SessionDep, engine: EngineDep,
    fmt: str = FastApiPath(..., pattern="^(csv|geojson)$", description="csv or geojson"),
    level: int | None = LEVEL_QUERY,
) -> StreamingResponse:
    """The comparison below as CSV (one row per locality) or GeoJSON (with outlines)."""
    comparison = _compared(session, engine, a, b, level)
    name = f"runs-{comparison['before']['id']}-vs-{comparison['after']['id']}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"',
               "X-Comparable": str(comparison["comparable"]).lower()}
    if fmt == "csv":
        return StreamingResponse(compare_csv(comparison), media_type="text/csv; charset=utf-8",
                                 headers=headers)
    with engine.connect() as conn:
        body = "".join(compare_geojson(conn, comparison))
    return StreamingResponse(iter([body]), media_type="application/geo+json", headers=headers)


@router.get("/runs/{a}/compare/{b}", summary="Compare two runs locality by locality")
def compare_two_runs(a: str, b: str, session: SessionDep, engine: EngineDep,
                     level: int | None = LEVEL_QUERY) -> dict[str, Any]:
    """Per locality the change from run `a` to run `b` (ids or `latest`).

    Composite, pillars, dimensions, rank and stressed-dimension count, and which
    localities entered or left compounded stress. `comparable` is false (with `caveats`)
    when the runs do not share fixed goalposts: then part of a change is the method's.
    """
    return _compared(session, engine, a, b, level)


@router.get("/methodologies", response_model=list[MethodologyOut], summary="Methodologies")
def list_methodologies(session: SessionDep) -> list[Methodology]:
    """Return every stored methodology version."""
    return list(session.scalars(select(Methodology).order_by(Methodology.id)))


@router.get("/methodologies/{methodology_id}", response_model=MethodologyOut,
            summary="One methodology version")
def get_methodology(
    session: SessionDep,
    methodology_id: int = FastApiPath(..., ge=1, le=2**31 - 1, description="Methodology id"),
) -> Methodology:
    """Return the stored document."""
    found = session.get(Methodology, methodology_id)
    if found is None:
        raise NotFoundError(f"no methodology with id {methodology_id}")
    return found


@router.post("/methodologies", response_model=MethodologyOut, status_code=201,
             summary="Store a methodology document (validated; a change is a new version)")
def create_methodology(
    session: SessionDep, engine: EngineDep, document: dict[str, Any] = Body(...),
    _: str = Depends(require_role("admin")),
) -> Methodology:
    """Validate the document against the schema and store it as the next version."""
    methodology_id = ensure_methodology(engine, document)
    found = session.get(Methodology, methodology_id)
    assert found is not None
    return found
