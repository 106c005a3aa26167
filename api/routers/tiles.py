"""Vector tiles of localities with scores, PNG tiles of hazard layers, TileJSON and legends."""

from __future__ import annotations

import threading
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.auth import FastRole, presented_key
from geo.keys import role_rank
from geo.read.raster_tiles import RasterTileService, legend, parse_colormap, parse_rescale
from geo.read.tiles import TileService, parse_tile
from geo.settings import TileSettings

router = APIRouter(prefix="/tiles", tags=["tiles"])

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
VARY = "Authorization, X-API-Key"
_services_lock = threading.Lock()


# -- dependencies --------------------------------------------------------------------------


def _service(request: Request, name: str, factory: Any) -> Any:
    service = getattr(request.app.state, name, None)
    if service is None:
        with _services_lock:
            service = getattr(request.app.state, name, None)
            if service is None:
                service = factory()
                setattr(request.app.state, name, service)
    return service


async def tile_service(request: Request) -> TileService:
    """Return the app's vector tile service (created on first use, with its cache)."""
    state = request.app.state
    return _service(request, "tile_service", lambda: TileService(
        state.engine, TileSettings(), state.settings.privacy.k_min))  # type: ignore[no-any-return]


async def raster_service(request: Request) -> RasterTileService:
    """Return the app's raster tile service (open readers, cache)."""
    state = request.app.state
    return _service(  # type: ignore[no-any-return]
        request, "raster_tile_service", lambda: RasterTileService(state.engine, TileSettings()))


Tiles = Annotated[TileService, Depends(tile_service)]
Rasters = Annotated[RasterTileService, Depends(raster_service)]

RUN = Query(None, description="Score run id, or `latest` (default): the newest succeeded run")
LEVEL = Query(None, ge=0, le=10, description="Only localities of this admin level (default all)")
COLORMAP = Query(None, description="A rio-tiler colormap name (viridis, blues, ylorrd, ...); "
                                   "default depends on the layer kind")
RESCALE = Query(None, description="Value range `low,high` stretched over the colormap; "
                                  "default the layer's 2nd-98th percentile")
VERSION = Query(None, ge=1, le=2**31 - 1, description="Layer version (default the newest)")
# Tile coordinates are taken as text and checked by geo.read.tiles.parse_tile, so that a negative,
# fractional or out-of-range value is a 400 naming the problem (not a generic 422).
Z = Path(description="Zoom level, 0 .. 22 (RISKATLAS_TILES_MAX_ZOOM)", examples=["10"])
X = Path(description="Column, 0 .. 2^z - 1 (WebMercatorQuad, XYZ scheme)", examples=["531"])
Y = Path(description="Row, 0 .. 2^z - 1, from the north", examples=["367"])
LAYER = Path(description="Name of a hazard layer")


