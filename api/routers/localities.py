"""Localities and their risk: lists, profiles, batches, rankings, exports and layers."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.auth import CurrentRole, FastRole, require_role
from api.caching import cache_headers, not_modified, run_etag
from api.deps import EngineDep, SettingsDep
from api.exports import csv_stream, geojson_stream, geopackage_response
from api.profile_cache import ProfileCache, profile_headers, profile_response
from geo.errors import ValidationError
from geo.read import profiles
from geo.read.disclosure import may_see_subgroups

router = APIRouter(prefix="/api/v1", tags=["localities"])

RunQuery = Query("latest", description="Run id, or `latest` for the newest completed run",
                 max_length=12, examples=["latest"])


def _cached_json(request: Request, body: Any, run: dict[str, Any], run_param: str,
                 role: str) -> Response:
    etag = run_etag(request, run["id"], role)
    headers = cache_headers(run_param, role)
    return not_modified(request, etag, headers) or JSONResponse(
        body, headers={"ETag": etag, **headers})


@router.get("/localities", summary="List localities with filters and paging")
def list_localities(
    engine: EngineDep,
    level: int | None = Query(None, ge=0, le=10, description="Admin level"),
    parent: str | None = Query(None, max_length=64, description="Parent code"),
    q: str | None = Query(None, max_length=100, description="Part of a name or code"),
    code_prefix: str | None = Query(None, max_length=64, description="Codes starting with"),
    bbox: str | None = Query(None, max_length=200, description="minx,miny,maxx,maxy (EPSG:4326)",
                             examples=["35.8,31.8,36.4,32.3"]),
    limit: int = Query(50, ge=1, le=profiles.MAX_LIMIT, description="Page size"),
    offset: int = Query(0, ge=0, le=10_000_000, description="Items to skip"),
) -> dict[str, Any]:
    """Return one page of localities (code, name, level, parent, population, bbox, centroid)."""
    flt = profiles.LocalityFilter(level=level, parent=parent, q=q, code_prefix=code_prefix,
                                  bbox=profiles.parse_bbox(bbox), limit=limit, offset=offset)
    with engine.connect() as conn:
        items, total = profiles.list_localities(conn, flt)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/localities/{code}", summary="One locality")
def get_locality(code: str, engine: EngineDep) -> dict[str, Any]:
    """Return the locality with this code (404 if unknown)."""
    with engine.connect() as conn:
        return profiles.get_locality(conn, code)


@router.get("/localities/{code}/risk", summary="A locality's risk profile: what, by what, for whom")
async def risk_profile(
    request: Request, engine: EngineDep, settings: SettingsDep, role: FastRole,
    code: str = PathParam(..., max_length=64, description="Locality code",
                          examples=["XY010452"]),
    run: str = RunQuery,
) -> Response:
    """Return composite, pillars, dimensions, components with raw values, hotspot, quadrant,
    rank with its interval, hazards, conflict, access, trend, subgroup gaps (small cells
    withheld below analyst) and community priorities, with the run and methodology.
    """
    # Other systems poll this for thousands of codes: a repeat lookup is served from memory
    # without a database round trip (see api.profile_cache for what keeps it fresh).
    cache: ProfileCache = request.app.state.profiles
    resolved = cache.known_run(run)
    if resolved is None:
        resolved = await run_in_threadpool(_resolve_run, engine, run)
        cache.remember_run(run, resolved)
    headers = profile_headers(resolved["id"], request.url.path,
                              request.query_params.multi_items(), run, role)
    unchanged = not_modified(request, headers["ETag"], headers)
    if unchanged is not None:
        return unchanged
    key = (resolved["id"], code, may_see_subgroups(role))
    packed = cache.get(key)
    if packed is None:
        body = await run_in_threadpool(_render_profile, engine, code, resolved, role,
                                       settings.privacy.k_min)
        packed = cache.put(key, body)
    return profile_response(packed, headers, request.headers.get("if-none-match", ""),
                            request.headers.get("accept-encoding", ""))


def _resolve_run(engine: Engine, run: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return profiles.resolve_run(conn, run)


def _render_profile(engine: Engine, code: str, run: dict[str, Any], role: str,
                    k_min: int) -> bytes:
    with engine.connect() as conn:
        body = profiles.risk_profile(conn, code, run, role, k_min)
    return json.dumps(jsonable_encoder(body), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode()


@router.get("/localities/{code}/subgroups", summary="Subgroup breakdown (analyst role)")
def subgroups(
    code: str, request: Request, engine: EngineDep, settings: SettingsDep,
    role: str = Depends(require_role("analyst")), run: str = RunQuery,
) -> Response:
    """Return every subgroup cell of a locality with gaps, unsuppressed, for analysts."""
    with engine.connect() as conn:
        resolved = profiles.resolve_run(conn, run)
        profile = profiles.risk_profile(conn, code, resolved, role, settings.privacy.k_min)
    body = {"locality": profile["locality"], "run": resolved, "subgroups": profile["subgroups"]}
    return _cached_json(request, body, resolved, run, role)


@router.get("/risk", summary="Risk of many localities in one call (codes or bbox)")
def batch_risk(
    request: Request, engine: EngineDep, role: CurrentRole,
    codes: str | None = Query(None, max_length=20_000, description="Comma-separated codes"),
    bbox: str | None = Query(None, max_length=200, description="minx,miny,maxx,maxy"),
    level: int | None = Query(None, ge=0, le=10, description="Admin level"),
    limit: int = Query(500, ge=1, le=profiles.MAX_LIMIT, description="Most items returned"),
    run: str = RunQuery,
) -> Response:
    """Return score summaries for the listed codes, or for every locality a bbox touches."""
    code_list = [c.strip() for c in codes.split(",") if c.strip()] if codes else None
    box = profiles.parse_bbox(bbox)
    if code_list is None and box is None:
        raise ValidationError("give codes or a bbox",
                              [{"field": "codes", "problem": "codes or bbox is required"}])
    with engine.connect() as conn:
        resolved = profiles.resolve_run(conn, run)
        items = profiles.batch_risk(conn, resolved, codes=code_list, bbox=box, level=level,
                                    limit=limit)
    return _cached_json(request, {"run": resolved, "items": items}, resolved, run, role)


class RankingParams:
    """Which ranking: run, admin level, parent and how many."""

    def __init__(
        self,
        run: str = RunQuery,
        level: int | None = Query(None, ge=0, le=10,
                                  description="Admin level [default: the finest]"),
        parent: str | None = Query(None, max_length=64, description="Only within this parent"),
        limit: int = Query(20, ge=1, le=100_000, description="How many, furthest behind first"),
        compounded_only: bool = Query(False, description="Only compounded-stress localities"),
    ) -> None:
        self.run, self.level, self.parent = run, level, parent
        self.limit, self.compounded_only = limit, compounded_only


@router.get("/rankings", summary="Who is furthest behind: top N, optionally within a parent")
def rankings(request: Request, engine: EngineDep, role: CurrentRole,
             params: RankingParams = Depends()) -> Response:
    """Return localities ranked by composite, worst first, with rank intervals and drivers."""
    with engine.connect() as conn:
        resolved = profiles.resolve_run(conn, params.run)
        items = [dict(item) for item in profiles.iter_rankings(
            conn, resolved, level=params.level, parent=params.parent,
            limit=min(params.limit, profiles.MAX_LIMIT),
            compounded_only=params.compounded_only)]
    for item in items:
        item.pop("geojson", None)
    return _cached_json(request, {"run": resolved, "items": items}, resolved, params.run, role)


@router.get("/rankings.{fmt}", summary="Export a ranking as CSV (with HXL), GeoJSON or GeoPackage",
            response_class=StreamingResponse)
def export_rankings(
    fmt: Literal["csv", "geojson", "gpkg"], request: Request, engine: EngineDep,
    settings: SettingsDep, role: CurrentRole, params: RankingParams = Depends(),
) -> Response:
    """Stream the ranking; GeoPackage is written to a temporary file and streamed from disk."""
    with engine.connect() as conn:
        resolved = profiles.resolve_run(conn, params.run)
    etag = run_etag(request, resolved["id"], role)
    headers = cache_headers(params.run, role)
    cached = not_modified(request, etag, headers)
    if cached:
        return cached
    headers = {"ETag": etag, **headers}

    def rows() -> Any:
        with engine.connect() as conn:
            yield from profiles.iter_rankings(
                conn, resolved, level=params.level, parent=params.parent, limit=params.limit,
                compounded_only=params.compounded_only,
                disclosure=(role, settings.privacy.k_min))

    name = f"riskatlas-ranking-run{resolved['id']}"
    if fmt == "csv":
        return StreamingResponse(csv_stream(rows()), media_type="text/csv; charset=utf-8",
                                 headers={**headers, "Content-Disposition":
                                          f'attachment; filename="{name}.csv"'})
    if fmt == "geojson":
        return StreamingResponse(geojson_stream(rows()), media_type="application/geo+json",
                                 headers={**headers, "Content-Disposition":
                                          f'attachment; filename="{name}.geojson"'})
    return geopackage_response(rows(), f"{name}.gpkg", headers)


@router.get("/layers", summary="Hazard and population layers with their versions")
def layers(engine: EngineDep) -> list[dict[str, Any]]:
    """Return every raster layer, its meaning (kind, unit, polarity, thresholds) and versions."""
    with engine.connect() as conn:
        return profiles.list_layers(conn)
