"""OGC API - Features: collections of localities (with latest scores), institutions and events.

Features are built as GeoJSON text by PostGIS (`json_build_object`), so a page is joined
from strings rather than parsed and re-serialised in Python. Disclosure rules live here:
below `analyst`, small populations are withheld and sensitive institutions are generalised.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import Connection, TextClause, text

from geo.errors import NotFoundError, ValidationError

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
COORDINATE_DECIMALS = 7


@dataclass(frozen=True)
class Envelope:
    """A lon/lat rectangle that does not cross the antimeridian."""

    west: float
    south: float
    east: float
    north: float


@dataclass(frozen=True)
class BBox:
    """A bbox filter: one envelope, or two when it crosses the antimeridian."""

    envelopes: tuple[Envelope, ...]
    raw: str


@dataclass(frozen=True)
class DateRange:
    """An inclusive date interval; None on a side means open."""

    start: date | None
    end: date | None
    raw: str


@dataclass(frozen=True)
class ItemsQuery:
    """What a page of items asks for."""

    bbox: BBox | None = None
    dates: DateRange | None = None
    limit: int = 10
    offset: int = 0
    analyst: bool = False
    k_min: int = 10


@dataclass
class ItemsPage:
    """A page of features as GeoJSON text, with the total that matched."""

    features: list[str]
    number_matched: int
    extra: dict[str, Any] = field(default_factory=dict)


def parse_bbox(value: str) -> BBox:
    """Return the bbox of 'minx,miny,maxx,maxy' (or 6 numbers with heights) in CRS84.

    minx > maxx means the box crosses the antimeridian; it is split in two envelopes.
    """
    parts = value.split(",")
    problem = [{"field": "bbox", "problem": "expected minx,miny,maxx,maxy in degrees"}]
    if len(parts) not in (4, 6):
        raise ValidationError(f"bbox needs 4 (or 6) numbers, got {len(parts)}", problem)
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        raise ValidationError(f"bbox must be numbers, got {value[:60]!r}", problem) from None
    if not all(math.isfinite(n) for n in numbers):
        raise ValidationError("bbox numbers must be finite", problem)
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    west, south, east, north = numbers
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise ValidationError(
            f"bbox {value[:60]!r} is outside lon -180..180 / lat -90..90 or has miny > maxy",
            problem,
        )
    if west <= east:
        return BBox((Envelope(west, south, east, north),), value)
    return BBox((Envelope(west, south, 180.0, north), Envelope(-180.0, south, east, north)), value)


def _parse_date(part: str) -> date | None:
    if part in ("", ".."):
        return None
    return date.fromisoformat(part[:10])


def parse_datetime(value: str) -> DateRange:
    """Return the date range of an OGC `datetime` value: a date, or 'start/end' with '..'."""
    problem = [{"field": "datetime", "problem": "expected YYYY-MM-DD or start/end with '..'"}]
    parts = value.split("/")
    try:
        if len(parts) == 1:
            day = _parse_date(parts[0])
            if day is None:
                raise ValueError
            return DateRange(day, day, value)
        if len(parts) != 2:
            raise ValueError
        start, end = _parse_date(parts[0]), _parse_date(parts[1])
    except ValueError:
        raise ValidationError(
            f"datetime {value[:60]!r} is not a date or interval", problem) from None
    if start and end and start > end:
        raise ValidationError("datetime interval ends before it starts", problem)
    return DateRange(start, end, value)


# -- collection definitions: every SQL fragment below is a constant of this module ----------

_LATEST_RUN = (
    "(SELECT id FROM score_runs WHERE status = 'succeeded' "
    "ORDER BY completed_at DESC NULLS LAST, id DESC LIMIT 1)"
)


def _pillar(name: str) -> str:
    return (f"'{name}', CASE WHEN jsonb_typeof(r.pillars -> '{name}') = 'number' "
            f"THEN (r.pillars ->> '{name}')::float8 END")


_LOCALITY_FEATURE = f"""
    json_build_object(
      'type', 'Feature', 'id', l.code,
      'geometry', ST_AsGeoJSON(l.geom, {COORDINATE_DECIMALS})::json,
      'properties', json_build_object(
        'code', l.code, 'name', l.name, 'level', l.level, 'parent_code', l.parent_code,
        'population', CASE WHEN :analyst OR l.population >= :k_min THEN l.population END,
        'population_withheld', (NOT :analyst AND l.population < :k_min),
        'area_km2', l.area_km2, 'run', r.run_id, 'composite', r.composite,
        {_pillar('hazard_exposure')}, {_pillar('vulnerability')},
        {_pillar('lack_of_coping_capacity')},
        'stressed_dimensions', r.stressed_dimensions, 'compounded', r.compounded,
        'hotspot', r.hotspot, 'quadrant', r.quadrant, 'rank', r.rank,
        'completeness', r.completeness))::text
