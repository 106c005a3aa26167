"""Hazard PNG tiles over real HTTP: colormaps, nodata transparency, versions, TileJSON, legend."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.transform import from_bounds
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

WEST, SOUTH, EAST, NORTH = 104.0, -41.0, 105.0, -40.0


def tile_of(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    """Return the WebMercatorQuad tile holding lon/lat."""
    n = 2**zoom
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return zoom, x, y


def write_cog(path: Path, values: np.ndarray) -> None:
    """Write values (EPSG:4326 over the test area, nodata -9999) as a COG."""
    raw = path.with_suffix(".raw.tif")
    height, width = values.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1,
               "dtype": "float32", "crs": "EPSG:4326", "nodata": -9999.0,
               "transform": from_bounds(WEST, SOUTH, EAST, NORTH, width, height)}
    with rasterio.open(raw, "w", **profile) as dst:
        dst.write(values.astype("float32"), 1)
    cog_translate(raw, path, cog_profiles.get("deflate"), quiet=True)
    raw.unlink()


pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning",
                                        "ignore::PendingDeprecationWarning")


@pytest.fixture(scope="module")
def hazard(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Layer `ts_flood` with two versions; its west quarter is nodata."""
    folder = tmp_path_factory.mktemp("cogs")
    columns = np.tile(np.linspace(0, 10, 512, dtype="float32"), (512, 1))
    first = columns.copy()
    first[:, :128] = -9999.0
    paths = [folder / "v1.tif", folder / "v2.tif"]
    write_cog(paths[0], first)
    write_cog(paths[1], 10 - columns)
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        layer = conn.execute(
            "INSERT INTO raster_layers (name, role, kind, unit, polarity, threshold, "
            "level_thresholds, level_share) VALUES ('ts_flood', 'hazard', 'flood', 'm', "
            "'higher_is_worse', 0.5, '{\"high\": 2.0}', 0.1) RETURNING id").fetchone()[0]
        for version, path in enumerate(paths, start=1):
            conn.execute(
                "INSERT INTO raster_versions (layer_id, version, path, crs, width, height, "
                "resolution, nodata, dtype, statistics, footprint) VALUES (%s, %s, %s, "
                "'EPSG:4326', 512, 512, '[0.002, 0.002]', -9999, 'float32', "
                "'{\"min\": 0, \"max\": 10, \"percentiles\": {\"2\": 0.2, \"98\": 9.8}}', "
                "ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
                [layer, version, str(path), WEST, SOUTH, EAST, NORTH])
        conn.commit()
    yield {"layer": "ts_flood", "paths": paths}
    with psycopg.connect(db_url.replace("+psycopg", "")) as conn:
        conn.execute("DELETE FROM raster_layers WHERE id = %s", [layer])
        conn.commit()


def _rgba(body: bytes) -> np.ndarray:
    with MemoryFile(body) as memory, memory.open() as src:
        assert src.driver == "PNG"
        return src.read()


def _png(http: httpx.Client, lon: float, zoom: int, **params: Any) -> httpx.Response:
    z, x, y = tile_of(lon, -40.5, zoom)
    return http.get(f"/tiles/hazards/ts_flood/{z}/{x}/{y}.png", params=params)


def test_png_tile_with_nodata_transparent(http: httpx.Client, hazard: dict) -> None:
    response = _png(http, 104.5, 7, rescale="0,10", colormap="viridis")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    rgba = _rgba(response.content)
    assert rgba.shape[0] == 4 and rgba.shape[1:] == (256, 256)
    alpha = rgba[3]
    assert (alpha == 0).any() and (alpha == 255).any()
    inside = _rgba(_png(http, 104.8, 12, version=1).content)
    assert (inside[3] == 255).all()
    nodata = _rgba(_png(http, 104.05, 12, version=1).content)  # v1's west quarter is nodata
    assert (nodata[3] == 0).all()


def test_tile_outside_the_raster_is_transparent(http: httpx.Client, hazard: dict) -> None:
    response = http.get("/tiles/hazards/ts_flood/12/0/0.png")
    assert response.status_code == 200
    assert (_rgba(response.content)[3] == 0).all()


def test_colormap_rescale_and_versions_change_the_picture(
    http: httpx.Client, hazard: dict
) -> None:
    base = _png(http, 104.8, 9).content
    assert _png(http, 104.8, 9, colormap="reds").content != base
    assert _png(http, 104.8, 9, rescale="0,100").content != base
    assert _png(http, 104.8, 9, version=1).content != _png(http, 104.8, 9, version=2).content
    assert _png(http, 104.8, 9, version=2).content == base  # newest by default
    assert "max-age=60" in _png(http, 104.8, 9).headers["cache-control"]
    assert "max-age=86400" in _png(http, 104.8, 9, version=2).headers["cache-control"]


@pytest.mark.parametrize(("params", "status"), [
    ({"colormap": "nope"}, 422), ({"rescale": "1"}, 422), ({"rescale": "5,1"}, 422),
    ({"rescale": "a,b"}, 422), ({"rescale": "0,inf"}, 422), ({"version": "99"}, 404),
    ({"version": "x"}, 422), ({"version": "0"}, 422),
])
def test_bad_parameters(http: httpx.Client, hazard: dict, params: dict, status: int) -> None:
    response = _png(http, 104.8, 9, **params)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"code", "message", "details"}


def test_unknown_layer_and_bad_tile(http: httpx.Client, hazard: dict) -> None:
    assert http.get("/tiles/hazards/nope/1/0/0.png").status_code == 404
    assert http.get("/tiles/hazards/nope/tilejson.json").status_code == 404
    assert http.get("/tiles/hazards/nope/legend").status_code == 404
    assert http.get("/tiles/hazards/ts_flood/1/5/0.png").status_code == 400


def test_etag_and_conditional_request(http: httpx.Client, hazard: dict) -> None:
    first = _png(http, 104.8, 10)
    z, x, y = tile_of(104.8, -40.5, 10)
    again = http.get(f"/tiles/hazards/ts_flood/{z}/{x}/{y}.png",
                     headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_tilejson_and_legend(http: httpx.Client, hazard: dict) -> None:
    document = http.get("/tiles/hazards/ts_flood/tilejson.json",
                        params={"colormap": "reds"}).json()
    assert document["tilejson"] == "3.0.0"
    assert document["tiles"][0].endswith(
        "/tiles/hazards/ts_flood/{z}/{x}/{y}.png?colormap=reds&version=2")
    west, south, east, north = document["bounds"]
    assert west == pytest.approx(WEST) and north == pytest.approx(NORTH)
    assert document["minzoom"] <= document["maxzoom"]
    legend = http.get("/tiles/hazards/ts_flood/legend").json()
    assert legend["unit"] == "m" and legend["threshold"] == 0.5
    assert legend["level_thresholds"] == {"high": 2.0}
    assert legend["colormap"] == "blues" and legend["rescale"] == [0.2, 9.8]
    assert len(legend["stops"]) == 11 and legend["stops"][0]["color"].startswith("#")
    custom = http.get("/tiles/hazards/ts_flood/legend",
                      params={"rescale": "0,5", "colormap": "viridis"}).json()
    assert custom["stops"][-1] == {"value": 5.0, "color": "#fde724"}
