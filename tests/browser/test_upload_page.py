"""The upload page end to end in headless Chromium: progress, success link, errors in words.

Uploads go to the session's main test database (`live_server`), not the demo region, whose
layer and job counts other tests assert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from sqlalchemy import Engine, text

from geo.db import build_engine
from geo.keys import create_key
from geo.settings import Settings
from tests.browser.conftest import PageLog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def engine(settings: Settings) -> Iterator[Engine]:
    """An engine on the live server's database, to check what was stored."""
    built = build_engine(settings.database.url or "", settings)
    yield built
    built.dispose()


@pytest.fixture(scope="module")
def uploader_key(engine: Engine) -> str:
    """A fresh API key with the uploader role."""
    return create_key(engine, "browser upload test", "uploader").secret


@pytest.fixture()
def small_geotiff(tmp_path: Path) -> Path:
    """A 40 x 40 flood-depth GeoTIFF in EPSG:4326 with nodata."""
    path = tmp_path / "flood.tif"
    depth = np.linspace(0, 3, 1600, dtype="float32").reshape(40, 40)
    depth[:3, :3] = -9999
    profile = {"driver": "GTiff", "width": 40, "height": 40, "count": 1, "dtype": "float32",
               "crs": "EPSG:4326", "transform": from_origin(36.4, 32.4, 0.01, 0.01),
               "nodata": -9999}
    with rasterio.open(path, "w", **profile) as out:
        out.write(depth, 1)
    return path


def _layer_rows(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(
            "SELECT count(*) FROM raster_layers l LEFT JOIN raster_versions v "
            "ON v.layer_id = l.id WHERE l.name = :name"), {"name": name}).scalar() or 0)


def _stored_files(settings: Settings) -> set[Path]:
    """Return every file under the data directory (rasters, staging), for before/after checks."""
    return {path for path in settings.storage.data_dir.rglob("*") if path.is_file()}


def _fill(tab: Any, file: Path, name: str, key: str) -> None:
    tab.set_input_files("#ra-file", str(file))
    tab.fill("#ra-name", name)
    tab.select_option("#ra-kind", "flood")
    tab.fill("#ra-unit", "m")
    tab.select_option("#ra-polarity", "higher_is_worse")
    tab.fill("#ra-threshold", "0.5")
    tab.fill("#ra-t-low", "0.2")
    tab.fill("#ra-t-medium", "0.5")
    tab.fill("#ra-t-high", "1.5")
    tab.fill("#ra-key", key)


def test_upload_a_geotiff_then_open_it_on_the_map(
    page: tuple[Any, PageLog], live_server: Any, uploader_key: str, small_geotiff: Path,
    engine: Engine, screenshot: Any,
) -> None:
    tab, log = page
    base = live_server.base_url
    name = f"Browser flood {uuid.uuid4().hex[:8]}"
    tab.goto(f"{base}/upload")
    _fill(tab, small_geotiff, name, uploader_key)
    tab.click("#ra-submit")
    tab.wait_for_selector("#ra-success", timeout=60_000)
    assert tab.evaluate("document.getElementById('ra-bytes').value") == 100
    assert tab.evaluate("document.getElementById('ra-job').value") == 100
    assert name in tab.inner_text("#ra-success")
    screenshot(tab, "upload-success")
    assert _layer_rows(engine, name) == 1
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT kind, unit, threshold, level_thresholds FROM "
                                   "raster_layers WHERE name = :n"), {"n": name}).one()
    assert stored.kind == "flood" and stored.unit == "m" and stored.threshold == 0.5
    assert stored.level_thresholds == {"low": 0.2, "medium": 0.5, "high": 1.5}
    # The link opens the map with the new layer on: its tiles are requested.
    tab.click("#ra-open-map")
    tab.wait_for_url("**/?hazard=*")
    tab.wait_for_function("() => [...document.querySelectorAll('#ra-hazards input[type=checkbox]')]"
                          ".some(box => box.checked)")
    tab.wait_for_selector("#ra-hazards .ra-gradient")
    tab.wait_for_timeout(1000)
    screenshot(tab, "upload-layer-on-map")
    if "No score run" in tab.inner_text("#ra-status"):
        # This database has rasters but no score run: said as a state, not as an error.
        assert tab.is_hidden("#ra-map-alert")
    hazard_tiles = [u for u in log.requests if "/tiles/hazards/" in u and u.endswith(".png")]
    assert hazard_tiles, "the new layer's tiles were not requested"
    assert log.external(base) == [] and log.page_errors == []


def test_a_bad_file_is_refused_in_words_and_nothing_is_stored(
    page: tuple[Any, PageLog], live_server: Any, uploader_key: str, tmp_path: Path,
    engine: Engine, settings: Settings, screenshot: Any,
) -> None:
    tab, _ = page
    bad = tmp_path / "not-a-raster.tif"
    bad.write_text("this is a text file, not a GeoTIFF\n" * 20)
    name = f"Broken {uuid.uuid4().hex[:8]}"
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM raster_versions")).scalar()
    files_before = _stored_files(settings)
    tab.goto(f"{live_server.base_url}/upload")
    _fill(tab, bad, name, uploader_key)
    tab.click("#ra-submit")
    tab.wait_for_selector("#ra-failure", timeout=60_000)
    message = tab.inner_text("#ra-failure")
    assert "Nothing was stored" in message
    assert "GeoTIFF" in message or "raster" in message.lower() or "not" in message.lower()
    screenshot(tab, "upload-bad-file")
    assert _layer_rows(engine, name) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM raster_versions")).scalar() == before
    # Nor on disk: no COG under rasters/, and the staged upload was cleaned away.
    assert _stored_files(settings) == files_before


def test_missing_fields_and_a_wrong_key_are_explained(
    page: tuple[Any, PageLog], live_server: Any, small_geotiff: Path,
) -> None:
    tab, _ = page
    tab.goto(f"{live_server.base_url}/upload")
    tab.click("#ra-submit")
    problems = tab.inner_text("#ra-failure")
    assert "Choose a GeoTIFF" in problems and "name" in problems and "API key" in problems
    _fill(tab, small_geotiff, "Never stored", "ra_00000000_not-a-real-key")
    tab.click("#ra-submit")
    tab.wait_for_function("document.querySelector('#ra-failure')?.innerText.includes('key')")
    assert "uploader role" in tab.inner_text("#ra-failure")
