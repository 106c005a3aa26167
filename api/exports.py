"""HTTP responses for exports; the formats themselves live in geo/read/exports.py."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from geo.read.exports import csv_stream, geojson_stream, write_geopackage

__all__ = ["csv_stream", "geojson_stream", "geopackage_response"]


def geopackage_response(items: Iterable[dict[str, Any]], filename: str,
                        headers: dict[str, str]) -> FileResponse:
    """Write the items to a temporary GeoPackage and stream it, removing it afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="riskatlas-export-"))
    path = workdir / "export.gpkg"
    write_geopackage(items, path)
    return FileResponse(path, media_type="application/geopackage+sqlite3", filename=filename,
                        headers=headers,
                        background=BackgroundTask(shutil.rmtree, workdir, ignore_errors=True))
