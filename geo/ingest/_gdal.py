"""GDAL safety: scoped configuration and a guard that only our own files reach GDAL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyogrio
import rasterio

# Options applied around every GDAL call on an upload. READDIR off: GDAL must not list the
# directory looking for sidecars (.aux.xml, .ovr); the extension allow-list for /vsicurl/
# names something no file has. GDAL also fetches URLs found *inside* files (a GeoJSON
# `"crs": {"type": "link", "href": "http://..."}` is downloaded by OSR), so every GDAL
# HTTP request is sent to a dead local proxy (port 9, discard) and fails at once.
GDAL_SAFE_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".riskatlas-no-network",
    "GDAL_HTTP_PROXY": "127.0.0.1:9",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "1",
}
# Bounded block cache (MB) so windowed reads of huge rasters keep memory flat.
RASTER_CACHE_MB = 64

# pyogrio carries its own GDAL whose configuration is process-global; serialise changes.
_pyogrio_lock = threading.Lock()


def gdal_path(path: Path, root: Path) -> str:
    """Return `path` as a string for GDAL after checking it is a plain file inside `root`."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()) or not resolved.is_file():
        raise ValueError(f"refusing to hand {path} to GDAL: not a file inside {root}")
    text = str(resolved)
    # A path we built never looks like a GDAL virtual or network name; refuse if it does.
    if text.startswith("/vsi") or "://" in text or not text.startswith("/"):
        raise ValueError(f"refusing to hand {path} to GDAL: looks like a virtual path")
    return text


@contextmanager
def raster_env() -> Iterator[None]:
    """Yield inside a rasterio.Env with the safe options and a bounded block cache."""
    with rasterio.Env(GDAL_CACHEMAX=RASTER_CACHE_MB, **GDAL_SAFE_OPTIONS):
        yield


@contextmanager
def vector_env() -> Iterator[None]:
    """Yield with the safe options set on pyogrio's GDAL, restoring the previous values."""
    with _pyogrio_lock:
        previous = {key: pyogrio.get_gdal_config_option(key) for key in GDAL_SAFE_OPTIONS}
        pyogrio.set_gdal_config_options(GDAL_SAFE_OPTIONS)
        try:
            yield
        finally:
            pyogrio.set_gdal_config_options(previous)