"""

_INSTITUTION_FEATURE = f"""
    json_build_object(
      'type', 'Feature', 'id', i.id,
      'geometry', ST_AsGeoJSON(s.geom, {COORDINATE_DECIMALS})::json,
      'properties', json_build_object(
        'type', i.type, 'name', CASE WHEN s.generalised THEN NULL ELSE i.name END,
        'capacity', i.capacity, 'generalised', s.generalised,
        'attributes', CASE WHEN s.generalised THEN NULL ELSE i.attributes END))::text
"""

_EVENT_FEATURE = f"""
    json_build_object(
      'type', 'Feature', 'id', e.id,
      'geometry', ST_AsGeoJSON(e.geom, {COORDINATE_DECIMALS})::json,
      'properties', json_build_object(
        'layer', el.name, 'event_date', e.event_date, 'event_type', e.event_type,
        'actor', e.actor, 'fatalities', e.fatalities, 'attributes', e.attributes))::text
"""

# Below analyst a sensitive institution is shown at a point inside the finest locality that
# contains it (ST_PointOnSurface: a centroid can fall outside a concave locality, and so
# point at a neighbour), without name or attributes; bbox filters see only that point.
_INSTITUTION_FROM = """
    FROM institutions i
    CROSS JOIN LATERAL (
      SELECT (i.sensitive AND NOT :analyst) AS generalised,
             CASE WHEN i.sensitive AND NOT :analyst THEN (
               SELECT ST_PointOnSurface(l.geom) FROM localities l
               WHERE ST_Intersects(l.geom, i.geom) ORDER BY l.level DESC, l.id LIMIT 1)
             ELSE i.geom END AS geom) s
