"""A summary of what the database holds, for health checks and `riskatlas db status`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from geo.db import check_database

COUNTS = {
    "raster_layers": "SELECT count(*) FROM raster_layers",
    "events": "SELECT count(*) FROM events",
    "institutions": "SELECT count(*) FROM institutions",
    "observations": "SELECT count(*) FROM observations",
}


def database_status(engine: Engine) -> dict[str, Any]:
    """Return PostGIS version, schema revision and row counts; raise if unreachable."""
    facts: dict[str, Any] = dict(check_database(engine))
    try:
        with engine.connect() as conn:
            facts["schema_revision"] = conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar()
            by_level = conn.execute(
                text("SELECT level, count(*) FROM localities GROUP BY level ORDER BY level")
            ).all()
            facts["localities_by_level"] = {str(level): count for level, count in by_level}
            facts["localities"] = sum(count for _, count in by_level)
            for key, sql in COUNTS.items():
                facts[key] = conn.execute(text(sql)).scalar()
    except (ProgrammingError, OperationalError):
        facts["schema_revision"] = None
    return facts
