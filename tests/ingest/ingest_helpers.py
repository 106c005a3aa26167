"""Helpers for the ingestion tests: tiny rasters, zips, and assertions on errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geo.errors import ValidationError

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MAX_BYTES = 50 * 1024 * 1024


def assert_clean(workdir: Path) -> None:
    """Assert nothing was left behind under the staging root."""
    leftovers = list(workdir.rglob("*")) if workdir.exists() else []
    assert leftovers == [], f"left behind: {leftovers}"


def assert_names(error: ValidationError, file: str, *parts: str, **detail: object) -> None:
    """Assert the message names the file and every part, and the first detail matches."""
    assert file in error.message, error.message
    for part in parts:
        assert part in error.message, (part, error.message)
    assert error.details and error.details[0]["file"] == file
    for key, value in detail.items():
        assert error.details[0][key] == value, (key, error.details[0])
    assert "problem" in error.details[0]


def write_tif(
    path: Path,
    data: np.ndarray | None = None,
    *,
    crs: str | None = "EPSG:4326",
    transform: object | None = "default",
    nodata: float | None = -9999.0,
    **profile: object,
) -> Path:
    """Write a small single-band GeoTIFF and return its path."""
    array = np.arange(64 * 48, dtype="float32").reshape(48, 64) if data is None else data
    if transform == "default":
        transform = from_origin(29.0, -1.0, 0.01, 0.01)
    options: dict = dict(
        driver="GTiff", width=array.shape[1], height=array.shape[0], count=1,
        dtype=str(array.dtype), nodata=nodata,
    )
    if crs is not None:
        options["crs"] = crs
    if transform is not None:
        options["transform"] = transform
    options.update(profile)
    with rasterio.open(path, "w", **options) as dst:
        dst.write(array, 1)
    return path


def write_zip(path: Path, members: dict[str, bytes | Path]) -> Path:
    """Write a zip whose entries are given as name → bytes or a file to copy."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            archive.writestr(name, data)
    return path


def needs(*relative: str) -> pytest.MarkDecorator:
    """Return a skip marker for tests that need files from ../shared/data."""
    missing = [r for r in relative if not (DATA / r).exists()]
    return pytest.mark.skipif(bool(missing), reason=f"shared data absent: {missing}")
