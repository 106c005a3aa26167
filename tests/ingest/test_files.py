"""The door: content sniffing, safe staging, hostile zips and size limits."""

from __future__ import annotations

import http.server
import json
import os
import stat
import struct
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import pytest
from ingest_helpers import assert_clean, assert_names, write_tif, write_zip
from shapely.geometry import Point, box

from geo.errors import TooLargeError, ValidationError
from geo.ingest.files import FileKind, ZipLimits, open_upload
from geo.ingest.rasters import inspect_raster
from geo.ingest.vectors import read_table, read_vector

# --- every supported kind is recognised by content, whatever the name -----------------


def _points_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"name": ["a"]}, geometry=[Point(30.0, -2.0)], crs="EPSG:4326")


def _shapefile_parts(folder: Path) -> dict[str, Path]:
    frame = gpd.GeoDataFrame({"code": ["X1"]}, geometry=[box(30, -2, 31, -1)], crs="EPSG:4326")
    frame.to_file(folder / "units.shp")
    return {ext: folder / f"units.{ext}" for ext in ("shp", "shx", "dbf", "prj", "cpg")}


def make_geotiff(tmp: Path) -> Path:
    return write_tif(tmp / "x.bin")


def make_ascii(tmp: Path) -> Path:
    path = tmp / "x.bin"
    path.write_text("ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n")
    return path


def make_geojson(tmp: Path) -> Path:
    _points_frame().to_file(tmp / "x.geojson")
    return (tmp / "x.geojson").rename(tmp / "x.bin")


def make_gpkg(tmp: Path) -> Path:
    _points_frame().to_file(tmp / "x.gpkg")
    return (tmp / "x.gpkg").rename(tmp / "x.bin")


def make_fgb(tmp: Path) -> Path:
    _points_frame().to_file(tmp / "x.fgb")
    return (tmp / "x.fgb").rename(tmp / "x.bin")


def make_csv(tmp: Path) -> Path:
    path = tmp / "x.bin"
    path.write_text("name,lat,lon\na,-2,30\n")
    return path


def make_shapefile_zip(tmp: Path) -> Path:
    parts = _shapefile_parts(tmp)
    return write_zip(tmp / "x.bin", {f"units.{ext}": p for ext, p in parts.items()})


def make_nested_shapefile_zip(tmp: Path) -> Path:
    parts = _shapefile_parts(tmp)
    members: dict[str, bytes | Path] = {f"export/2024/v2/units.{e}": p for e, p in parts.items()}
    members["__MACOSX/export/._units.shp"] = b"junk"
    members["export/readme.txt"] = b"hello"
    return write_zip(tmp / "x.bin", members)


def make_ascii_zip(tmp: Path) -> Path:
    grid = make_ascii(tmp).read_bytes()
    prj = b'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],' \
          b'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]'
    return write_zip(tmp / "y.bin", {"grids/depth.asc": grid, "grids/depth.prj": prj})


def make_zipped_geojson(tmp: Path) -> Path:
    return write_zip(tmp / "y.bin", {"layer.geojson": make_geojson(tmp)})


@pytest.mark.parametrize(
    ("builder", "kind"),
    [
        (make_geotiff, FileKind.GEOTIFF),
        (make_ascii, FileKind.ASCII_GRID),
        (make_geojson, FileKind.GEOJSON),
        (make_gpkg, FileKind.GEOPACKAGE),
        (make_fgb, FileKind.FLATGEOBUF),
        (make_csv, FileKind.CSV),
        (make_shapefile_zip, FileKind.SHAPEFILE),
        (make_nested_shapefile_zip, FileKind.SHAPEFILE),
        (make_ascii_zip, FileKind.ASCII_GRID),
        (make_zipped_geojson, FileKind.GEOJSON),
    ],
)
def test_kind_is_sniffed_from_content(
    tmp_path: Path, upload: Callable, workdir: Path, builder: Callable, kind: FileKind
) -> None:
    source = builder(tmp_path)
    # The name lies on purpose: only the content decides.
    with upload(source, "misleading.txt") as uploaded:
        assert uploaded.kind is kind
        assert uploaded.path.is_relative_to(workdir)
        assert uploaded.path.name.startswith(("upload.", "data."))
        assert uploaded.original_name == "misleading.txt"
    assert_clean(workdir)


def test_yaml_is_recognised(tmp_path: Path, upload: Callable) -> None:
    path = tmp_path / "ind.yaml"
    path.write_text("- code: x\n  name: X\n")
    with upload(path) as uploaded:
        assert uploaded.kind is FileKind.YAML


def test_nested_folder_shapefile_loads(tmp_path: Path, upload: Callable, workdir: Path) -> None:
    with upload(make_nested_shapefile_zip(tmp_path), "boundaries.zip") as uploaded:
        frame = read_vector(uploaded, expected_geometry="polygon")
        assert list(frame["code"]) == ["X1"]
        assert frame.crs.to_epsg() == 4326
        assert all(m.startswith("export/2024/v2/") for m in uploaded.members)
    assert_clean(workdir)


