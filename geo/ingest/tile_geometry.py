"""Web Mercator outlines of localities, simplified once per zoom band, kept for vector tiles.

Written whenever localities load (`refresh_tile_geometry`, in the loading transaction), read by
`geo.read.tiles`; the zoom bands are the allow-list of geometry columns tile SQL may name.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, TextClause, event, text

# Web Mercator's world width in metres; a 256-px pixel at zoom z is this / 256 / 2**z.
WORLD_M = 40_075_016.685578488
# Beyond +-85.0511 degrees Web Mercator is undefined; outlines are clipped there first.
MERCATOR_MAX_LAT = 85.0511287798066


@dataclass(frozen=True)
class ZoomBand:
    """Zooms that share one simplified outline column; tolerance is in Web Mercator metres."""

    column: str
    min_zoom: int
    max_zoom: int
    tolerance_m: float


def _half_pixel(zoom: int) -> float:
    return WORLD_M / 256 / 2**zoom / 2


# The allow-list of geometry columns: tile SQL is built only from these names.
# Half a 256-px pixel at the band's deepest zoom: invisible there, and it cuts the vertices
# (hence ST_AsMVTGeom's work) of mid zooms 3-5 times; from z13 the outline is exact.
BANDS: tuple[ZoomBand, ...] = (
    ZoomBand("geom_z0_5", 0, 5, _half_pixel(5)),
    ZoomBand("geom_z6_8", 6, 8, _half_pixel(8)),
    ZoomBand("geom_z9_10", 9, 10, _half_pixel(10)),
    ZoomBand("geom_z11_12", 11, 12, _half_pixel(12)),
    ZoomBand("geom_z13", 13, 99, 0.0),
)

def band_for_zoom(zoom: int) -> ZoomBand:
    """Return the zoom band whose outlines serve tiles at this zoom."""
    for band in BANDS:
        if band.min_zoom <= zoom <= band.max_zoom:
            return band
    return BANDS[-1]



_generation_lock = threading.Lock()
_generation = 0


def geometry_generation() -> int:
    """Return a counter that changes whenever this process refreshed tile geometry."""
    return _generation


def _bump_generation(*_: Any) -> None:
    global _generation
    with _generation_lock:
        _generation += 1


def _refresh_sql() -> TextClause:
    simplified = ",\n".join(
        f"ST_SimplifyPreserveTopology(m.geom, :tol_{band.column})" if band.tolerance_m else "m.geom"
        for band in BANDS
    )
    columns = ", ".join(band.column for band in BANDS)
    updates = ", ".join(
        f"{name} = EXCLUDED.{name}"
        for name in ("code", "name", "level", "population", *[b.column for b in BANDS])
    )
    return text(f"""
        INSERT INTO locality_tile_geometry (locality_id, code, name, level, population, {columns})
        SELECT l.id, l.code, l.name, l.level, l.population, {simplified}
        FROM localities l
        CROSS JOIN LATERAL (SELECT ST_Transform(
            CASE WHEN ST_YMax(l.geom) > :max_lat OR ST_YMin(l.geom) < -:max_lat
                 THEN ST_Intersection(l.geom, ST_MakeEnvelope(-180, -:max_lat, 180, :max_lat, 4326))
                 ELSE l.geom END, 3857) AS geom) m
        WHERE CAST(:all_localities AS boolean) OR l.id = ANY(CAST(:ids AS integer[]))
        ON CONFLICT (locality_id) DO UPDATE SET {updates}
    """)


_REFRESH = _refresh_sql()


def refresh_tile_geometry(conn: Connection, locality_ids: Iterable[int] | None = None) -> int:
    """Recompute Web Mercator outlines per zoom band for these localities (all when None).

    Call it inside the transaction that loaded the localities; cached tiles of this process
    are dropped when that transaction commits (other processes within `cache_ttl`).
    Returns how many localities were refreshed.
    """
    ids = None if locality_ids is None else [int(value) for value in locality_ids]
    params: dict[str, Any] = {
        "all_localities": ids is None, "ids": ids or [], "max_lat": MERCATOR_MAX_LAT,
        **{f"tol_{band.column}": band.tolerance_m for band in BANDS if band.tolerance_m},
    }
    count = conn.execute(_REFRESH, params).rowcount
    _bump_generation()
    if conn.in_transaction():
        event.listen(conn, "commit", _bump_generation, once=True)
    return int(count or 0)
