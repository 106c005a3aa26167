"""Read side of scores: localities, risk profiles, rankings and layers, shaped for any client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from geo.errors import NotFoundError, ValidationError
from geo.read.disclosure import may_see_subgroups, suppress_exposed_by_subgroup
from geo.read.run_cache import RunCache
from geo.read.subgroups import subgroup_sections, subgroup_summary

MAX_LIMIT = 1000
LOCALITY_COLUMNS = (
    "l.code, l.name, l.names, l.level, l.parent_code, l.population, l.area_km2, "
    "ST_XMin(l.geom) AS minx, ST_YMin(l.geom) AS miny, ST_XMax(l.geom) AS maxx, "
    "ST_YMax(l.geom) AS maxy, ST_X(ST_PointOnSurface(l.geom)) AS cx, "
    "ST_Y(ST_PointOnSurface(l.geom)) AS cy"
)


@dataclass(frozen=True)
class LocalityFilter:
    """Filters of the locality list; every value is bound, never spliced into SQL."""

    level: int | None = None
    parent: str | None = None
    q: str | None = None
    code_prefix: str | None = None
    bbox: tuple[float, float, float, float] | None = None
    limit: int = 50
    offset: int = 0

    def where(self) -> tuple[str, dict[str, Any]]:
        """Return the WHERE clause and its parameters."""
        clauses, params = ["TRUE"], {}
        if self.level is not None:
            clauses.append("l.level = :level")
            params["level"] = self.level
        if self.parent:
            clauses.append("l.parent_code = :parent")
            params["parent"] = self.parent
        if self.code_prefix:
            clauses.append("l.code LIKE :prefix")
            params["prefix"] = _escape_like(self.code_prefix) + "%"
        if self.q:
            clauses.append("(l.name ILIKE :q OR l.code ILIKE :q OR l.names::text ILIKE :q)")
            params["q"] = "%" + _escape_like(self.q) + "%"
        if self.bbox:
            clauses.append(bbox_clause("l.geom"))
            params.update(dict(zip(("minx", "miny", "maxx", "maxy"), self.bbox, strict=True)))
        return " AND ".join(clauses), params


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """Return (minx, miny, maxx, maxy) from 'a,b,c,d'; an antimeridian-crossing box is allowed."""
    if value is None or value == "":
        return None
    parts = value.split(",")
    try:
        numbers = tuple(float(part) for part in parts)
    except ValueError:
        numbers = ()
    if len(numbers) != 4 or any(n != n for n in numbers):
        raise ValidationError("bbox must be four numbers: minx,miny,maxx,maxy",
                              [{"field": "bbox", "problem": f"got {value!r}"}])
    minx, miny, maxx, maxy = numbers
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ValidationError("bbox is outside -180..180, -90..90 or has miny > maxy",
                              [{"field": "bbox", "problem": f"got {value!r}"}])
    return minx, miny, maxx, maxy


def bbox_clause(column: str) -> str:
    """Return SQL intersecting `column` with :minx..:maxy, split in two across the antimeridian."""
    return (
        f"(CASE WHEN :minx <= :maxx THEN {column} && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, "
        f"4326) ELSE ({column} && ST_MakeEnvelope(:minx, :miny, 180, :maxy, 4326) OR {column} "
        f"&& ST_MakeEnvelope(-180, :miny, :maxx, :maxy, 4326)) END)"
    )


def _item(row: Any) -> dict[str, Any]:
    return {
        "code": row.code, "name": row.name, "names": row.names or {}, "level": row.level,
        "parent_code": row.parent_code, "population": row.population,
        "area_km2": round(row.area_km2, 4) if row.area_km2 is not None else None,
        "bbox": [row.minx, row.miny, row.maxx, row.maxy], "centroid": [row.cx, row.cy],
    }


def list_localities(conn: Connection, flt: LocalityFilter) -> tuple[list[dict[str, Any]], int]:
    """Return one page of localities and the total that match."""
    where, params = flt.where()
    total = conn.execute(text(f"SELECT count(*) FROM localities l WHERE {where}"), params)
    rows = conn.execute(text(
        f"SELECT {LOCALITY_COLUMNS} FROM localities l WHERE {where} "
        "ORDER BY l.level, l.code LIMIT :limit OFFSET :offset"),
        {**params, "limit": min(flt.limit, MAX_LIMIT), "offset": flt.offset})
    return [_item(row) for row in rows], int(total.scalar_one())


def get_locality(conn: Connection, code: str) -> dict[str, Any]:
    """Return one locality or raise NotFoundError."""
    row = conn.execute(text(f"SELECT {LOCALITY_COLUMNS} FROM localities l WHERE l.code = :c"),
                       {"c": code}).first()
    if row is None:
        raise NotFoundError(f"no locality with code {code!r}")
    return _item(row)


# -- runs ---------------------------------------------------------------------------------
def resolve_run(conn: Connection, run: str) -> dict[str, Any]:
    """Return the run (id or `latest`) with its methodology, or raise NotFoundError."""
    if run == "latest":
        condition, params = "r.status = 'succeeded'", {}
    elif run.isdigit() and len(run) < 10:
        condition, params = "r.id = :id", {"id": int(run)}
    else:
        raise NotFoundError(f"no run {run!r}: use a run id or 'latest'")
    row = conn.execute(text(
        "SELECT r.id, r.status, r.completed_at, m.id AS mid, m.name, m.version, "
        "m.document->>'k' AS k, m.document->>'stress_threshold' AS threshold "
        f"FROM score_runs r JOIN methodologies m ON m.id = r.methodology_id WHERE {condition} "
        "ORDER BY r.completed_at DESC NULLS LAST, r.id DESC LIMIT 1"), params).first()
    if row is None:
        raise NotFoundError("no score run has completed yet" if run == "latest"
                            else f"no run with id {run}")
    if row.status != "succeeded":
        raise NotFoundError(f"run {row.id} has not completed (status {row.status})")
    return {"id": row.id, "completed_at": row.completed_at.isoformat(),
            "methodology": {"id": row.mid, "name": row.name, "version": row.version,
                            "k": int(row.k) if row.k else None,
                            "stress_threshold": float(row.threshold) if row.threshold else None}}


# -- risk profile -------------------------------------------------------------------------
# One round trip per profile: the locality, its scores, the newest forum's needs and the
# institution inventory (each subquery keeps its own order).
PROFILE_SQL = text(
    f"SELECT {LOCALITY_COLUMNS}, r.run_id AS scored_in, r.composite, r.completeness, "
    "r.stressed_dimensions, r.compounded, r.hotspot, r.quadrant, r.pillars, r.dimensions, "
    "r.components, r.rank, r.rank_low, r.rank_high, r.rank_in_parent, r.details, "
    "(SELECT json_agg(json_build_object('forum_date', p.forum_date, 'rank', p.rank, "
    "'need', p.need) ORDER BY p.rank) FROM community_priorities p WHERE p.locality_id = l.id "
    "AND p.forum_date = (SELECT max(forum_date) FROM community_priorities q "
    "WHERE q.locality_id = l.id)) AS priorities, "
    "(SELECT json_object_agg(t.type, t.n ORDER BY t.n DESC, t.type) FROM (SELECT i.type, "
    "count(*) AS n FROM institutions i WHERE ST_Intersects(l.geom, i.geom) GROUP BY i.type) t"
    ") AS institutions "
    "FROM localities l LEFT JOIN score_results r ON r.locality_id = l.id AND r.run_id = :run "
    "WHERE l.code = :code")


def risk_profile(conn: Connection, code: str, run: dict[str, Any], role: str,
                 k_min: int) -> dict[str, Any]:
    """Return everything that explains one locality's score in one run, as the role may see it."""
    row = conn.execute(PROFILE_SQL, {"run": run["id"], "code": code}).first()
    if row is None:
        raise NotFoundError(f"no locality with code {code!r}")
    if row.scored_in is None:
        raise NotFoundError(f"locality {code!r} has no scores in run {run['id']}")
    locality = _item(row)
    of_level, of_parent = _ranked_counts(conn, run, row.level, row.parent_code)
    details = row.details or {}
    return {
        "locality": locality, "run": run,
        **{key: getattr(row, key) for key in ("composite", "completeness",
                                              "stressed_dimensions", "compounded", "hotspot",
                                              "quadrant", "pillars", "dimensions",
                                              "components")},
        "rank": {"value": row.rank, "low": row.rank_low, "high": row.rank_high,
                 "in_parent": row.rank_in_parent, "of": of_level, "of_in_parent": of_parent},
        "top_drivers": details.get("top_drivers", []),
        "top_decile_stable": details.get("top_decile_stable"),
        # partial composite, missing pillars and dimensions with the reasons ("no data")
        "coverage": details.get("coverage"),
        "hazards": _hazards_for(details.get("hazards", {}), role, k_min),
        "conflict": details.get("conflict"), "access": details.get("access", {}),
        "trend": details.get("trend", {}),
        # subgroups, gap_trends, multidimensional (Alkire-Foster), compounded_groups
        **subgroup_sections(details, role, k_min),
        "subgroups_visible": may_see_subgroups(role),
        "k_min": k_min,
        "community_priorities": row.priorities or [],
        "institutions": {k: int(v) for k, v in (row.institutions or {}).items()},
    }