# --- the bad-file table ---------------------------------------------------------------


def bad_binary(tmp: Path) -> Path:
    path = tmp / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    return path


def bad_plain_text(tmp: Path) -> Path:
    path = tmp / "notes.txt"
    path.write_text("just some words without any structure\n")
    return path


def bad_vrt_as_tif(tmp: Path) -> Path:
    path = tmp / "flood.tif"
    path.write_text(
        '<VRTDataset rasterXSize="10" rasterYSize="10"><VRTRasterBand dataType="Byte" band="1">'
        "<SimpleSource><SourceFilename>/etc/passwd</SourceFilename></SimpleSource>"
        "</VRTRasterBand></VRTDataset>"
    )
    return path


def bad_html(tmp: Path) -> Path:
    path = tmp / "layer.geojson"
    path.write_text("<!doctype html><html><body>404</body></html>")
    return path


def bad_empty(tmp: Path) -> Path:
    path = tmp / "empty.csv"
    path.write_bytes(b"")
    return path


def bad_blank(tmp: Path) -> Path:
    path = tmp / "blank.csv"
    path.write_bytes(b"\xef\xbb\xbf  \n\n ")
    return path


def bad_zip_no_shp(tmp: Path) -> Path:
    return write_zip(tmp / "parts.zip", {"units.dbf": b"x", "units.shx": b"y", "a.txt": b"z"})


def bad_zip_traversal(tmp: Path) -> Path:
    return write_zip(tmp / "evil.zip", {"../x.shp": b"x", "x.shx": b"y", "x.dbf": b"z"})


def bad_zip_absolute(tmp: Path) -> Path:
    return write_zip(tmp / "evil.zip", {"/etc/x.shp": b"x"})


def bad_zip_backslash_traversal(tmp: Path) -> Path:
    return write_zip(tmp / "evil.zip", {"a\\..\\..\\x.shp": b"x"})


def bad_zip_symlink(tmp: Path) -> Path:
    path = tmp / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("units.shp")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    return path


def bad_zip_bomb_ratio(tmp: Path) -> Path:
    return write_zip(tmp / "bomb.zip", {"units.shp": b"\0" * (20 * 1024 * 1024)})


def bad_zip_shapefile_without_dbf(tmp: Path) -> Path:
    return write_zip(tmp / "partial.zip", {"units.shp": b"x", "units.shx": b"y"})


def bad_zip_two_shapefiles(tmp: Path) -> Path:
    members = {f"{s}.{e}": b"x" for s in ("a", "b") for e in ("shp", "shx", "dbf")}
    return write_zip(tmp / "two.zip", members)


def bad_zip_corrupt(tmp: Path) -> Path:
    path = tmp / "broken.zip"
    path.write_bytes(b"PK\x03\x04" + os.urandom(300))
    return path


BAD_FILES = [
    ("not a geo file (binary)", bad_binary, ValidationError, ["not a geo file"]),
    ("not a geo file (text)", bad_plain_text, ValidationError, ["not a geo file"]),
    ("VRT disguised as .tif", bad_vrt_as_tif, ValidationError, ["not a geo file", "VRT"]),
    ("HTML page as .geojson", bad_html, ValidationError, ["not a geo file"]),
    ("empty file", bad_empty, ValidationError, ["empty"]),
    ("whitespace-only file", bad_blank, ValidationError, ["empty"]),
    ("zip with no .shp", bad_zip_no_shp, ValidationError, ["no .shp"]),
    ("zip with ../x.shp", bad_zip_traversal, ValidationError, ["path traversal", "../x.shp"]),
    ("zip with /etc/x.shp", bad_zip_absolute, ValidationError, ["path traversal"]),
    ("zip with ..\\", bad_zip_backslash_traversal, ValidationError, ["path traversal"]),
    ("zip with a symlink", bad_zip_symlink, ValidationError, ["symbolic link"]),
    ("zip bomb (ratio)", bad_zip_bomb_ratio, TooLargeError, ["zip bomb", "ratio"]),
    ("shapefile without .dbf", bad_zip_shapefile_without_dbf, ValidationError, [".dbf"]),
    ("two shapefiles", bad_zip_two_shapefiles, ValidationError, ["2 shapefiles"]),
    ("corrupt zip", bad_zip_corrupt, ValidationError, ["corrupt"]),
]


