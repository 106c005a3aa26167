"""Does a layer cover the country? Warnings for partial facility inventories and rasters.

A facility inventory that lists facilities in two of five regions, or a flood raster over
half the country, loads fine, but access and exposure scores outside it would say "far from
care" or "not exposed" where the truth is "not surveyed". The loaders attach the warning to
the upload's summary and its dataset record; `current_coverage_warnings` collects those of
the layers a score run uses, for the run summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

# A facility inventory should reach most units of the coarsest level that has several.
MIN_UNITS_FOR_FACILITY_CHECK = 3
MIN_FACILITY_UNIT_SHARE = 0.6
# A raster should cover nearly every finest-level locality (a unit is covered when at
# least half of its area lies inside the raster's extent).
MIN_RASTER_SHARE = 0.95


@dataclass(frozen=True)
class Coverage:
    """How many localities of which level a layer reaches, and the warning if too few."""

    level: int | None
    covered: int
    total: int
    warning: str | None = None

    @property
    def share(self) -> float | None:
        """Return covered / total, or None without localities."""
        return self.covered / self.total if self.total else None

    def as_dict(self) -> dict[str, Any]:
        """Return the coverage for a summary or dataset report."""
        return {"level": self.level, "covered": self.covered, "total": self.total,
                "share": None if self.share is None else round(self.share, 4),
                "warning": self.warning}


def facility_coverage(conn: Connection, layer_id: int) -> Coverage:
    """Return how many units of the coarsest level with ≥ 3 units hold a facility of the layer."""
    level = conn.execute(text(
        "SELECT level FROM localities GROUP BY level HAVING count(*) >= :n "
        "ORDER BY level LIMIT 1"), {"n": MIN_UNITS_FOR_FACILITY_CHECK}).scalar()
    if level is None:
        return Coverage(None, 0, 0)
    covered, total = conn.execute(text(
        "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM institutions i "
        "WHERE i.layer_id = :layer AND ST_Intersects(l.geom, i.geom))), count(*) "
        "FROM localities l WHERE l.level = :level"), {"layer": layer_id, "level": level}).one()
    warning = None
    if total and covered / total < MIN_FACILITY_UNIT_SHARE:
        warning = (
            f"partial coverage: the facilities lie in {covered} of {total} level-{level} units "
            f"({covered / total:.0%}); access scores in the others would read as 'far from "
            "any facility' where the inventory may simply not reach. Load a complete inventory "
            "or read those access scores with care"
        )
    return Coverage(int(level), int(covered), int(total), warning)


def raster_coverage(conn: Connection, bounds_4326: tuple[float, float, float, float],
                    role: str) -> Coverage:
    """Return how many finest-level localities lie (at least half) inside the raster's extent."""
    west, south, east, north = bounds_4326
    row = conn.execute(text(
        "WITH finest AS (SELECT max(level) AS level FROM localities), "
        "box AS (SELECT ST_MakeEnvelope(:w, :s, :e, :n, 4326) AS g) "
        "SELECT f.level, count(*) FILTER (WHERE ST_Area(ST_Intersection(l.geom, box.g)) "
        ">= 0.5 * ST_Area(l.geom)), count(*) FROM localities l, finest f, box "
        "WHERE l.level = f.level GROUP BY f.level"),
        {"w": west, "s": south, "e": east, "n": north}).first()
    if row is None:
        return Coverage(None, 0, 0)
    level, covered, total = int(row[0]), int(row[1]), int(row[2])
    warning = None
    if total and covered / total < MIN_RASTER_SHARE:
        what = "exposure" if role == "hazard" else "population-weighted figures"
        warning = (
            f"partial coverage: the raster covers {covered} of {total} level-{level} "
            f"localities ({covered / total:.0%}); {what} outside it cannot be computed and "
            "are missing there, not zero"
        )
    return Coverage(level, covered, total, warning)


def current_coverage_warnings(conn: Connection) -> list[str]:
    """Return the coverage warnings of the layers a score run would use now."""
    rows = conn.execute(text(
        "SELECT d.name, d.report -> 'coverage' ->> 'warning' FROM datasets d WHERE d.id IN ("
        "  SELECT dataset_id FROM institution_layers UNION ALL "
        "  SELECT v.dataset_id FROM raster_versions v WHERE v.version = "
        "    (SELECT max(w.version) FROM raster_versions w WHERE w.layer_id = v.layer_id)) "
        "AND d.report -> 'coverage' ->> 'warning' IS NOT NULL ORDER BY d.id")).all()
    return [f"{name}: {warning}" for name, warning in rows]