# Ranks are out of how many localities of a level (and of a parent) a run scored: a run is
# immutable, so the counts are read once per run and database, not per profile (counting
# 20,000 results on every lookup dominated its time).
_RANKED_COUNTS = RunCache(size=64)


def _ranked_counts(conn: Connection, run: dict[str, Any], level: int,
                   parent_code: str | None) -> tuple[int, int]:
    """Return (localities of this level, of this level within this parent) scored in the run."""
    def count() -> dict[tuple[int, str | None], int]:
        rows = conn.execute(text(
            "SELECT y.level, y.parent_code, count(*) FROM score_results x JOIN localities y "
            "ON y.id = x.locality_id WHERE x.run_id = :run GROUP BY 1, 2"), {"run": run["id"]})
        return {(r[0], r[1]): int(r[2]) for r in rows}

    key = (conn.engine.url.render_as_string(hide_password=True), run["id"], run["completed_at"])
    counts = _RANKED_COUNTS.get(key, count)
    of_level = sum(n for (lvl, _), n in counts.items() if lvl == level)
    return of_level, counts.get((level, parent_code), 0)


def _hazards_for(hazards: dict[str, Any], role: str, k_min: int) -> dict[str, Any]:
    shown = {}
    for name, entry in hazards.items():
        entry = dict(entry)
        if "people_exposed_by_subgroup" in entry:
            entry["people_exposed_by_subgroup"] = suppress_exposed_by_subgroup(
                entry["people_exposed_by_subgroup"], role, k_min)
        shown[name] = entry
    return shown