@pytest.mark.parametrize(
    ("builder", "error_class", "phrases"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_file_is_refused_and_nothing_is_left(
    tmp_path: Path,
    upload: Callable,
    workdir: Path,
    builder: Callable,
    error_class: type,
    phrases: list[str],
) -> None:
    source = builder(tmp_path)
    with pytest.raises(error_class) as caught:
        upload(source)
    assert_names(caught.value, source.name, *phrases)
    assert_clean(workdir)


def test_over_size_limit(tmp_path: Path, workdir: Path) -> None:
    source = write_tif(tmp_path / "big.tif")
    with pytest.raises(TooLargeError) as caught:
        open_upload(source, "big.tif", max_bytes=1000, workdir=workdir)
    assert_names(caught.value, "big.tif", "over the limit of 1,000 bytes")
    assert not workdir.exists() or not any(workdir.iterdir())


def test_zip_bomb_total_size_from_headers(tmp_path: Path, upload: Callable, workdir: Path) -> None:
    source = write_zip(tmp_path / "many.zip", {f"f{i}.shp": os.urandom(4096) for i in range(5)})
    with pytest.raises(TooLargeError) as caught:
        upload(source, zip_limits=ZipLimits(max_uncompressed_bytes=10_000))
    assert_names(caught.value, "many.zip", "would expand to", "zip bomb")
    assert_clean(workdir)


def test_zip_with_too_many_entries(tmp_path: Path, upload: Callable, workdir: Path) -> None:
    source = write_zip(tmp_path / "many.zip", {f"f{i}.txt": b"x" for i in range(30)})
    with pytest.raises(ValidationError) as caught:
        upload(source, zip_limits=ZipLimits(max_entries=10))
    assert_names(caught.value, "many.zip", "30 entries")
    assert_clean(workdir)


def test_zip_whose_header_lies_about_size(tmp_path: Path, upload: Callable, workdir: Path) -> None:
    source = write_zip(tmp_path / "liar.zip", {"layer.csv": b"a,b\n" + b"1,2\n" * 500_000})
    raw = bytearray(source.read_bytes())
    # Shrink the declared uncompressed size in both headers: extraction must not trust it.
    central = raw.rfind(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, 100)
    struct.pack_into("<I", raw, 22, 100)
    source.write_bytes(bytes(raw))
    with pytest.raises(ValidationError) as caught:
        upload(source)
    assert_names(caught.value, "liar.zip", "layer.csv")
    assert_clean(workdir)


# --- user strings never reach GDAL as paths -------------------------------------------


@pytest.mark.parametrize(
    "hostile_name",
    [
        "/vsicurl/http://169.254.169.254/latest/x.tif",
        "http://example.com/x.tif",
        "/etc/passwd",
        "../../../../etc/passwd",
        "/vsizip//tmp/evil.zip/x.tif",
        "GTiff:/etc/passwd",
        "a\x00b.tif",
    ],
)
def test_hostile_filename_is_only_a_label(
    tmp_path: Path, workdir: Path, hostile_name: str
) -> None:
    source = write_tif(tmp_path / "ok.tif")
    with open_upload(source, hostile_name, max_bytes=10**7, workdir=workdir) as uploaded:
        assert uploaded.path.parent == uploaded.directory
        assert uploaded.path.name == "upload.tif"
        assert uploaded.directory.parent == workdir
        info = inspect_raster(uploaded)
        assert info.driver == "GTiff"
    assert_clean(workdir)


def test_hostile_field_values_are_plain_data(tmp_path: Path, upload: Callable) -> None:
    path = tmp_path / "facilities.csv"
    path.write_text(
        "name,lat,lon,website\n"
        "/vsicurl/http://169.254.169.254/,-2,30,http://example.com\n"
        "/etc/passwd,-2.1,30.1,/vsizip/x.zip\n"
    )
    with upload(path) as uploaded:
        frame = read_table(uploaded)
        assert list(frame["name"]) == ["/vsicurl/http://169.254.169.254/", "/etc/passwd"]
        points = read_vector(uploaded, expected_geometry="point")
        assert list(points["website"]) == ["http://example.com", "/vsizip/x.zip"]


def test_zip_entry_names_never_become_paths(tmp_path: Path, upload: Callable) -> None:
    parts = _shapefile_parts(tmp_path)
    members: dict[str, bytes | Path] = {
        f"http:/vsicurl/evil name.{e}": p for e, p in parts.items()
    }
    source = write_zip(tmp_path / "odd.zip", members)
    with upload(source) as uploaded:
        assert sorted(p.name for p in uploaded.directory.iterdir()) == sorted(
            f"data.{e}" for e in parts
        )
        assert len(read_vector(uploaded, expected_geometry="polygon")) == 1


def test_urls_inside_a_geojson_are_never_fetched(tmp_path: Path, upload: Callable) -> None:
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,0]]]')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    href = f"http://127.0.0.1:{server.server_address[1]}/ref/epsg/4326/esriwkt/"
    document = {
        "type": "FeatureCollection",
        "crs": {"type": "link", "properties": {"href": href, "type": "esriwkt"}},
        "features": [{"type": "Feature", "properties": {"url": href},
                      "geometry": {"type": "Point", "coordinates": [30, -2]}}],
    }
    path = tmp_path / "linked.geojson"
    path.write_text(json.dumps(document))
    try:
        with upload(path) as uploaded:
            frame = read_vector(uploaded, expected_geometry="point")
    finally:
        server.shutdown()
    assert hits == []
    assert frame.crs.to_epsg() == 4326
