"""HTML pages, rendered from Jinja2 templates with autoescape on.

Routes stay thin: each gathers the API URLs the page's JS calls (from `url_for`, never
hard-coded) and renders a template. The pages read data only through the public API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from frontend.mapview import build_map

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
# Placeholders the JS swaps for URL-encoded values (url_for would percent-encode braces).
CODE = "__CODE__"
LAYER = "__LAYER__"
HAZARD_KINDS = ("flood", "landslide", "drought", "heat", "cyclone", "earthquake", "climate",
                "other")

router = APIRouter(include_in_schema=False)


def _url(request: Request, name: str, **params: Any) -> str:
    return request.url_for(name, **params).path


def api_urls(request: Request) -> dict[str, str]:
    """Return every API URL the pages' JS needs, by name."""
    return {
        "tilejson": _url(request, "localities_tilejson"),
        "tiles": _url(request, "locality_tile", z="__Z__", x="__X__", y="__Y__")
        .replace("__Z__", "{z}").replace("__X__", "{x}").replace("__Y__", "{y}"),
        "hazard_tiles": _url(request, "hazard_tile", layer=LAYER, z="__Z__", x="__X__",
                             y="__Y__").replace("__Z__", "{z}").replace("__X__", "{x}")
        .replace("__Y__", "{y}"),
        "hazard_legend": _url(request, "hazard_legend", layer=LAYER),
        "hazard_tilejson": _url(request, "hazard_tilejson", layer=LAYER),
        "map_options": _url(request, "options"),
        "map_classes": _url(request, "classes"),
        "localities": _url(request, "list_localities"),
        "risk": _url(request, "risk_profile", code=CODE),
        "rankings": _url(request, "rankings"),
        "rankings_csv": _url(request, "export_rankings", fmt="csv"),
        "layers": _url(request, "layers"),
        "events": _url(request, "items", collectionId="events"),
        "institutions": _url(request, "items", collectionId="institutions"),
        "upload_hazard": _url(request, "upload", kind="hazard"),
        "map_page": _url(request, "map_page"),
        "upload_page": _url(request, "upload_page"),
        "print_page": _url(request, "print_page", code=CODE),
    }


def _static(request: Request) -> Any:
    return lambda path: _url(request, "static", path=path)


@router.get("/", response_class=HTMLResponse, name="map_page")
def map_page(request: Request) -> HTMLResponse:
    """Return the map: choropleth, overlays, locality panel, search and rankings."""
    parts = build_map(_static(request))
    config = {"urls": api_urls(request), "placeholders": {"code": CODE, "layer": LAYER}}
    return templates.TemplateResponse(request, "map.html", {
        "title": "riskatlas — who is left behind, where, and why",
        "map": parts, "config": config,
    })


@router.get("/upload", response_class=HTMLResponse, name="upload_page")
def upload_page(request: Request) -> HTMLResponse:
    """Return the hazard raster upload form (uploader role, key typed into the form)."""
    config = {"urls": api_urls(request), "placeholders": {"code": CODE, "layer": LAYER}}
    return templates.TemplateResponse(request, "upload.html", {
        "title": "Upload a hazard layer — riskatlas", "config": config, "kinds": HAZARD_KINDS,
    })


@router.get("/print/{code}", response_class=HTMLResponse, name="print_page")
def print_page(request: Request, code: str) -> HTMLResponse:
    """Return a printable one-page profile of a locality (rendered from the risk API)."""
    config = {"urls": api_urls(request), "placeholders": {"code": CODE, "layer": LAYER},
              "code": code}
    return templates.TemplateResponse(request, "print.html", {
        "title": f"Locality profile {code} — riskatlas", "config": config,
    })
