"""Health of the app and its database."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.deps import EngineDep
from api.version import app_version
from geo.errors import DatabaseUnavailableError
from geo.status import database_status

router = APIRouter(tags=["health"])


class DatabaseHealth(BaseModel):
    """What the database holds and whether it answers."""

    status: Literal["up", "down"]
    postgis: str | None = None
    schema_revision: str | None = None
    localities: int | None = None
    localities_by_level: dict[str, int] | None = None
    raster_layers: int | None = None
    events: int | None = None
    institutions: int | None = None
    observations: int | None = None
    error: str | None = None


class Health(BaseModel):
    """Overall health: the app answers; the database state is reported beside it."""

    status: Literal["ok", "degraded"]
    version: str
    database: DatabaseHealth


@router.get("/healthz", response_model=Health, summary="App and database health")
def healthz(engine: EngineDep) -> JSONResponse:
    """Return 200 when the database is up and migrated, 503 with the reason otherwise."""
    try:
        database = DatabaseHealth(status="up", **database_status(engine))
    except DatabaseUnavailableError as exc:
        database = DatabaseHealth(status="down", error=exc.message)
    healthy = database.status == "up" and database.schema_revision is not None
    body = Health(status="ok" if healthy else "degraded", version=app_version(), database=database)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