# -- batch and rankings -----------------------------------------------------------------------
SUMMARY_COLUMNS = (
    "l.code, l.name, l.level, l.parent_code, r.composite, r.pillars, r.stressed_dimensions, "
    "r.compounded, r.hotspot, r.quadrant, r.rank, r.rank_low, r.rank_high, r.rank_in_parent, "
    "r.completeness, r.details->'top_drivers' AS top_drivers, "
    "ST_X(ST_PointOnSurface(l.geom)) AS cx, ST_Y(ST_PointOnSurface(l.geom)) AS cy, "
    "ST_XMin(l.geom) AS minx, ST_YMin(l.geom) AS miny, ST_XMax(l.geom) AS maxx, "
    "ST_YMax(l.geom) AS maxy"
)


def _summary(row: Any) -> dict[str, Any]:
    return {
        "code": row.code, "name": row.name, "level": row.level, "parent_code": row.parent_code,
        "composite": row.composite, "pillars": row.pillars,
        "stressed_dimensions": row.stressed_dimensions, "compounded": row.compounded,
        "hotspot": row.hotspot, "quadrant": row.quadrant, "rank": row.rank,
        "rank_low": row.rank_low, "rank_high": row.rank_high,
        "rank_in_parent": row.rank_in_parent, "completeness": row.completeness,
        "top_drivers": row.top_drivers or [], "centroid": [row.cx, row.cy],
        "bbox": [row.minx, row.miny, row.maxx, row.maxy],
    }


