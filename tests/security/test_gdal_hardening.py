"""GDAL hardening: only the drivers riskatlas needs exist, each upload opens through its own.

Uploads are identified by content before GDAL sees them (tests/ingest covers that door).
These tests hand hostile content straight to the GDAL readers under the names and kinds a
sniffing mistake would give it, to check the second wall: every other driver is gone
(GDAL_SKIP), a vector file is opened by its one allowed driver, VRT raw bands are off, and
references inside a file (a linked CRS, an SRS definition) never reach the network.
Before the hardening a KML, GPX, OGR VRT, CSV or SQLite file staged as GeoJSON/GeoPackage
was opened by its own driver (and only refused afterwards, "read as KML ..."), and a VRT
with a raw band mapped /etc/passwd as pixels.
"""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.errors import RasterioError

from geo.errors import ValidationError
from geo.ingest import _gdal
from geo.ingest.files import STAGED_NAMES, FileKind, UploadedFile
from geo.ingest.rasters import inspect_raster
from geo.ingest.vectors import read_vector

SECRET = Path("/etc/passwd")
# How the old code refused a file after another driver had opened it ("read as KML, but
# only GeoJSON is allowed"); the hardened one never lets that driver open it.
OPENED_BY_ANOTHER_DRIVER = ", but only"


def staged(tmp_path: Path, kind: FileKind, content: bytes | str) -> UploadedFile:
    """Return `content` staged under the fixed name of `kind`, as if sniffing had said so."""
    directory = tmp_path / "stage"
    directory.mkdir(exist_ok=True)
    path = directory / STAGED_NAMES[kind]
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return UploadedFile("hostile.upload", kind, path, directory, path.stat().st_size)


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server that records every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'PROJCS["x",GEOGCS["WGS 84",DATUM["WGS_1984",'
                             b'SPHEROID["WGS 84",6378137,298.257223563]]]]')

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()


# --- the drivers that exist at all --------------------------------------------------------
def test_only_the_needed_drivers_are_registered() -> None:
    vector = set(pyogrio.list_drivers())
    assert vector == set(_gdal.VECTOR_DRIVERS), vector
    with rasterio.Env() as env:
        raster = set(env.drivers())
    assert raster <= set(_gdal.RASTER_DRIVERS), raster - set(_gdal.RASTER_DRIVERS)
    assert {"GTiff", "AAIGrid", "PNG"} <= raster
    for dangerous in ("KML", "LIBKML", "OGR_VRT", "SQLite", "CSV", "GML", "HTTP", "WFS",
                      "OAPIF", "PGDUMP"):
        assert dangerous not in vector
    for dangerous in ("WMS", "WMTS", "HTTP", "GTI", "DERIVED", "netCDF", "HDF5", "MBTiles"):
        assert dangerous not in raster


def test_vrt_raw_bands_and_python_are_disabled_in_both_gdals() -> None:
    for option in ("GDAL_VRT_ENABLE_RAWRASTERBAND", "GDAL_VRT_ENABLE_PYTHON"):
        assert rasterio.env.get_gdal_config(option) == "NO"
        assert pyogrio.get_gdal_config_option(option) == "NO"


# --- vector formats a sniffing mistake could let through ----------------------------------
HOSTILE_VECTORS: dict[str, tuple[FileKind, str]] = {
    "OGR VRT reading a local CSV, as GeoJSON": (FileKind.GEOJSON, (
        '<OGRVRTDataSource><OGRVRTLayer name="p">'
        "<SrcDataSource>{secret}</SrcDataSource><SrcLayer>secret</SrcLayer>"
        '<GeometryType>wkbPoint</GeometryType><GeometryField encoding="PointFromColumns" '
        'x="x" y="y"/></OGRVRTLayer></OGRVRTDataSource>')),
    "KML as GeoJSON": (FileKind.GEOJSON, (
        '<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>'
        "<Placemark><name>x</name><Point><coordinates>30,-2</coordinates></Point>"
        "</Placemark></Document></kml>")),
    "GPX as GeoPackage": (FileKind.GEOPACKAGE, (
        '<?xml version="1.0"?><gpx version="1.1" creator="x" '
        'xmlns="http://www.topografix.com/GPX/1/1"><wpt lat="-2" lon="30"><name>x</name>'
        "</wpt></gpx>")),
    "GML as FlatGeobuf": (FileKind.FLATGEOBUF, (
        '<?xml version="1.0"?><ogr:FeatureCollection xmlns:ogr="http://ogr.maptools.org/" '
        'xmlns:gml="http://www.opengis.net/gml"><gml:featureMember><ogr:x><ogr:geometryProperty>'
        "<gml:Point><gml:coordinates>30,-2</gml:coordinates></gml:Point>"
        "</ogr:geometryProperty></ogr:x></gml:featureMember></ogr:FeatureCollection>")),
    "CSV with WKT as GeoJSON": (FileKind.GEOJSON, "WKT,name\n\"POINT (30 -2)\",x\n"),
}


@pytest.mark.parametrize("case", list(HOSTILE_VECTORS))
def test_other_vector_formats_are_never_opened_by_their_driver(tmp_path: Path,
                                                               case: str) -> None:
    kind, content = HOSTILE_VECTORS[case]
    secret = tmp_path / "secret.csv"  # a file on the server the VRT tries to read
    secret.write_text("x,y,password\n30,-2,root:hunter2\n")
    content = content.replace("{secret}", str(secret))
    with pytest.raises(ValidationError) as refused, staged(tmp_path, kind, content) as upload:
        read_vector(upload, expected_geometry="point")
    message = refused.value.message
    assert f"cannot be read as {kind}" in message, message
    assert OPENED_BY_ANOTHER_DRIVER not in message, message
    assert "root:" not in message and "hunter2" not in message and str(secret) not in message


