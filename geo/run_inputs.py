"""Read what a score run needs from PostGIS: localities, layers, events, institutions, survey."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd
from sqlalchemy import Engine, text


@dataclass(frozen=True)
class RasterLayerVersion:
    """The newest version of a raster layer, with what the exposure step needs to know."""

    layer_id: int
    version_id: int
    name: str
    role: str
    kind: str
    unit: str | None
    polarity: str
    threshold: float | None
    level_thresholds: dict[str, float] | None
    level_share: float
    version: int
    path: str
    statistics: dict[str, Any]

    def exposure_threshold(self) -> float:
        """Return the layer's threshold, or a documented fallback when none was given."""
        if self.threshold is not None:
            return float(self.threshold)
        if self.level_thresholds and "medium" in self.level_thresholds:
            return float(self.level_thresholds["medium"])
        # No threshold given: the layer's own 90th percentile, i.e. "the worst tenth".
        percentiles = self.statistics.get("percentiles") or {}
        fallback = percentiles.get("90") or self.statistics.get("max") or 0.0
        return float(fallback)


@dataclass
class RunInputs:
    """Everything one score run reads, as frames; nothing else is consulted."""

    localities: gpd.GeoDataFrame
    hazards: list[RasterLayerVersion]
    population: RasterLayerVersion | None
    events: gpd.GeoDataFrame
    institutions: gpd.GeoDataFrame
    observations: pd.DataFrame
    indicators: pd.DataFrame
    datasets: list[int] = field(default_factory=list)

    def data_versions(self) -> dict[str, Any]:
        """Return the data versions this run used, for the run record."""
        rasters = {h.name: {"version": h.version, "version_id": h.version_id}
                   for h in [*self.hazards, *([self.population] if self.population else [])]}
        return {"raster_versions": rasters, "datasets": self.datasets}


def load_inputs(engine: Engine) -> RunInputs:
    """Read the current data for a run, in one repeatable-read snapshot."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        localities = gpd.read_postgis(
            text("SELECT id, code, name, level, parent_code, population, geom FROM localities "
                 "ORDER BY level, code"),
            conn, geom_col="geom",
        ).set_index("code", drop=False)
        rasters = _latest_rasters(conn)
        events = gpd.read_postgis(
            text("SELECT id, layer_id, event_date, event_type, fatalities, geom FROM events"),
            conn, geom_col="geom",
        )
        institutions = gpd.read_postgis(
            text("SELECT id, type, name, capacity, sensitive, geom FROM institutions"),
            conn, geom_col="geom",
        )
        observations = pd.read_sql(
            text("SELECT l.code AS locality, i.code AS indicator, o.period, o.subgroup, "
                 "o.value, o.sample_size FROM observations o "
                 "JOIN localities l ON l.id = o.locality_id "
                 "JOIN indicators i ON i.id = o.indicator_id"),
            conn,
        )
        indicators = pd.read_sql(
            text("SELECT code, name, dimension, polarity, cutoff, unit, target FROM indicators"),
            conn,
        ).set_index("code", drop=False)
        datasets = [row[0] for row in conn.execute(text("SELECT id FROM datasets ORDER BY id"))]
    hazards = [r for r in rasters if r.role == "hazard"]
    populations = [r for r in rasters if r.role == "population"]
    return RunInputs(
        localities=localities, hazards=hazards,
        population=populations[-1] if populations else None,
        events=events, institutions=institutions, observations=observations,
        indicators=indicators, datasets=datasets,
    )


def _latest_rasters(conn: Any) -> list[RasterLayerVersion]:
    rows = conn.execute(text(
        "SELECT DISTINCT ON (l.id) l.id AS layer_id, v.id AS version_id, l.name, l.role, "
        "l.kind, l.unit, l.polarity, l.threshold, l.level_thresholds, l.level_share, "
        "v.version, v.path, v.statistics FROM raster_layers l "
        "JOIN raster_versions v ON v.layer_id = l.id ORDER BY l.id, v.version DESC"
    )).mappings().all()
    return [RasterLayerVersion(**row) for row in rows]