"""


@dataclass(frozen=True)
class Collection:
    """One OGC collection: its description and the SQL pieces that read it."""

    id: str
    title: str
    description: str
    feature_sql: str
    from_sql: str
    geom_sql: str
    key_sql: str
    order_sql: str
    id_is_integer: bool
    date_sql: str | None = None
    extent_sql: str = ""


COLLECTIONS: dict[str, Collection] = {
    "localities": Collection(
        id="localities", title="Localities",
        description=("Administrative units and villages with the scores of the latest "
                     "succeeded score run (composite, pillars, stressed dimensions, "
                     "compounded stress, hotspot class, rank); id = locality code"),
        feature_sql=_LOCALITY_FEATURE,
        from_sql=(f"FROM localities l LEFT JOIN score_results r "
                  f"ON r.locality_id = l.id AND r.run_id = {_LATEST_RUN}"),
        geom_sql="l.geom", key_sql="l.code", order_sql="l.id", id_is_integer=False,
        extent_sql="SELECT ST_Extent(geom) AS e FROM localities",
    ),
    "institutions": Collection(
        id="institutions", title="Institutions",
        description=("Health centres, schools, NGOs, water points, ...; sensitive ones are "
                     "shown to callers below analyst only generalised to their locality"),
        feature_sql=_INSTITUTION_FEATURE, from_sql=_INSTITUTION_FROM,
        geom_sql="s.geom", key_sql="i.id", order_sql="i.id", id_is_integer=True,
        # Sensitive points stay out of the extent: a corner of it could give one away.
        extent_sql="SELECT ST_Extent(geom) AS e FROM institutions WHERE NOT sensitive",
    ),
    "events": Collection(
        id="events", title="Events",
        description="Dated conflict and violence events (date, type, actor, fatalities)",
        feature_sql=_EVENT_FEATURE,
        from_sql="FROM events e JOIN event_layers el ON el.id = e.layer_id",
        geom_sql="e.geom", key_sql="e.id", order_sql="e.id", id_is_integer=True,
        date_sql="e.event_date",
        extent_sql="SELECT ST_Extent(geom) AS e FROM events",
    ),
}


def collection(collection_id: str) -> Collection:
    """Return the collection, or raise NotFoundError."""
    found = COLLECTIONS.get(collection_id)
    if found is None:
        raise NotFoundError(
            f"no collection {collection_id[:60]!r}; collections: {', '.join(COLLECTIONS)}",
            [{"field": "collectionId", "problem": "unknown collection"}],
        )
    return found


def _where(spec: Collection, query: ItemsQuery) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if query.bbox is not None:
        boxes = []
        for index, env in enumerate(query.bbox.envelopes):
            boxes.append(f"ST_Intersects({spec.geom_sql}, ST_MakeEnvelope("
                         f":w{index}, :s{index}, :e{index}, :n{index}, 4326))")
            params.update({f"w{index}": env.west, f"s{index}": env.south,
                           f"e{index}": env.east, f"n{index}": env.north})
        clauses.append("(" + " OR ".join(boxes) + ")")
    if query.dates is not None and spec.date_sql is not None:
        if query.dates.start is not None:
            clauses.append(f"{spec.date_sql} >= :date_start")
            params["date_start"] = query.dates.start
        if query.dates.end is not None:
            clauses.append(f"{spec.date_sql} <= :date_end")
            params["date_end"] = query.dates.end
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _items_sql(spec: Collection, where: str) -> TextClause:
    return text(f"SELECT {spec.feature_sql} {spec.from_sql} {where} "
                f"ORDER BY {spec.order_sql} LIMIT :limit OFFSET :offset")


def _count_sql(spec: Collection, where: str) -> TextClause:
    return text(f"SELECT count(*) {spec.from_sql} {where}")


def query_items(conn: Connection, collection_id: str, query: ItemsQuery) -> ItemsPage:
    """Return one page of features of a collection and how many match in total."""
    spec = collection(collection_id)
    where, params = _where(spec, query)
    params.update(analyst=query.analyst, k_min=query.k_min)
    rows = conn.execute(
        _items_sql(spec, where), {**params, "limit": query.limit, "offset": query.offset}
    ).scalars().all()
    if query.offset == 0 and len(rows) < query.limit:
        matched = len(rows)
    else:
        matched = int(conn.execute(_count_sql(spec, where), params).scalar_one())
    return ItemsPage(list(rows), matched)


_ITEM_SQL: dict[str, TextClause] = {
    spec.id: text(f"SELECT {spec.feature_sql} {spec.from_sql} WHERE {spec.key_sql} = :fid")
    for spec in COLLECTIONS.values()
}
_INTEGER_ID = re.compile(r"[0-9]{1,18}")


def get_item(conn: Connection, collection_id: str, feature_id: str,
             analyst: bool, k_min: int) -> str:
    """Return one feature as GeoJSON text, or raise NotFoundError."""
    spec = collection(collection_id)
    missing = NotFoundError(f"no feature {feature_id[:60]!r} in {collection_id}",
                            [{"field": "featureId", "problem": "unknown feature"}])
    if spec.id_is_integer and not _INTEGER_ID.fullmatch(feature_id):
        raise missing
    key: Any = int(feature_id) if spec.id_is_integer else feature_id
    row = conn.execute(
        _ITEM_SQL[spec.id], {"fid": key, "analyst": analyst, "k_min": k_min}
    ).scalar()
    if row is None:
        raise missing
    return str(row)


def collection_extent(conn: Connection, collection_id: str) -> list[float] | None:
    """Return [west, south, east, north] of a collection's geometries, or None when empty."""
    spec = collection(collection_id)
    row = conn.execute(text(
        f"SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM ({spec.extent_sql}) s"
    )).first()
    if row is None or row[0] is None:
        return None
    return [float(value) for value in row]


def event_interval(conn: Connection) -> list[str | None]:
    """Return the first and last event dates as ISO strings."""
    row = conn.execute(text("SELECT min(event_date), max(event_date) FROM events")).first()
    if row is None:
        return [None, None]
    return [row[0].isoformat() if row[0] else None, row[1].isoformat() if row[1] else None]
