"""Inspect raster uploads and convert them to Cloud-Optimized GeoTIFFs in bounded memory.

Storage CRS: the COG keeps the raster's **native CRS and grid**; only the metadata bounds
are given in EPSG:4326. Reprojecting would resample every value: counts per cell would no
longer sum to the population, class rasters would need nearest-neighbour and continuous
ones a different kernel, and the cells would be re-gridded twice (once here, once when
tiled). titiler/rio-tiler reproject tiles on the fly from any CRS, and zonal statistics
(exactextract) reproject the polygons to the raster, so nothing downstream needs the
raster itself in EPSG:4326. Vectors, by contrast, are stored in EPSG:4326.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Proj, Transformer
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from geo.disk import raise_if_gdal_filled
from geo.ingest._gdal import gdal_path, raster_env
from geo.ingest._problems import fail_one
from geo.ingest.files import FileKind, UploadedFile

ALLOWED_RASTER_DRIVERS: dict[FileKind, str] = {
    FileKind.GEOTIFF: "GTiff",
    FileKind.ASCII_GRID: "AAIGrid",
}
DEFAULT_MAX_CELLS = 400_000_000
# One internal block must fit comfortably in memory, or windowed reading cannot bound it.
MAX_BLOCK_BYTES = 256 * 1024**2
# Cells per window (~1 M): a window's few float64 temporaries stay near 10 MB each, so
# peak memory does not depend on the raster's width or height.
WINDOW_CELLS = 1024 * 1024
WINDOW_SIDE = 1024
SAMPLE_TARGET = 1_000_000
HISTOGRAM_BINS = 64
PERCENTILES = (2, 5, 10, 25, 50, 75, 90, 95, 98)
PARTIAL_PREFIX = ".cog-partial-"

Progress = Callable[[float], None]
OverviewResampling = Literal[
    "nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "gauss", "rms"
]


@dataclass(frozen=True)
class RasterInfo:
    """What a raster's header says, with its bounds also given in EPSG:4326."""

    driver: str
    crs: str
    transform: Affine
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    bounds: tuple[float, float, float, float]
    bounds_4326: tuple[float, float, float, float]
    resolution: tuple[float, float]


@dataclass(frozen=True)
class RasterStats:
    """Statistics of the stored values; histogram and percentiles come from a sample."""

    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    total: float | None
    valid_count: int
    nodata_count: int
    histogram_edges: tuple[float, ...]
    histogram_counts: tuple[int, ...]
    percentiles: dict[int, float]
    approximate: bool
    density_converted: bool
    info: RasterInfo
    path: Path


# --- inspection -----------------------------------------------------------------------


def inspect_raster(uploaded: UploadedFile, *, max_cells: int = DEFAULT_MAX_CELLS) -> RasterInfo:
    """Return the raster's header facts, refusing bad CRS, geotransform, size or driver."""
    with raster_env(), _open(uploaded) as dataset:
        return _describe(dataset, uploaded.original_name, uploaded.kind, max_cells)


def _open(uploaded: UploadedFile) -> rasterio.DatasetReader:
    """Return the raster opened through the one GDAL driver its kind allows."""
    name = uploaded.original_name
    driver = ALLOWED_RASTER_DRIVERS.get(uploaded.kind)
    if driver is None:
        fail_one(name, f"expected a GeoTIFF or ESRI ASCII grid, got a {uploaded.kind} file")
    path = gdal_path(uploaded.path, uploaded.directory)
    try:
        dataset = rasterio.open(path, driver=driver)
    except (RasterioError, CPLE_BaseError) as exc:
        fail_one(name, f"the file is corrupt or not a valid {driver} raster ({_gdal_reason(exc)})")
    if dataset.driver != driver:
        dataset.close()
        fail_one(name, f"opened as {dataset.driver}, but only {driver} is allowed")
    return dataset


def _gdal_reason(exc: Exception) -> str:
    """Return a GDAL error without the staged path, which means nothing to the user."""
    return str(exc).split(": ", 1)[-1][:200] if "/" in str(exc) else str(exc)[:200]


