"""One way to reach the database: resolve the URL, build the engine, translate its errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from geo.embedded import EmbeddedCluster
from geo.errors import ConflictError, DatabaseUnavailableError, NotFoundError
from geo.settings import Settings


def embedded_cluster(settings: Settings) -> EmbeddedCluster:
    """Return the embedded cluster object for these settings (nothing is started)."""
    return EmbeddedCluster(
        settings.storage.data_dir, settings.database.embedded_port, settings.database.name
    )


def resolve_database_url(settings: Settings) -> str:
    """Return DATABASE_URL when set, else the URL of the (started or reused) embedded cluster."""
    if settings.database.url:
        return settings.database.url
    return embedded_cluster(settings).ensure_running()


def describe_url(url: str) -> str:
    """Return host:port/database of a URL, never its password."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


def build_engine(url: str, settings: Settings) -> Engine:
    """Return a pooled engine whose statements are bounded by the configured timeout."""
    db = settings.database
    return create_engine(
        url,
        pool_size=db.pool_size,
        max_overflow=db.max_overflow,
        pool_timeout=db.pool_timeout_s,
        pool_pre_ping=True,
        connect_args={
            "connect_timeout": db.connect_timeout_s,
            "options": f"-c statement_timeout={db.statement_timeout_ms}",
            "application_name": "riskatlas",
        },
    )


def check_database(engine: Engine) -> dict[str, Any]:
    """Return server facts (PostGIS version) or raise DatabaseUnavailableError in one sentence."""
    where = describe_url(engine.url.render_as_string(hide_password=True))
    try:
        with engine.connect() as conn:
            postgis = conn.execute(text("SELECT postgis_lib_version()")).scalar()
    except OperationalError as exc:
        raise DatabaseUnavailableError(_explain_operational_error(exc, where)) from None
    except Exception as exc:  # noqa: BLE001 - missing PostGIS surfaces as ProgrammingError
        if "postgis_lib_version" in str(exc):
            raise DatabaseUnavailableError(
                f"the database at {where} has no PostGIS extension; run "
                "CREATE EXTENSION postgis there (Debian: apt-get install postgresql-15-postgis-3)"
            ) from None
        raise
    return {"postgis": postgis}


def _explain_operational_error(exc: OperationalError, where: str) -> str:
    message = str(exc.orig) if exc.orig else str(exc)
    if "password authentication failed" in message or "no password supplied" in message:
        return f"the database at {where} refused the user name or password in DATABASE_URL"
    if "does not exist" in message and "database" in message:
        return f"the database named in DATABASE_URL does not exist at {where}"
    return f"cannot reach the database at {where}; is it running and is DATABASE_URL right?"


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory every caller uses."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def translate_integrity_errors(what: str) -> Iterator[None]:
    """Turn unique and foreign-key violations into ConflictError / NotFoundError."""
    try:
        yield
    except IntegrityError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None)
        if sqlstate == "23505":
            raise ConflictError(f"{what}: already exists", {"detail": detail}) from None
        if sqlstate == "23503":
            raise NotFoundError(f"{what}: refers to something that does not exist",
                                {"detail": detail}) from None
        raise