def _tile_response(request: Request, body: bytes, etag: str, media_type: str,
                   cache_control: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": cache_control, "Vary": VARY}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type=media_type, headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {part.strip().removeprefix("W/") for part in header.split(",")}
    return "*" in candidates or etag in candidates


def _query(**params: Any) -> str:
    given = {name: value for name, value in params.items() if value is not None}
    return ("?" + urlencode(given)) if given else ""


# -- vector tiles -------------------------------------------------------------------------------


@router.get("/localities/tilejson.json", summary="TileJSON of the localities vector tiles")
async def localities_tilejson(request: Request, tiles: Tiles, run: str | None = RUN,
                              level: int | None = LEVEL) -> JSONResponse:
    """Return TileJSON 3.0 for the localities layer of a run (default the latest)."""
    run_id = await tiles.resolve_run(run)
    url = (str(request.base_url).rstrip("/") + "/tiles/localities/{z}/{x}/{y}.mvt"
           + _query(run=run_id, level=level))
    document = await run_in_threadpool(tiles.tilejson, url, run_id)
    return JSONResponse(document)


@router.get(
    "/localities/{z}/{x}/{y}.mvt",
    summary="Mapbox Vector Tile of localities with their scores",
    response_class=Response,
    responses={200: {"content": {MVT_MEDIA_TYPE: {}}, "description": "The tile (may be empty)"},
               304: {"description": "Not modified (If-None-Match)"},
               400: {"description": "Not a tile address"},
               503: {"description": "Busy or too slow; retry"}},
)
async def locality_tile(
    request: Request, tiles: Tiles, role: FastRole,
    z: str = Z, x: str = X, y: str = Y, run: str | None = RUN, level: int | None = LEVEL,
) -> Response:
    """Return one tile: code, name, level, population and the run's scores per locality.

    Layer `localities`; properties composite, hazard_exposure, vulnerability,
    lack_of_coping_capacity, stressed_dimensions, compounded, hotspot, rank. Tiles of an
    explicit run are immutable and cached; `latest` is re-resolved every few seconds.
    """
    tile = parse_tile(z, x, y, tiles.settings.max_zoom)
    analyst = role_rank(role) >= role_rank("analyst")
    result = await tiles.locality_tile(tile, run, level, analyst)
    settings = tiles.settings
    explicit = run is not None and run != "latest"
    age = settings.cache_max_age_s if explicit else settings.latest_max_age_s
    scope = "private" if analyst or presented_key(request) else "public"
    response = _tile_response(request, result.body, result.etag, MVT_MEDIA_TYPE,
                              f"{scope}, max-age={age}")
    if result.run_id is not None:
        response.headers["X-Score-Run"] = str(result.run_id)
    return response


# -- raster tiles --------------------------------------------------------------------------------


@router.get("/hazards/{layer}/tilejson.json", summary="TileJSON of a hazard layer")
async def hazard_tilejson(request: Request, rasters: Rasters, layer: str = LAYER,
                          colormap: str | None = COLORMAP, rescale: str | None = RESCALE,
                          version: int | None = VERSION) -> JSONResponse:
    """Return TileJSON 3.0 for PNG tiles of a hazard layer version."""
    found = await rasters.find_layer(layer, version)
    parse_colormap(colormap, found)
    parse_rescale(rescale, found)
    url = (str(request.url_for("hazard_tile", layer=found.layer, z="{z}", x="{x}", y="{y}"))
           .replace("%7B", "{").replace("%7D", "}")
           + _query(colormap=colormap, rescale=rescale, version=found.version))
    return JSONResponse(await run_in_threadpool(rasters.tilejson, found, url))


@router.get("/hazards/{layer}/legend", summary="Legend of a hazard layer")
async def hazard_legend(rasters: Rasters, layer: str = LAYER, colormap: str | None = COLORMAP,
                        rescale: str | None = RESCALE,
                        version: int | None = VERSION) -> JSONResponse:
    """Return colour stops over the value range, the unit and the layer's class thresholds."""
    found = await rasters.find_layer(layer, version)
    chosen = parse_colormap(colormap, found)
    return JSONResponse(legend(found, chosen, parse_rescale(rescale, found)))


@router.get(
    "/hazards/{layer}/{z}/{x}/{y}.png",
    name="hazard_tile",
    summary="PNG tile of a hazard layer",
    response_class=Response,
    responses={200: {"content": {"image/png": {}},
                     "description": "The tile; transparent where there is no data"},
               304: {"description": "Not modified (If-None-Match)"},
               400: {"description": "Not a tile address"}},
)
async def hazard_tile(
    request: Request, rasters: Rasters, layer: str = LAYER, z: str = Z, x: str = X, y: str = Y,
    colormap: str | None = COLORMAP, rescale: str | None = RESCALE,
    version: int | None = VERSION,
) -> Response:
    """Return one PNG tile of the layer's newest (or given) version; nodata is transparent."""
    tile = parse_tile(z, x, y, rasters.settings.max_zoom)
    found = await rasters.find_layer(layer, version)
    rendered = await rasters.tile(found, tile, parse_colormap(colormap, found),
                                  parse_rescale(rescale, found))
    settings = rasters.settings
    age = settings.cache_max_age_s if version is not None else settings.latest_max_age_s
    return _tile_response(request, rendered.body, rendered.etag, "image/png",
                          f"public, max-age={age}")
