"""OGC API - Features (Part 1: Core, GeoJSON, OpenAPI 3.0) for localities, institutions, events.

Readable by GDAL's OAPIF driver and QGIS: `ogrinfo OAPIF:http://host/ogc`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.routers.tiles import FastRole, Tiles
from geo.errors import ValidationError
from geo.keys import role_rank
from geo.read import features

router = APIRouter(prefix="/ogc", tags=["OGC API - Features"])

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
COLLECTION_ID = Path(description="localities, institutions or events")
FEATURE_ID = Path(description="localities: the locality code; institutions, events: the id")
FEATURE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {GEOJSON: {}}, "description": "GeoJSON"},
    404: {"description": "Unknown collection or feature"},
}


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/ogc"


def _link(href: str, rel: str, media_type: str, title: str | None = None) -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": media_type}
    if title:
        link["title"] = title
    return link


def _collection_document(request: Request, spec: features.Collection,
                         bbox: list[float] | None, interval: list[str | None] | None) -> dict:
    base = f"{_base(request)}/collections/{spec.id}"
    extent: dict[str, Any] = {"spatial": {"bbox": [bbox or [-180.0, -90.0, 180.0, 90.0]],
                                          "crs": features.CRS84}}
    if interval is not None:
        extent["temporal"] = {"interval": [interval]}
    return {
        "id": spec.id, "title": spec.title, "description": spec.description,
        "itemType": "feature", "crs": [features.CRS84], "extent": extent,
        "links": [
            _link(base, "self", "application/json", spec.title),
            _link(f"{base}/items", "items", GEOJSON, f"{spec.title} items"),
        ],
    }


def _describe(engine: Any, collection_id: str) -> tuple[list[float] | None, Any]:
    with engine.connect() as conn:
        bbox = features.collection_extent(conn, collection_id)
        interval = features.event_interval(conn) if collection_id == "events" else None
    return bbox, interval


@router.get("", summary="OGC API landing page")
def landing(request: Request) -> dict[str, Any]:
    """Return the landing page with links to the API definition, conformance and collections."""
    base = _base(request)
    root = str(request.base_url).rstrip("/")
    return {
        "title": "riskatlas OGC API - Features",
        "description": "Localities with their latest risk scores, institutions and events",
        "links": [
            _link(base, "self", "application/json", "this document"),
            _link(f"{root}/openapi.json", "service-desc",
                  "application/vnd.oai.openapi+json;version=3.0", "API definition"),
            _link(f"{root}/docs", "service-doc", "text/html", "API documentation"),
            _link(f"{base}/conformance", "conformance", "application/json", "Conformance"),
            _link(f"{base}/collections", "data", "application/json", "Collections"),
        ],
    }


@router.get("/conformance", summary="Conformance classes")
def conformance() -> dict[str, list[str]]:
    """Return the conformance classes this API implements."""
    return {"conformsTo": CONFORMANCE}


@router.get("/collections", summary="Feature collections")
async def collections(request: Request) -> dict[str, Any]:
    """Return every collection with its extent and links."""
    documents = []
    for spec in features.COLLECTIONS.values():
        bbox, interval = await run_in_threadpool(_describe, request.app.state.engine, spec.id)
        documents.append(_collection_document(request, spec, bbox, interval))
    return {
        "collections": documents,
        "links": [_link(f"{_base(request)}/collections", "self", "application/json")],
    }


@router.get("/collections/{collectionId}", summary="One feature collection")
async def collection(request: Request,
                     collectionId: str = COLLECTION_ID) -> dict[str, Any]:  # noqa: N803
    """Return a collection's description, extent and links."""
    spec = features.collection(collectionId)
    bbox, interval = await run_in_threadpool(_describe, request.app.state.engine, spec.id)
    return _collection_document(request, spec, bbox, interval)


@router.get("/collections/{collectionId}/items", summary="Features of a collection",
            response_class=Response, responses=FEATURE_RESPONSES)