def test_a_plain_sqlite_database_is_not_opened_as_a_geopackage(tmp_path: Path) -> None:
    database = tmp_path / "plain.sqlite"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE places (name TEXT, WKT TEXT)")
        conn.execute("INSERT INTO places VALUES ('x', 'POINT (30 -2)')")
    with pytest.raises(ValidationError) as refused, \
            staged(tmp_path, FileKind.GEOPACKAGE, database.read_bytes()) as upload:
        read_vector(upload, expected_geometry="point")
    assert "cannot be read as geopackage" in refused.value.message
    assert OPENED_BY_ANOTHER_DRIVER not in refused.value.message


def test_a_real_geojson_and_geopackage_still_load(tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame({"name": ["x"]}, geometry=[shapely.Point(30, -2)], crs=4326)
    for kind, driver in ((FileKind.GEOJSON, "GeoJSON"), (FileKind.GEOPACKAGE, "GPKG"),
                         (FileKind.FLATGEOBUF, "FlatGeobuf")):
        source = tmp_path / f"source-{STAGED_NAMES[kind]}"
        frame.to_file(source, driver=driver, engine="pyogrio")
        with staged(tmp_path, kind, source.read_bytes()) as upload:
            loaded = read_vector(upload, expected_geometry="point")
        assert list(loaded["name"]) == ["x"] and loaded.crs.to_epsg() == 4326


# --- references inside a file -------------------------------------------------------------
@pytest.mark.parametrize("href", ["http://127.0.0.1:{port}/crs.prj",
                                  "/vsicurl/http://127.0.0.1:{port}/crs.prj"])
def test_a_geojson_linked_crs_is_never_fetched(tmp_path: Path,
                                               recorder: tuple[int, list[str]],
                                               href: str) -> None:
    port, hits = recorder
    document = {
        "type": "FeatureCollection",
        "crs": {"type": "link", "properties": {"href": href.format(port=port),
                                               "type": "ogcwkt"}},
        "features": [{"type": "Feature", "properties": {"name": "x"},
                      "geometry": {"type": "Point", "coordinates": [30, -2]}}],
    }
    with staged(tmp_path, FileKind.GEOJSON, json.dumps(document)) as upload:
        loaded = read_vector(upload, expected_geometry="point")
    assert hits == []
    assert loaded.crs.to_epsg() == 4326  # GeoJSON's default, not the linked definition


@pytest.mark.parametrize("definition", ["http://127.0.0.1:{port}/srs.prj",
                                        "/vsicurl/http://127.0.0.1:{port}/srs.prj"])
def test_a_geopackage_srs_pointing_at_a_url_is_never_fetched(
        tmp_path: Path, recorder: tuple[int, list[str]], definition: str) -> None:
    port, hits = recorder
    source = tmp_path / "source.gpkg"
    gpd.GeoDataFrame({"name": ["x"]}, geometry=[shapely.Point(3e6, -2e5)],
                     crs=3857).to_file(source, driver="GPKG", engine="pyogrio")
    with sqlite3.connect(source) as conn:
        conn.execute("UPDATE gpkg_spatial_ref_sys SET definition = ?, organization = 'NONE', "
                     "organization_coordsys_id = 0 WHERE srs_id = 3857",
                     (definition.format(port=port),))
    with pytest.raises(ValidationError) as refused, \
            staged(tmp_path, FileKind.GEOPACKAGE, source.read_bytes()) as upload:
        read_vector(upload, expected_geometry="point")
    assert hits == []
    assert "coordinate reference system" in refused.value.message


# --- rasters ------------------------------------------------------------------------------
def raw_vrt(target: Path) -> str:
    """Return a VRT whose one band maps the bytes of `target` as pixels."""
    return (
        '<VRTDataset rasterXSize="16" rasterYSize="4"><VRTRasterBand dataType="Byte" band="1" '
        'subClass="VRTRawRasterBand">'
        f'<SourceFilename relativeToVRT="0">{target}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>16</LineOffset>"
        "</VRTRasterBand></VRTDataset>")


def test_a_raw_band_vrt_disguised_as_geotiff_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused, \
            staged(tmp_path, FileKind.GEOTIFF, raw_vrt(SECRET)) as upload:
        inspect_raster(upload)
    assert "root:" not in refused.value.message
    assert "opened as VRT" not in refused.value.message


@pytest.mark.skipif(
    tuple(int(p) for p in rasterio.__gdal_version__.split(".")[:2]) < (3, 12),
    reason=f"rasterio's GDAL {rasterio.__gdal_version__} has no runtime switch for VRT raw "
    "bands (GDAL_VRT_ENABLE_RAWRASTERBAND is read from 3.12); uploads are opened with "
    "their driver named instead (test_a_raw_band_vrt_disguised_as_geotiff_is_refused)")
@pytest.mark.parametrize("name", ["hostile.vrt", "hostile.tif"])
def test_a_raw_band_vrt_cannot_map_a_local_file_even_when_opened_directly(
        tmp_path: Path, name: str) -> None:
    # Our own code never opens an upload without naming the driver; this is the wall
    # behind that (rio-tiler or a future reader opening a path without one).
    target = tmp_path / "secret.bin"
    target.write_bytes(bytes(range(64)))
    vrt = tmp_path / name
    vrt.write_text(raw_vrt(target))
    try:
        with rasterio.open(vrt) as dataset:
            pixels = dataset.read(1)
    except RasterioError:
        return
    pytest.fail(f"the VRT mapped a local file as pixels: {np.asarray(pixels).ravel()[:8]}")