def _describe(
    dataset: rasterio.DatasetReader, name: str, kind: FileKind, max_cells: int
) -> RasterInfo:
    """Return RasterInfo for an open dataset after the header checks (no pixel is read)."""
    _check_dimensions(dataset, name, max_cells)
    if dataset.crs is None:
        hint = (
            "; upload the .asc zipped together with its .prj"
            if kind is FileKind.ASCII_GRID
            else ""
        )
        fail_one(name, f"the raster has no coordinate reference system{hint}")
    if dataset.transform.is_identity:
        reason = "it has ground control points only" if dataset.gcps[0] else "none is set"
        fail_one(name, f"the raster has no geotransform ({reason}); georeference it first")
    try:
        bounds_4326 = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds, densify_pts=21)
    except (RasterioError, ValueError) as exc:
        fail_one(name, f"the raster's bounds cannot be expressed in EPSG:4326 ({exc})")
    if not all(math.isfinite(v) for v in bounds_4326):
        fail_one(name, "the raster's bounds cannot be expressed in EPSG:4326")
    return RasterInfo(
        driver=dataset.driver,
        crs=dataset.crs.to_string(),
        transform=dataset.transform,
        width=dataset.width,
        height=dataset.height,
        count=dataset.count,
        dtype=dataset.dtypes[0],
        nodata=dataset.nodata,
        bounds=_four(dataset.bounds),
        bounds_4326=_four(bounds_4326),
        resolution=(float(dataset.res[0]), float(dataset.res[1])),
    )