async def items(
    request: Request,
    role: FastRole,
    tiles: Tiles,
    collectionId: str = COLLECTION_ID,  # noqa: N803 - the OGC spec's name
    bbox: str | None = Query(
        None, description="minx,miny,maxx,maxy in CRS84 degrees; minx > maxx crosses the "
                          "antimeridian"),
    bbox_crs: str | None = Query(None, alias="bbox-crs", description="Only CRS84 is supported"),
    datetime_: str | None = Query(
        None, alias="datetime", description="events only: a date or start/end, '..' open"),
    limit: int | None = Query(
        None, ge=1,
        description="Page size (default 10); values above the maximum (1000, setting "
                    "RISKATLAS_TILES_ITEMS_MAX_LIMIT) are clamped to it, not refused"),
    offset: int = Query(0, ge=0, le=10_000_000, description="Features to skip (paging)"),
) -> Response:
    """Return a page of GeoJSON features with numberMatched, numberReturned and next/prev links.

    Localities carry the scores of the latest succeeded run. Below the analyst role, small
    populations are withheld and sensitive institutions are generalised to their locality.
    """
    spec = features.collection(collectionId)
    if bbox_crs not in (None, features.CRS84):
        raise ValidationError(f"bbox-crs must be {features.CRS84}",
                              [{"field": "bbox-crs", "problem": "unsupported CRS"}])
    settings = tiles.settings
    clamped = min(limit or settings.items_default_limit, settings.items_max_limit)
    query = features.ItemsQuery(
        bbox=features.parse_bbox(bbox) if bbox else None,
        dates=features.parse_datetime(datetime_) if datetime_ else None,
        limit=clamped, offset=offset, analyst=role_rank(role) >= role_rank("analyst"),
        k_min=request.app.state.settings.privacy.k_min,
    )
    page = await run_in_threadpool(_page, request.app.state.engine, spec.id, query)
    kept = {"bbox": bbox, "bbox-crs": bbox_crs, "datetime": datetime_, "limit": clamped}
    kept = {name: value for name, value in kept.items() if value is not None}
    base = f"{_base(request)}/collections/{spec.id}/items"
    links = [_link(f"{base}?{urlencode({**kept, 'offset': offset})}", "self", GEOJSON),
             _link(f"{_base(request)}/collections/{spec.id}", "collection", "application/json")]
    if offset + len(page.features) < page.number_matched:
        links.append(_link(f"{base}?{urlencode({**kept, 'offset': offset + clamped})}",
                           "next", GEOJSON, "next page"))
    if offset > 0:
        links.append(_link(f"{base}?{urlencode({**kept, 'offset': max(0, offset - clamped)})}",
                           "prev", GEOJSON, "previous page"))
    meta = {
        "numberMatched": page.number_matched, "numberReturned": len(page.features),
        "timeStamp": datetime.now(UTC).isoformat(timespec="seconds"), "links": links,
    }
    # Features come as GeoJSON text from PostGIS; only the envelope is serialised here.
    body = ('{"type":"FeatureCollection","features":[' + ",".join(page.features) + "],"
            + json.dumps(meta)[1:])
    return Response(body, media_type=GEOJSON)


def _page(engine: Any, collection_id: str, query: features.ItemsQuery) -> features.ItemsPage:
    with engine.connect() as conn:
        return features.query_items(conn, collection_id, query)


def _item(engine: Any, collection_id: str, feature_id: str, analyst: bool, k_min: int) -> str:
    with engine.connect() as conn:
        return features.get_item(conn, collection_id, feature_id, analyst, k_min)


@router.get("/collections/{collectionId}/items/{featureId}", summary="One feature",
            response_class=Response, responses=FEATURE_RESPONSES)
async def item(request: Request, role: FastRole,
               collectionId: str = COLLECTION_ID,  # noqa: N803
               featureId: str = FEATURE_ID) -> Response:  # noqa: N803
    """Return one feature (localities: by code; institutions and events: by id)."""
    spec = features.collection(collectionId)
    feature = await run_in_threadpool(
        _item, request.app.state.engine, spec.id, featureId,
        role_rank(role) >= role_rank("analyst"), request.app.state.settings.privacy.k_min)
    collection_url = f"{_base(request)}/collections/{spec.id}"
    links = [_link(str(request.url), "self", GEOJSON),
             _link(collection_url, "collection", "application/json")]
    body = feature[:-1] + ',"links":' + json.dumps(links) + "}"
    return Response(body, media_type=GEOJSON)
