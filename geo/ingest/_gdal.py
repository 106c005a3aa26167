"""GDAL safety: only the drivers we need exist, scoped options, only our own files reach GDAL.

GDAL can open ~150 formats, several of which read other files or URLs named inside a file
(a VRT's `SourceFilename`, an OGR VRT's `SrcDataSource`, KML network links, SQLite virtual
tables). An upload is identified by content before GDAL sees it, but as a second wall every
driver riskatlas does not need is removed from the process (`GDAL_SKIP`), a vector upload
is opened through its one allowed driver (a `GeoJSON:`/`GPKG:` prefix, where GDAL has one),
and VRT raw bands, which map any local file as pixels, are disabled.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyogrio
import rasterio
import rasterio._env
import rasterio.env
from pyogrio import _ogr

log = logging.getLogger(__name__)

# The drivers riskatlas opens or writes. Rasters: uploads (GTiff, AAIGrid), COGs, PNG/JPEG/
# WEBP tiles, in-memory datasets; VRT stays for rasterio's WarpedVRT (reprojection), with
# raw bands off. Vectors (pyogrio): the four upload formats (GPKG also for exports).
RASTER_DRIVERS = frozenset({"GTiff", "COG", "AAIGrid", "MEM", "PNG", "JPEG", "WEBP", "VRT"})
VECTOR_DRIVERS = frozenset({"GPKG", "GeoJSON", "ESRI Shapefile", "FlatGeobuf", "MEM"})
# Drivers that accept a `NAME:` prefix that makes GDAL try that driver alone.
_DRIVER_PREFIXES = {"GeoJSON": "GeoJSON:", "GPKG": "GPKG:"}
# VRT raw bands (any local file read as pixels) and Python pixel functions, off. GDAL reads
# GDAL_VRT_ENABLE_RAWRASTERBAND from 3.12 on (pyogrio's GDAL); rasterio 1.4's GDAL 3.10
# ignores it, which is why uploads are always opened with their one driver named, and
# COGs are only ever written by us.
PROCESS_OPTIONS = {"GDAL_VRT_ENABLE_RAWRASTERBAND": "NO", "GDAL_VRT_ENABLE_PYTHON": "NO"}

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


def harden_gdal() -> dict[str, list[str]]:
    """Remove every GDAL driver riskatlas does not need and disable VRT raw bands.

    rasterio and pyogrio each bundle a GDAL; both are configured. GDAL reads `GDAL_SKIP`
    only while registering drivers, so registration is run again after setting it (GDAL
    then deregisters the listed drivers). Called once, when this module is imported, which
    happens while the app or the CLI starts, before any upload is opened. Returns the
    drivers skipped in each library.
    """
    skipped = {"rasterio": _harden_rasterio(), "pyogrio": _harden_pyogrio()}
    log.debug("GDAL drivers skipped: %s", skipped)
    return skipped


def _skip_list(names: set[str], keep: frozenset[str]) -> list[str]:
    return sorted(names - keep)


def _harden_rasterio() -> list[str]:
    with rasterio.Env() as env:
        skip = _skip_list(set(env.drivers()), RASTER_DRIVERS)
    for key, value in {**PROCESS_OPTIONS, "GDAL_SKIP": ",".join(skip)}.items():
        rasterio.env.set_gdal_config(key, value)
    # rasterio registers drivers once per process; clear its flag so that the next
    # environment registers again and GDAL's AutoSkipDrivers drops the skipped ones.
    rasterio._env._have_registered_drivers = False
    with rasterio.Env():
        pass
    return skip


def _harden_pyogrio() -> list[str]:
    with _pyogrio_lock:
        skip = _skip_list(set(pyogrio.list_drivers()), VECTOR_DRIVERS)
        # A comma list: several driver names contain spaces ("MapInfo File").
        pyogrio.set_gdal_config_options({**PROCESS_OPTIONS, "GDAL_SKIP": ",".join(skip)})
        register = getattr(_ogr, "_register_drivers", None)
        if register is None:  # a pyogrio without it: the skip list waits for GDAL's next look
            log.warning("pyogrio cannot re-register GDAL drivers; GDAL_SKIP is not in force")
            return []
        register()
    return skip


def vector_source(path: str, driver: str) -> str:
    """Return the name that makes GDAL open `path` with `driver` only, where GDAL allows it.

    GeoJSON and GeoPackage take a driver prefix; shapefiles and FlatGeobuf do not, and are
    then left to the few drivers that remain after `harden_gdal`, each of which recognises
    only its own format.
    """
    return _DRIVER_PREFIXES.get(driver, "") + path


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


harden_gdal()