def batch_risk(conn: Connection, run: dict[str, Any], *, codes: list[str] | None,
               bbox: tuple[float, float, float, float] | None, level: int | None,
               limit: int) -> list[dict[str, Any]]:
    """Return score summaries for many codes, or for what a bbox touches."""
    clauses, params = ["r.run_id = :run"], {"run": run["id"], "limit": min(limit, MAX_LIMIT)}
    if codes is not None:
        clauses.append("l.code = ANY(:codes)")
        params["codes"] = codes
    if bbox is not None:
        clauses.append(bbox_clause("l.geom"))
        params.update(dict(zip(("minx", "miny", "maxx", "maxy"), bbox, strict=True)))
    if level is not None:
        clauses.append("l.level = :level")
        params["level"] = level
    rows = conn.execute(text(
        f"SELECT {SUMMARY_COLUMNS} FROM score_results r JOIN localities l ON l.id = "
        f"r.locality_id WHERE {' AND '.join(clauses)} ORDER BY l.level, r.rank LIMIT :limit"),
        params)
    return [_summary(row) for row in rows]


def iter_rankings(conn: Connection, run: dict[str, Any], *, level: int | None,
                  parent: str | None, limit: int, compounded_only: bool,
                  disclosure: tuple[str, int] | None = None,
                  ) -> Iterator[dict[str, Any]]:
    """Yield localities furthest behind first, streamed from the server-side cursor.

    With `disclosure` (role, k_min), each item also carries `subgroup_summary`: the
    locality's Alkire-Foster figures and who is behind, as that role may see them (exports).
    """
    clauses, params = ["r.run_id = :run"], {"run": run["id"], "limit": limit}
    if level is None:
        clauses.append("l.level = (SELECT max(level) FROM localities)")
    else:
        clauses.append("l.level = :level")
        params["level"] = level
    if parent:
        clauses.append("(l.parent_code = :parent OR l.code LIKE :prefix)")
        params.update(parent=parent, prefix=_escape_like(parent) + "%")
    if compounded_only:
        clauses.append("r.compounded")
    extra = (", r.details -> 'multidimensional' AS multidimensional, "
             "r.details -> 'subgroups' AS subgroup_cells") if disclosure else ""
    result = conn.execution_options(stream_results=True, yield_per=500).execute(text(
        f"SELECT {SUMMARY_COLUMNS}, ST_AsGeoJSON(l.geom, 6) AS geojson{extra} FROM "
        f"score_results r JOIN localities l ON l.id = r.locality_id WHERE "
        f"{' AND '.join(clauses)} ORDER BY r.rank NULLS LAST, l.code LIMIT :limit"), params)
    for row in result:
        item = _summary(row) | {"geojson": row.geojson}
        if disclosure:
            item["subgroup_summary"] = subgroup_summary(
                {"multidimensional": row.multidimensional, "subgroups": row.subgroup_cells or []},
                *disclosure)
        yield item


# -- layers -----------------------------------------------------------------------------------
def list_layers(conn: Connection) -> list[dict[str, Any]]:
    """Return raster layers with their versions (newest first)."""
    layers = conn.execute(text(
        "SELECT id, name, role, kind, unit, polarity, threshold, level_thresholds, level_share, "
        "description FROM raster_layers ORDER BY role, name")).mappings().all()
    versions = conn.execute(text(
        "SELECT layer_id, version, created_at, statistics, crs, width, height, "
        "ST_XMin(footprint) AS minx, ST_YMin(footprint) AS miny, ST_XMax(footprint) AS maxx, "
        "ST_YMax(footprint) AS maxy FROM raster_versions ORDER BY version DESC")).mappings().all()
    by_layer: dict[int, list[dict[str, Any]]] = {}
    for v in versions:
        stats = v["statistics"] or {}
        by_layer.setdefault(v["layer_id"], []).append({
            "version": v["version"], "created_at": v["created_at"].isoformat(),
            "crs": v["crs"], "width": v["width"], "height": v["height"],
            "bounds": [v["minx"], v["miny"], v["maxx"], v["maxy"]],
            "statistics": {k: stats.get(k) for k in ("min", "max", "mean", "std", "percentiles")},
        })
    return [{**{k: layer[k] for k in layer.keys() if k != "id"},
             "versions": by_layer.get(layer["id"], [])} for layer in layers]
