"""Raster inspection, COG conversion, statistics and density-to-count conversion."""

from __future__ import annotations

import math
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
from ingest_helpers import DATA, assert_clean, assert_names, needs, write_tif, write_zip
from pyproj import Geod
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_validate

from geo.errors import TooLargeError, ValidationError
from geo.ingest.files import FileKind, UploadedFile
from geo.ingest.rasters import clean_partial_outputs, inspect_raster, write_cog

WGS84_PRJ = (
    'GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],'
    'PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]'
)
ASCII_GRID = (
    "ncols 4\nnrows 3\nxllcorner 106.7\nyllcorner -6.3\ncellsize 0.01\nNODATA_value -9999\n"
    "1 2 3 4\n5 -9999 7 8\n9 10 11 12\n"
)


def no_leftovers(dest: Path) -> None:
    """Assert neither the COG nor any partial file exists beside it."""
    assert not dest.exists()
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


# --- the bad-raster table -------------------------------------------------------------


def corrupt_tiff(tmp: Path) -> Path:
    path = tmp / "flood.tif"
    path.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    return path


def no_crs(tmp: Path) -> Path:
    return write_tif(tmp / "nocrs.tif", crs=None)


def no_geotransform(tmp: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_tif(tmp / "plain.tif", transform=None)


def huge_header(tmp: Path) -> Path:
    path = tmp / "huge.tif"
    # Sparse and tiled: the header claims 10^12 cells, the file is a few tens of KB.
    with rasterio.open(
        path, "w", driver="GTiff", width=1_000_000, height=1_000_000, count=1, dtype="uint8",
        crs="EPSG:4326", transform=from_origin(0, 0, 1e-4, 1e-4), tiled=True,
        blockxsize=16384, blockysize=16384, sparse_ok=True, compress="deflate",
    ):
        pass
    assert path.stat().st_size < 1_000_000
    return path


def bare_ascii_grid(tmp: Path) -> Path:
    path = tmp / "depth.asc"
    path.write_text(ASCII_GRID)
    return path


BAD_RASTERS = [
    ("corrupt GeoTIFF", corrupt_tiff, ValidationError, ["corrupt"]),
    ("no CRS", no_crs, ValidationError, ["no coordinate reference system"]),
    ("no geotransform", no_geotransform, ValidationError, ["no geotransform"]),
    ("huge dimensions", huge_header, TooLargeError, ["1,000,000 × 1,000,000", "over the limit"]),
    ("ASCII grid without .prj", bare_ascii_grid, ValidationError, ["no coordinate", ".prj"]),
]


@pytest.mark.parametrize(
    ("builder", "error_class", "phrases"),
    [case[1:] for case in BAD_RASTERS],
    ids=[case[0] for case in BAD_RASTERS],
)
def test_bad_raster_is_refused_and_nothing_is_left(
    tmp_path: Path,
    upload: Callable,
    workdir: Path,
    builder: Callable,
    error_class: type,
    phrases: list[str],
) -> None:
    source = builder(tmp_path)
    dest = tmp_path / "rasters" / "layer.tif"
    uploaded = upload(source)
    with pytest.raises(error_class) as caught:
        inspect_raster(uploaded)
    assert_names(caught.value, source.name, *phrases)
    with pytest.raises(error_class):
        write_cog(uploaded, dest)
    no_leftovers(dest)
    uploaded.cleanup()
    assert_clean(workdir)


def test_truncated_geotiff_fails_while_converting(
    tmp_path: Path, upload: Callable, workdir: Path
) -> None:
    data = np.random.default_rng(1).random((600, 600), dtype="float32")
    full = write_tif(tmp_path / "full.tif", data, compress="deflate", tiled=True,
                     blockxsize=256, blockysize=256)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    dest = tmp_path / "rasters" / "layer.tif"
    with upload(cut) as uploaded, pytest.raises(ValidationError) as caught:
        write_cog(uploaded, dest)
    assert_names(caught.value, "cut.tif", "corrupt")
    no_leftovers(dest)
    assert_clean(workdir)


def test_vrt_that_bypassed_sniffing_is_refused_by_driver(tmp_path: Path) -> None:
    directory = tmp_path / "staged"
    directory.mkdir()
    vrt = directory / "upload.tif"
    vrt.write_text(
        '<VRTDataset rasterXSize="4" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1">'
        "<SimpleSource><SourceFilename>/etc/passwd</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    uploaded = UploadedFile("flood.tif", FileKind.GEOTIFF, vrt, directory, vrt.stat().st_size)
    with pytest.raises(ValidationError) as caught:
        inspect_raster(uploaded)
    assert_names(caught.value, "flood.tif", "not a valid GTiff")


def test_vector_upload_is_not_a_raster(tmp_path: Path, upload: Callable) -> None:
    path = tmp_path / "a.csv"
    path.write_text("lat,lon\n1,1\n")
    with upload(path) as uploaded, pytest.raises(ValidationError) as caught:
        inspect_raster(uploaded)
    assert_names(caught.value, "a.csv", "expected a GeoTIFF or ESRI ASCII grid")


def test_multiband_is_refused_by_write_cog(tmp_path: Path, upload: Callable) -> None:
    path = tmp_path / "rgb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=3, dtype="uint8",
                       crs="EPSG:4326", transform=from_origin(0, 8, 1, 1)) as dst:
        dst.write(np.zeros((3, 8, 8), dtype="uint8"))
    dest = tmp_path / "rasters" / "rgb.tif"
    with upload(path) as uploaded, pytest.raises(ValidationError, match="expected 1 band"):
        write_cog(uploaded, dest)
    no_leftovers(dest)


# --- conversion -----------------------------------------------------------------------


def test_write_cog_keeps_native_crs_and_streams_statistics(
    tmp_path: Path, upload: Callable
) -> None:
    rng = np.random.default_rng(7)
    data = rng.normal(2.0, 0.5, (700, 900)).astype("float32")
    data[:10, :] = -9999
    source = write_tif(tmp_path / "depth.tif", data, crs="EPSG:32748",
                       transform=from_origin(700000, 9300000, 30, 30))
    dest = tmp_path / "rasters" / "depth.tif"
    seen: list[float] = []
    with upload(source) as uploaded:
        stats = write_cog(uploaded, dest, progress=seen.append)
    valid = data[data != -9999].astype("float64")
    assert stats.valid_count == valid.size and stats.nodata_count == 9000
    assert stats.min == pytest.approx(valid.min()) and stats.max == pytest.approx(valid.max())
    assert stats.mean == pytest.approx(valid.mean()) and stats.std == pytest.approx(valid.std())
    assert stats.percentiles[50] == pytest.approx(np.median(valid), abs=0.01)
    assert sum(stats.histogram_counts) == pytest.approx(valid.size, rel=0.01)
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert cog_validate(dest)[0]
    with rasterio.open(dest) as cog:
        assert cog.crs.to_epsg() == 32748
        assert cog.overviews(1)
        assert cog.profile["compress"] == "deflate"
        assert np.array_equal(cog.read(1), data)
    assert stats.info.bounds_4326[0] == pytest.approx(106.8, abs=0.2)
    assert [p.name for p in dest.parent.iterdir()] == ["depth.tif"]


def test_density_to_count_uses_geodesic_cell_area(tmp_path: Path, upload: Callable) -> None:
    data = np.full((4, 3), 10.0, dtype="float32")
    data[0, 0] = -9999
    source = write_tif(tmp_path / "density.tif", data, transform=from_origin(10, 60, 1, 1))
    dest = tmp_path / "out" / "count.tif"
    with upload(source) as uploaded:
        stats = write_cog(uploaded, dest, density_to_count=True)
    geod = Geod(ellps="WGS84")
    areas = [abs(geod.polygon_area_perimeter([0, 1, 1, 0], [60 - r, 60 - r, 59 - r, 59 - r])[0])
             / 1e6 for r in range(4)]
    with rasterio.open(dest) as cog:
        counts = cog.read(1, masked=True)
    assert counts.mask[0, 0]
    assert counts[3, 2] == pytest.approx(10 * areas[3], rel=1e-6)
    assert stats.total == pytest.approx(10 * (sum(areas) * 3 - areas[0]), rel=1e-6)
    assert stats.density_converted


def test_density_to_count_in_projected_crs(tmp_path: Path, upload: Callable) -> None:
    data = np.full((5, 5), 100.0, dtype="float32")
    # 1 km cells on UTM zone 36S near its central meridian: true area ≈ 1/0.9996² km².
    source = write_tif(tmp_path / "d.tif", data, crs="EPSG:32736",
                       transform=from_origin(500000, 9800000, 1000, 1000))
    dest = tmp_path / "out" / "c.tif"
    with upload(source) as uploaded:
        stats = write_cog(uploaded, dest, density_to_count=True)
    assert stats.mean == pytest.approx(100 / 0.9996**2, rel=1e-3)


def test_clean_partial_outputs(tmp_path: Path) -> None:
    (tmp_path / ".cog-partial-abc").mkdir()
    (tmp_path / ".cog-partial-abc" / "out.tif").write_bytes(b"x")
    (tmp_path / "keep.tif").write_bytes(b"x")
    assert clean_partial_outputs(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.tif"]


def test_zipped_ascii_grid_with_prj(tmp_path: Path, upload: Callable) -> None:
    source = write_zip(tmp_path / "grid.zip", {"a/depth.asc": ASCII_GRID.encode(),
                                               "a/depth.prj": WGS84_PRJ.encode()})
    dest = tmp_path / "out" / "depth.tif"
    with upload(source) as uploaded:
        info = inspect_raster(uploaded)
        stats = write_cog(uploaded, dest)
    assert (info.driver, info.width, info.height, info.nodata) == ("AAIGrid", 4, 3, -9999.0)
    assert info.crs in ("EPSG:4326", "OGC:CRS84")
    assert (stats.valid_count, stats.min, stats.max) == (11, 1.0, 12.0)


# --- real files from ../shared/data ---------------------------------------------------

JAKARTA = "indonesia/jakarta"


def zip_grid(tmp: Path, relative: str) -> Path:
    target = tmp / (Path(relative).name + ".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for ext in (".asc", ".prj"):
            member = DATA / (relative + ext)
            archive.write(member, member.name)
    return target


@pytest.mark.realdata
@pytest.mark.parametrize(
    "relative",
    [
        f"{JAKARTA}/hazard/Flood_Current_Depth_Jakarta_geographic",
        f"{JAKARTA}/hazard/Flood_Design_Depth_Jakarta_geographic",
    ],
)
def test_real_jakarta_flood_grids(tmp_path: Path, upload: Callable, relative: str) -> None:
    if not (DATA / (relative + ".asc")).exists():
        pytest.skip("shared data absent")
    dest = tmp_path / "out" / "flood.tif"
    with upload(zip_grid(tmp_path, relative)) as uploaded:
        info = inspect_raster(uploaded)
        stats = write_cog(uploaded, dest)
    assert (info.width, info.height, info.crs) == (638, 649, "EPSG:4326")
    assert 0 <= stats.min and stats.max < 16
    assert cog_validate(dest)[0]


@needs(f"{JAKARTA}/population/Population_Jakarta_geographic.asc")
@pytest.mark.realdata
def test_real_jakarta_population_density(tmp_path: Path, upload: Callable) -> None:
    relative = f"{JAKARTA}/population/Population_Jakarta_geographic"
    dest = tmp_path / "out" / "pop.tif"
    with upload(zip_grid(tmp_path, relative)) as uploaded:
        density = write_cog(uploaded, tmp_path / "out" / "density.tif")
        counts = write_cog(uploaded, dest, density_to_count=True)
    cell_km2 = 0.00045228819716044**2 * (111.32 * 110.6) * math.cos(math.radians(6.2))
    assert counts.total == pytest.approx(density.total * cell_km2, rel=0.01)


@needs(f"{JAKARTA}/hazard/201208140700_Jakarta_200m_Sobek_Hypothetical_Scenario_ACCESSA_6_hours.tif")
@pytest.mark.realdata
def test_real_sobek_in_dgn95_keeps_its_crs(tmp_path: Path, upload: Callable) -> None:
    name = "201208140700_Jakarta_200m_Sobek_Hypothetical_Scenario_ACCESSA_6_hours.tif"
    dest = tmp_path / "out" / "sobek.tif"
    with upload(DATA / JAKARTA / "hazard" / name) as uploaded:
        stats = write_cog(uploaded, dest)
    assert stats.info.crs == "EPSG:23834"
    west, south, east, north = stats.info.bounds_4326
    assert 106.6 < west < east < 107.0 and -6.4 < south < north < -6.0


@needs("africa/afripop2020_worldpop_20km.tif")
@pytest.mark.realdata
def test_real_worldpop_density_to_count(tmp_path: Path, upload: Callable) -> None:
    dest = tmp_path / "out" / "afripop.tif"
    with upload(DATA / "africa/afripop2020_worldpop_20km.tif") as uploaded:
        stats = write_cog(uploaded, dest, density_to_count=True)
    # Africa had roughly 1.3 billion people in 2020; coarse coastal cells lose a little.
    assert 1.1e9 < stats.total < 1.45e9