def _four(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Return west, south, east, north as plain floats."""
    west, south, east, north = (float(v) for v in values)
    return west, south, east, north


def _check_dimensions(dataset: rasterio.DatasetReader, name: str, max_cells: int) -> None:
    """Raise if the header claims more cells, or bigger blocks, than we will process."""
    cells = dataset.width * dataset.height * dataset.count
    if cells > max_cells:
        fail_one(
            name,
            f"the header claims {dataset.width:,} × {dataset.height:,} × {dataset.count} cells "
            f"({cells:,}), over the limit of {max_cells:,}",
            too_large=True,
        )
    block_height, block_width = dataset.block_shapes[0]
    block_bytes = block_height * block_width * np.dtype(dataset.dtypes[0]).itemsize
    if block_bytes > MAX_BLOCK_BYTES:
        fail_one(
            name,
            f"an internal block of {block_width:,} × {block_height:,} cells is too large to "
            "process in bounded memory; re-save the file tiled",
            too_large=True,
        )


# --- conversion -----------------------------------------------------------------------


def write_cog(
    uploaded: UploadedFile,
    dest: Path,
    *,
    density_to_count: bool = False,
    progress: Progress | None = None,
    max_cells: int = DEFAULT_MAX_CELLS,
    overview_resampling: OverviewResampling = "nearest",
) -> RasterStats:
    """Return statistics of the COG written atomically to `dest` (native CRS, deflate).

    With `density_to_count`, values in people per km² become people per cell using each
    cell's true (geodesic) area. Work is done window by window, so memory stays bounded
    whatever the raster size. On any error nothing is left at or beside `dest`.
    """
    report = progress or (lambda fraction: None)
    dest.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=dest.parent))
    try:
        with raster_env(), _open(uploaded) as source:
            source_info = _describe(source, uploaded.original_name, uploaded.kind, max_cells)
            if source_info.count != 1:
                fail_one(uploaded.original_name, f"expected 1 band, found {source_info.count}")
            rotated = source_info.transform.b != 0 or source_info.transform.d != 0
            if density_to_count and rotated:
                fail_one(uploaded.original_name, "density conversion needs a north-up raster")
            stats, stored = _prepare_values(source, scratch, density_to_count, report)
            report(0.5)
            partial = scratch / "out.tif"
            with stored as values:
                _translate(values, partial, overview_resampling)
            report(0.95)
            with rasterio.open(partial, driver="GTiff") as written:
                info = _describe(written, uploaded.original_name, FileKind.GEOTIFF, max_cells)
        os.replace(partial, dest)
    except (RasterioError, CPLE_BaseError) as exc:
        # A full disk is not a corrupt file; say so while the partial output still fills it.
        raise_if_gdal_filled(exc, dest.parent)
        fail_one(
            uploaded.original_name, f"the raster is corrupt or unreadable ({_gdal_reason(exc)})"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(1.0)
    return stats.result(info, dest, density_to_count)


def clean_partial_outputs(directory: Path) -> int:
    """Return how many leftover partial COG directories (from a killed process) were removed."""
    removed = 0
    for leftover in directory.glob(f"{PARTIAL_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed


def _prepare_values(
    source: rasterio.DatasetReader, scratch: Path, density_to_count: bool, report: Progress
) -> tuple[_StreamingStats, AbstractContextManager[rasterio.DatasetReader]]:
    """Return streaming statistics and the dataset holding the values to store."""
    stats = _StreamingStats(source.width * source.height)
    if not density_to_count:
        for window, fraction in _windows(source):
            data = source.read(1, window=window, masked=True)
            stats.add(data)
            report(0.45 * fraction)
        # The source is already open (and closed) by the caller.
        return stats, nullcontext(source)
    counts_path = scratch / "counts.tif"
    _densities_to_counts(source, counts_path, stats, report)
    return stats, rasterio.open(counts_path, driver="GTiff")


def _translate(
    values: rasterio.DatasetReader, partial: Path, overview_resampling: OverviewResampling
) -> None:
    """Write `values` as a deflate COG with internal overviews, without loading it whole."""
    profile = cog_profiles.get("deflate")
    is_float = np.dtype(values.dtypes[0]).kind == "f"
    profile.update(blockxsize=512, blockysize=512, predictor=3 if is_float else 2)
    cog_translate(
        values,
        partial,
        profile,
        in_memory=False,
        quiet=True,
        overview_resampling=overview_resampling,
        config={"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_OVR_BLOCKSIZE": "512"},
    )


def _windows(dataset: rasterio.DatasetReader) -> Iterator[tuple[Window, float]]:
    """Yield windows of about WINDOW_CELLS aligned to the internal blocks, with fraction done."""
    block_height, block_width = dataset.block_shapes[0]
    # Tiled files get square-ish windows of whole tiles; striped files whole-width bands.
    width = min(dataset.width, max(block_width, WINDOW_SIDE // block_width * block_width))
    rows = max(block_height, WINDOW_CELLS // width // block_height * block_height)
    total = dataset.width * dataset.height
    done = 0
    for top in range(0, dataset.height, rows):
        height = min(rows, dataset.height - top)
        for left in range(0, dataset.width, width):
            cols = min(width, dataset.width - left)
            done += cols * height
            yield Window(left, top, cols, height), done / total


# --- density to counts ----------------------------------------------------------------


def _densities_to_counts(
    source: rasterio.DatasetReader,
    target: Path,
    stats: _StreamingStats,
    report: Progress,
) -> None:
    """Write people per cell (density × true cell area in km²) to a tiled GeoTIFF."""
    transform = source.transform
    nodata = source.nodata if source.nodata is not None else float("nan")
    dtype = "float64" if source.dtypes[0] == "float64" else "float32"
    profile = dict(
        driver="GTiff", width=source.width, height=source.height, count=1, dtype=dtype,
        crs=source.crs, transform=transform, nodata=nodata, tiled=True,
        # Uncompressed: windows need not match the tiles, and rewriting part of a compressed
        # tile would append a new copy of it; cog_translate compresses afterwards.
        blockxsize=512, blockysize=512, bigtiff="if_safer",
    )
    areas = _CellAreas(source.crs, transform, source.height)
    with rasterio.open(target, "w", **profile) as sink:
        for window, fraction in _windows(source):
            density = source.read(1, window=window, masked=True).astype("float64")
            counts = density * areas.km2(window)
            stats.add(counts)
            sink.write(counts.filled(nodata).astype(dtype), 1, window=window)
            report(0.45 * fraction)


class _CellAreas:
    """True cell areas in km²: per row for geographic grids, per cell for projected ones."""

    def __init__(self, crs: rasterio.crs.CRS, transform: Affine, height: int) -> None:
        self.crs = CRS.from_wkt(crs.to_wkt())
        self.transform = transform
        self.height = height
        self._row_areas: np.ndarray | None = None

    def km2(self, window: Window) -> np.ndarray:
        """Return the areas of the window's cells (rows × 1 or rows × cols), in km²."""
        rows = np.arange(window.row_off, window.row_off + window.height)
        if self.crs.is_geographic:
            if self._row_areas is None:
                self._row_areas = self._geographic_rows(np.arange(self.height))
            return self._row_areas[rows][:, np.newaxis]
        return self._projected_cells(rows, window)

    def _geographic_rows(self, rows: np.ndarray) -> np.ndarray:
        """Return the geodesic area of one cell of each row (cells of a row are equal)."""
        geod = self.crs.get_geod()
        assert geod is not None
        width = abs(self.transform.a)
        areas = np.empty(len(rows))
        for i, row in enumerate(rows):
            top = self.transform.f + row * self.transform.e
            bottom = top + self.transform.e
            top, bottom = max(min(top, 90.0), -90.0), max(min(bottom, 90.0), -90.0)
            area, _ = geod.polygon_area_perimeter([0, width, width, 0], [top, top, bottom, bottom])
            areas[i] = abs(area) / 1e6
        return areas

    def _projected_cells(self, rows: np.ndarray, window: Window) -> np.ndarray:
        """Return nominal cell area divided by the projection's areal scale at each centre."""
        metres = self.crs.axis_info[0].unit_conversion_factor
        nominal = abs(self.transform.a * self.transform.e) * metres**2 / 1e6
        cols = np.arange(window.col_off, window.col_off + window.width) + 0.5
        xs = self.transform.c + cols * self.transform.a
        ys = self.transform.f + (rows + 0.5) * self.transform.e
        grid_x, grid_y = np.meshgrid(xs, ys)
        to_geographic = Transformer.from_crs(self.crs, self.crs.geodetic_crs, always_xy=True)
        lon, lat = to_geographic.transform(grid_x, grid_y)
        factors = Proj(self.crs).get_factors(lon, lat)
        return nominal / np.asarray(factors.areal_scale)


# --- statistics -----------------------------------------------------------------------


class _StreamingStats:
    """Exact count/min/max/mean/std/sum merged window by window, plus a systematic sample."""

    def __init__(self, total_cells: int) -> None:
        self.stride = max(1, math.ceil(total_cells / SAMPLE_TARGET))
        self.count = 0
        self.nodata = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.total = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.samples: list[np.ndarray] = []

    def add(self, data: np.ma.MaskedArray) -> None:
        """Merge one window's valid (unmasked, finite) values into the statistics."""
        values = data.compressed()
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        self.nodata += data.size - values.size
        if values.size == 0:
            return
        # Chan et al.'s pairwise update keeps the variance exact without a second pass;
        # sums run in float64 whatever the cell type.
        n, total = values.size, float(values.sum(dtype="float64"))
        mean = total / n
        m2 = float(np.square(np.subtract(values, mean, dtype="float64")).sum())
        delta, combined = mean - self.mean, self.count + n
        self.mean += delta * n / combined
        self.m2 += m2 + delta**2 * self.count * n / combined
        self.total += total
        self.low = min(self.low, float(values.min()))
        self.high = max(self.high, float(values.max()))
        start = (-self.count) % self.stride
        self.samples.append(values[start :: self.stride].astype("float64"))
        self.count = combined

    def result(self, info: RasterInfo, path: Path, density_converted: bool) -> RasterStats:
        """Return the final statistics, with histogram and percentiles from the sample."""
        sample = np.concatenate(self.samples) if self.samples else np.empty(0)
        edges: tuple[float, ...] = ()
        counts: tuple[int, ...] = ()
        percentiles: dict[int, float] = {}
        if sample.size:
            hist, bin_edges = np.histogram(sample, bins=HISTOGRAM_BINS, range=(self.low, self.high))
            scale = self.count / sample.size
            edges = tuple(float(v) for v in bin_edges)
            counts = tuple(int(round(v * scale)) for v in hist)
            values = np.percentile(sample, PERCENTILES)
            percentiles = {p: float(v) for p, v in zip(PERCENTILES, values, strict=True)}
        valid = self.count > 0
        return RasterStats(
            min=self.low if valid else None,
            max=self.high if valid else None,
            mean=self.mean if valid else None,
            std=math.sqrt(self.m2 / self.count) if valid else None,
            total=self.total if valid else None,
            valid_count=self.count,
            nodata_count=self.nodata,
            histogram_edges=edges,
            histogram_counts=counts,
            percentiles=percentiles,
            approximate=self.stride > 1,
            density_converted=density_converted,
            info=info,
            path=path,
        )
