"""The data model: every concept of DESIGN.md as a table in PostGIS (EPSG:4326)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES = ("public", "analyst", "uploader", "admin")
JOB_STATES = ("queued", "running", "succeeded", "failed")
DATASET_KINDS = (
    "localities", "population", "hazard", "events", "institutions",
    "indicators", "observations", "priorities", "households",
)
RASTER_ROLES = ("hazard", "population")
POLARITIES = ("higher_is_worse", "higher_is_better")
DIMENSIONS = (
    "economic", "food", "health", "environmental", "personal", "community", "political",
    "education", "infrastructure",
)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _now() -> Any:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Base(DeclarativeBase):
    """Declarative base sharing one naming convention, so migrations name constraints alike."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Job(Base):
    """Heavy work (ingestion, score runs), recorded so clients poll and restarts lose nothing."""

    __tablename__ = "jobs"
    __table_args__ = (CheckConstraint(_in("status", JOB_STATES), name="status"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    errors: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    lock_key: Mapped[str | None] = mapped_column(String(200))
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_host: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _now()
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# Only one job per lock key (e.g. one upload of a layer name) may be queued or running.
Index(
    "uq_jobs_active_lock_key", Job.lock_key, unique=True,
    postgresql_where=Job.status.in_(("queued", "running")),
)


class Dataset(Base):
    """One successful ingestion: provenance for every row it brought and every run that used it."""

    __tablename__ = "datasets"
    __table_args__ = (CheckConstraint(_in("kind", DATASET_KINDS), name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(Text)
    source_filename: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    row_count: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    report: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _now()


class Locality(Base):
    """An administrative unit or village with a stable P-code style code."""

    __tablename__ = "localities"
    __table_args__ = (CheckConstraint("level >= 0 AND level <= 10", name="level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(SmallInteger, index=True)
    parent_code: Mapped[str | None] = mapped_column(
        String(64), ForeignKey("localities.code", ondelete="RESTRICT"), index=True
    )
    population: Mapped[float | None] = mapped_column(Float)
    population_year: Mapped[int | None] = mapped_column(SmallInteger)
    area_km2: Mapped[float | None] = mapped_column(Float)
    names: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    # True for an ancestor made by dissolving its children's file on their parent-code
    # column; the real boundary file of that level replaces it when it is loaded.
    derived: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    geom: Mapped[Any] = mapped_column(Geometry("MULTIPOLYGON", srid=4326, spatial_index=True))


class RasterLayer(Base):
    """A named hazard or population layer; its content lives in versions."""

    __tablename__ = "raster_layers"
    __table_args__ = (
        CheckConstraint(_in("role", RASTER_ROLES), name="role"),
        CheckConstraint(_in("polarity", POLARITIES), name="polarity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(40))
    unit: Mapped[str | None] = mapped_column(String(40))
    polarity: Mapped[str] = mapped_column(String(20), default="higher_is_worse")
    threshold: Mapped[float | None] = mapped_column(Float)
    level_thresholds: Mapped[dict[str, float] | None] = mapped_column(JSONB)
    level_share: Mapped[float] = mapped_column(Float, default=0.1)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()

    versions: Mapped[list[RasterVersion]] = relationship(
        back_populates="layer", order_by="RasterVersion.version"
    )


class RasterVersion(Base):
    """One uploaded version of a raster layer, stored as a COG under the data directory."""

    __tablename__ = "raster_versions"
    __table_args__ = (UniqueConstraint("layer_id", "version", name="uq_raster_versions_layer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer_id: Mapped[int] = mapped_column(ForeignKey("raster_layers.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text, unique=True)
    crs: Mapped[str] = mapped_column(Text)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    resolution: Mapped[list[float]] = mapped_column(JSONB)
    nodata: Mapped[float | None] = mapped_column(Float)
    dtype: Mapped[str] = mapped_column(String(20))
    value_kind: Mapped[str | None] = mapped_column(String(20))
    statistics: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()
    footprint: Mapped[Any] = mapped_column(Geometry("POLYGON", srid=4326, spatial_index=True))

    layer: Mapped[RasterLayer] = relationship(back_populates="versions")


class EventLayer(Base):
    """A named collection of dated events (conflict and violence, or other incidents)."""

    __tablename__ = "event_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(40), default="conflict")
    description: Mapped[str | None] = mapped_column(Text)
    # A new upload under the same name replaces the layer's events and bumps the version.
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class Event(Base):
    """A dated point event: date, type, actor, fatalities."""

    __tablename__ = "events"
    __table_args__ = (CheckConstraint("fatalities >= 0", name="fatalities"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer_id: Mapped[int] = mapped_column(
        ForeignKey("event_layers.id", ondelete="CASCADE"), index=True
    )
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    event_date: Mapped[date] = mapped_column(Date, index=True)
    event_type: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(Text)
    fatalities: Mapped[int | None] = mapped_column(Integer)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))


class InstitutionLayer(Base):
    """A named institution inventory; a new upload under the same name replaces it whole."""

    __tablename__ = "institution_layers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()


class Institution(Base):
    """A point of the institution inventory: health centre, school, NGO, ..."""

    __tablename__ = "institutions"
    __table_args__ = (CheckConstraint("capacity IS NULL OR capacity >= 0", name="capacity"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    layer_id: Mapped[int | None] = mapped_column(
        ForeignKey("institution_layers.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(40), index=True)
    name: Mapped[str | None] = mapped_column(Text)
    capacity: Mapped[float | None] = mapped_column(Float)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    geom: Mapped[Any] = mapped_column(Geometry("POINT", srid=4326, spatial_index=True))


class Indicator(Base):
    """What an observation measures, in which human-security dimension, and when it deprives."""

    __tablename__ = "indicators"
    __table_args__ = (
        CheckConstraint(_in("dimension", DIMENSIONS), name="dimension"),
        CheckConstraint(_in("polarity", POLARITIES), name="polarity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(Text)
    dimension: Mapped[str] = mapped_column(String(20))
    polarity: Mapped[str] = mapped_column(String(20))
    cutoff: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str | None] = mapped_column(String(40))
    target: Mapped[float | None] = mapped_column(Float)
    # Kish's design effect of the survey behind this indicator: n / deff independent answers.
    design_effect: Mapped[float | None] = mapped_column(Float)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))


class Observation(Base):
    """A survey, administrative or participatory value for a locality, period and subgroup."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint(
            "locality_id", "indicator_id", "period", "subgroup", name="uq_observations_cell"
        ),
        CheckConstraint("sample_size IS NULL OR sample_size >= 0", name="sample_size"),
        CheckConstraint("standard_error IS NULL OR standard_error >= 0", name="standard_error"),
        CheckConstraint("ci_low IS NULL OR ci_high IS NULL OR ci_low <= ci_high",
                        name="interval"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    locality_id: Mapped[int] = mapped_column(
        ForeignKey("localities.id", ondelete="CASCADE"), index=True
    )
    indicator_id: Mapped[int] = mapped_column(
        ForeignKey("indicators.id", ondelete="CASCADE"), index=True
    )
    period: Mapped[str] = mapped_column(String(40))
    subgroup: Mapped[str] = mapped_column(String(200), default="all")
    value: Mapped[float] = mapped_column(Float)
    sample_size: Mapped[int | None] = mapped_column(Integer)
    # The source's own uncertainty, when it publishes one (design-based SE or interval).
    standard_error: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))


class HouseholdRecord(Base):
    """One person of household survey microdata: weight, subgroup attributes, indicator values."""

    __tablename__ = "household_records"
    __table_args__ = (
        UniqueConstraint("locality_id", "period", "household_id", "person_id",
                         name="uq_household_records_person"),
        CheckConstraint("weight > 0", name="weight"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    locality_id: Mapped[int] = mapped_column(
        ForeignKey("localities.id", ondelete="CASCADE"), index=True
    )
    period: Mapped[str] = mapped_column(String(40))
    household_id: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[str] = mapped_column(String(100))
    weight: Mapped[float] = mapped_column(Float)
    attributes: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    indicator_values: Mapped[dict[str, float | None]] = mapped_column(JSONB, default=dict)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))


class CommunityPriority(Base):
    """A need that a locality's own forum ranked, kept beside the evidence."""

    __tablename__ = "community_priorities"
    __table_args__ = (
        UniqueConstraint("locality_id", "forum_date", "rank", name="uq_community_priorities_rank"),
        CheckConstraint("rank >= 1", name="rank"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    locality_id: Mapped[int] = mapped_column(
        ForeignKey("localities.id", ondelete="CASCADE"), index=True
    )
    forum_date: Mapped[date] = mapped_column(Date)
    rank: Mapped[int] = mapped_column(SmallInteger)
    need: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))


class Methodology(Base):
    """A versioned scoring document: components, dimensions, pillars, weights, thresholds."""

    __tablename__ = "methodologies"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_methodologies_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _now()


class ScoreRun(Base):
    """One computation of all scores; completed runs are immutable."""

    __tablename__ = "score_runs"
    __table_args__ = (CheckConstraint(_in("status", JOB_STATES), name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    methodology_id: Mapped[int] = mapped_column(ForeignKey("methodologies.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    data_versions: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    summary: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        UUID(as_uuid=True), ForeignKey("jobs.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = _now()
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ScoreResult(Base):
    """A locality's scores in one run: composite, pillars, dimensions, components and flags."""

    __tablename__ = "score_results"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("score_runs.id", ondelete="CASCADE"), primary_key=True
    )
    locality_id: Mapped[int] = mapped_column(
        ForeignKey("localities.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    composite: Mapped[float | None] = mapped_column(Float)
    pillars: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    dimensions: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    components: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    completeness: Mapped[float | None] = mapped_column(Float)
    stressed_dimensions: Mapped[int | None] = mapped_column(SmallInteger)
    compounded: Mapped[bool | None] = mapped_column(Boolean)
    hotspot: Mapped[str | None] = mapped_column(String(20))
    quadrant: Mapped[str | None] = mapped_column(String(40))
    rank: Mapped[int | None] = mapped_column(Integer)
    rank_in_parent: Mapped[int | None] = mapped_column(Integer)
    rank_low: Mapped[int | None] = mapped_column(Integer)
    rank_high: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ApiKey(Base):
    """An API key, stored only as a hash, granting one role."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LocalityTileGeometry(Base):
    """A locality's outline in Web Mercator, simplified once per zoom band, for vector tiles."""

    __tablename__ = "locality_tile_geometry"

    locality_id: Mapped[int] = mapped_column(
        ForeignKey("localities.id", ondelete="CASCADE"), primary_key=True
    )
    # Copied from localities so a tile needs no join with them; refreshed with the geometry.
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(Text)
    level: Mapped[int] = mapped_column(SmallInteger, index=True)
    population: Mapped[float | None] = mapped_column(Float)
    geom_z0_5: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=True))
    geom_z6_8: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=True))
    geom_z9_10: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=True))
    geom_z11_12: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=True))
    geom_z13: Mapped[Any] = mapped_column(Geometry("GEOMETRY", srid=3857, spatial_index=True))
