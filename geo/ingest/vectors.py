"""Read vector layers and tables from a staged upload and normalise each kind of layer.

`read_vector` and `read_table` are the only functions here that touch files; the
`normalise_*` functions take frames and return clean frames plus warnings, with no hidden
inputs. Rows keep their source position as the index (named `row` for CSV lines counted
with the header as row 1, `feature` for 1-based vector features, `item` for YAML list
items), so every later message can name where a problem is.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
import yaml
from pyogrio.errors import DataSourceError, FieldError, GeometryError

from geo.ingest import _columns as cols
from geo.ingest._gdal import gdal_path, vector_env, vector_source
from geo.ingest._problems import fail, fail_one, fail_rows, problem
from geo.ingest._vocabulary import INSTITUTION_TYPES, fold, institution_type
from geo.ingest.files import FileKind, UploadedFile

GeometryKind = Literal["polygon", "point"]

ALLOWED_VECTOR_DRIVERS: dict[FileKind, str] = {
    FileKind.GEOJSON: "GeoJSON",
    FileKind.GEOPACKAGE: "GPKG",
    FileKind.SHAPEFILE: "ESRI Shapefile",
    FileKind.FLATGEOBUF: "FlatGeobuf",
}
LAT_NAMES = ("latitude", "lat", "y", "lat_dd", "decimallatitude")
LON_NAMES = ("longitude", "lon", "long", "lng", "x", "lon_dd", "decimallongitude")
DIMENSIONS = (
    "economic",
    "food",
    "health",
    "environmental",
    "personal",
    "community",
    "political",
    "education",
    "infrastructure",
)
POLARITIES = ("higher_is_worse", "higher_is_better")
UCDP_VIOLENCE_TYPES = {1: "state-based conflict", 2: "non-state conflict", 3: "one-sided violence"}
# How deep each GeoJSON geometry type nests its coordinates (Point: [x, y] = 1).
GEOJSON_DEPTH = {
    "Point": 1, "MultiPoint": 2, "LineString": 2, "MultiLineString": 3, "Polygon": 3,
    "MultiPolygon": 4,
}
DEPTH_NAMES = {1: "a Point", 2: "a LineString", 3: "a Polygon", 4: "a MultiPolygon"}
# GeoJSON files small enough to re-read in Python to explain unreadable geometries.
MAX_GEOJSON_DIAGNOSE_BYTES = 256 * 1024**2
MAX_YAML_BYTES = 5 * 1024 * 1024


class Normalised(NamedTuple):
    """A clean frame ready for loading, and warnings worth showing to the uploader."""

    frame: pd.DataFrame
    warnings: list[str]


# --- reading --------------------------------------------------------------------------


def read_table(uploaded: UploadedFile, options: Any = None) -> pd.DataFrame:
    """Return a CSV, .xlsx sheet, YAML list or JSON records as a DataFrame indexed by row/item.

    `options` (any kind's options) gives the sheet and the decimal mark. Cells keep their
    text (CSV, YAML) or spreadsheet values; the normalisers parse them per role.
    """
    sheet = getattr(options, "sheet", None)
    decimal = getattr(options, "decimal", None)
    _refuse_source_layer(uploaded, options)
    if sheet is not None and uploaded.kind is not FileKind.XLSX:
        fail_one(uploaded.original_name,
                 f"the sheet option picks a sheet of an .xlsx workbook, but this is a "
                 f"{uploaded.kind} file", field="sheet")
    if uploaded.kind is FileKind.CSV:
        frame = _read_csv(uploaded, decimal)
    elif uploaded.kind is FileKind.XLSX:
        frame = _read_xlsx(uploaded, sheet)
    elif uploaded.kind is FileKind.YAML:
        frame = _read_yaml(uploaded)
    elif uploaded.kind is FileKind.GEOJSON:
        frame = _read_json_table(uploaded)
    else:
        fail_one(uploaded.original_name,
                 f"expected a table (CSV, .xlsx, YAML or JSON), got a {uploaded.kind} file")
    return _without_hxl_and_blank_rows(frame, uploaded.original_name)


def _refuse_source_layer(uploaded: UploadedFile, options: Any) -> None:
    """Raise when a GeoPackage layer was named for a file that is not a GeoPackage."""
    if getattr(options, "source_layer", None) and uploaded.kind is not FileKind.GEOPACKAGE:
        fail_one(uploaded.original_name,
                 f"the layer option picks a layer of a GeoPackage, but this is a {uploaded.kind} "
                 "file (to name the layer this upload makes, use layer_name / --layer-name)",
                 field="layer")


def _read_csv(uploaded: UploadedFile, decimal: str | None = None) -> pd.DataFrame:
    """Return a UTF-8 CSV as text columns; 'NA' stays a string (it is Namibia's code).

    The delimiter is the most frequent of , ; tab in the header line. With ';' the decimal
    mark is taken to be ',' (the European spreadsheet export) unless `decimal` says '.'.
    """
    name = uploaded.original_name
    with uploaded.path.open("rb") as handle:
        first_line = handle.readline(64 * 1024).decode("utf-8-sig", errors="replace")
    delimiter = max((",", ";", "\t"), key=first_line.count)
    try:
        frame = pd.read_csv(
            uploaded.path,
            sep=delimiter,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError as exc:
        fail_one(name, f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        fail_one(name, f"the CSV cannot be parsed ({str(exc).strip()})")
    frame.columns = [str(column).strip() for column in frame.columns]
    if frame.empty:
        fail_one(name, "the table has a header but no data rows")
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")
    frame.attrs["decimal"] = decimal or ("," if delimiter == ";" else ".")
    return frame


def _read_xlsx(uploaded: UploadedFile, sheet: str | None) -> pd.DataFrame:
    """Return one sheet of a workbook (the first unless `sheet` names or numbers one)."""
    name = uploaded.original_name
    try:
        book = pd.ExcelFile(uploaded.path, engine="openpyxl")
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        fail_one(name, f"the workbook cannot be read ({str(exc)[:200]})")
    with book:
        names = [str(n) for n in book.sheet_names]
        if not names:
            fail_one(name, "the workbook has no sheets")
        if sheet is None:
            chosen = names[0]
        elif sheet in names:
            chosen = sheet
        elif sheet.isdigit() and 1 <= int(sheet) <= len(names):
            chosen = names[int(sheet) - 1]
        else:
            fail_one(name, f"no sheet {sheet!r} (the sheets are: {', '.join(names)})",
                     field="sheet")
        try:
            frame = book.parse(chosen, dtype=object)
        except Exception as exc:  # noqa: BLE001
            fail_one(name, f"the sheet {chosen!r} cannot be read ({str(exc)[:200]})")
    frame.columns = [str(column).strip() for column in frame.columns]
    # Columns that are only an empty spreadsheet column ("Unnamed: 7") carry nothing.
    empty = [c for c in frame.columns if c.startswith("Unnamed:") and frame[c].isna().all()]
    frame = frame.drop(columns=empty)
    if frame.empty:
        fail_one(name, f"the sheet {chosen!r} has a header but no data rows")
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")
    frame.attrs["sheet"] = chosen
    frame.attrs["sheets"] = names
    return frame


def _read_yaml(uploaded: UploadedFile) -> pd.DataFrame:
    """Return a YAML list of mappings (or a mapping holding one such list) as a DataFrame."""
    name = uploaded.original_name
    if uploaded.path.stat().st_size > MAX_YAML_BYTES:
        fail_one(name, f"YAML tables are limited to {MAX_YAML_BYTES:,} bytes", too_large=True)
    try:
        document = yaml.safe_load(uploaded.path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        fail_one(name, "the file is not UTF-8 text; save it as UTF-8")
    except yaml.YAMLError as exc:
        fail_one(name, f"the YAML cannot be parsed ({exc})")
    if isinstance(document, dict) and len(document) == 1:
        document = next(iter(document.values()))
    if not isinstance(document, list) or not all(isinstance(i, dict) for i in document):
        fail_one(name, "expected a YAML list of mappings (one per record)")
    if not document:
        fail_one(name, "the YAML list is empty")
    frame = pd.DataFrame.from_records(document)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="item")
    return frame


def _read_json_table(uploaded: UploadedFile) -> pd.DataFrame:
    """Return JSON records: a list of objects, or an object holding one such list."""
    name = uploaded.original_name
    if uploaded.path.stat().st_size > MAX_GEOJSON_DIAGNOSE_BYTES:
        fail_one(name, "JSON tables are limited to 256 MB; use CSV", too_large=True)
    try:
        document = json.loads(uploaded.path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        fail_one(name, f"the JSON cannot be parsed ({str(exc)[:200]})")
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        document = [f.get("properties") or {} for f in document.get("features") or []
                    if isinstance(f, dict)]
    elif isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list)]
        if len(lists) == 1:
            document = lists[0]
    if not isinstance(document, list) or not all(isinstance(i, dict) for i in document):
        fail_one(name, "expected JSON records: a list of objects (or an object holding one)")
    if not document:
        fail_one(name, "the JSON list is empty")
    frame = pd.DataFrame.from_records(document)
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="item")
    return frame


def _without_hxl_and_blank_rows(frame: pd.DataFrame, file_name: str) -> pd.DataFrame:
    """Return the table without an HXL hashtag row (COD tables carry one) and empty rows."""
    carried = dict(frame.attrs)
    if len(frame):
        first = [cols.as_text(v) for v in frame.iloc[0]]
        tags = [v for v in first if v]
        if tags and all(v.startswith("#") for v in tags):
            frame = frame.iloc[1:]
            carried["hxl_row"] = True
    blank = frame.apply(lambda row: all(cols.is_blank(v) for v in row), axis=1)
    if bool(blank.any()):
        frame = frame[~blank]
        carried["blank_rows"] = int(blank.sum())
    if frame.empty:
        fail_one(file_name, "the table has no data rows")
    frame.attrs.update(carried)
    return frame


def read_vector(
    uploaded: UploadedFile, *, expected_geometry: GeometryKind, options: Any = None
) -> gpd.GeoDataFrame:
    """Return the upload's features in EPSG:4326, checked and with polygons repaired.

    `attrs["repaired_polygons"]` holds how many invalid polygons `make_valid` repaired.
    A table (CSV, .xlsx, JSON records) is read as points from its latitude/longitude
    columns; `options` gives the GeoPackage layer, the sheet and the lat/lon fields.
    """
    fields = getattr(options, "fields", {}) or {}
    if uploaded.kind in (FileKind.CSV, FileKind.XLSX) or (
        uploaded.kind is FileKind.GEOJSON and _is_json_records(uploaded.path)
    ):
        if expected_geometry != "point":
            fail_one(uploaded.original_name,
                     f"a {uploaded.kind} table holds points, but polygons are needed")
        frame = points_from_table(read_table(uploaded, options), file_name=uploaded.original_name,
                                  lat_field=fields.get("lat"), lon_field=fields.get("lon"))
    elif uploaded.kind in ALLOWED_VECTOR_DRIVERS:
        _refuse_source_layer(uploaded, options)
        frame = _read_ogr(uploaded, getattr(options, "source_layer", None))
    else:
        fail_one(uploaded.original_name, f"expected a vector file, got a {uploaded.kind} file")
    return check_geometries(frame, file_name=uploaded.original_name, expected=expected_geometry)


def _is_json_records(path: Path) -> bool:
    """Return True for JSON that holds plain records, not features (a table of points)."""
    with path.open("rb") as handle:
        head = handle.read(4096).decode("utf-8-sig", errors="replace").lstrip()
    if head.startswith("["):
        return '"Feature"' not in head and '"geometry"' not in head
    return head.startswith("{") and '"type"' not in head and '"features"' not in head


def _features_array_to_collection(uploaded: UploadedFile) -> None:
    """Rewrite a staged bare JSON array of Features as a FeatureCollection (GDAL reads that)."""
    try:
        document = json.loads(uploaded.path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        fail_one(uploaded.original_name, f"the JSON cannot be parsed ({str(exc)[:200]})")
    if not isinstance(document, list):
        return
    bad = [n for n, f in enumerate(document, start=1)
           if not isinstance(f, dict) or f.get("type") != "Feature"]
    if bad:
        fail_one(uploaded.original_name, "the JSON array holds something other than a Feature",
                 feature=bad[0])
    collection = {"type": "FeatureCollection", "features": document}
    uploaded.path.write_text(json.dumps(collection), encoding="utf-8")


def _read_ogr(uploaded: UploadedFile, layer: str | None = None) -> gpd.GeoDataFrame:
    """Return one layer of a vector file through an allow-listed GDAL driver."""
    name = uploaded.original_name
    if uploaded.kind is FileKind.GEOJSON:
        with uploaded.path.open("rb") as handle:
            if handle.read(4096).decode("utf-8-sig", errors="replace").lstrip().startswith("["):
                _features_array_to_collection(uploaded)
    expected_driver = ALLOWED_VECTOR_DRIVERS[uploaded.kind]
    path = vector_source(gdal_path(uploaded.path, uploaded.directory), expected_driver)
    with vector_env(), warnings.catch_warnings():
        # GDAL's own warnings are replaced by the per-feature diagnosis below.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            names = [str(entry[0]) for entry in pyogrio.list_layers(path)]
            listed = ", ".join(names[:20]) or "none"
            if layer is not None and layer not in names:
                fail_one(name, f"no layer {layer!r} (the layers are: {listed})", field="layer")
            if layer is None and len(names) != 1:
                fail_one(name, f"the file holds {len(names)} layers ({listed}); choose one with "
                         "--layer NAME (layer option)")
            chosen = layer or names[0]
            info = pyogrio.read_info(path, layer=chosen)
            if info["driver"] != expected_driver:
                fail_one(name, f"read as {info['driver']}, but only {expected_driver} is allowed")
            frame = pyogrio.read_dataframe(path, layer=chosen, on_invalid="ignore")
        except (DataSourceError, FieldError, GeometryError, RuntimeError) as exc:
            fail_one(name, f"the file cannot be read as {uploaded.kind} ({exc})")
    if frame.empty:
        fail_one(name, "the layer contains no features")
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="feature")
    if uploaded.kind is FileKind.GEOJSON and frame.geometry.isna().any():
        frame.attrs["geometry_notes"] = _geojson_nesting_notes(uploaded.path)
    if frame.crs is None:
        shapefile = uploaded.kind is FileKind.SHAPEFILE
        hint = " (a shapefile needs its .prj in the zip)" if shapefile else ""
        fail_one(name, f"the layer has no coordinate reference system{hint}")
    return frame


def _geojson_nesting_notes(path: Path) -> dict[int, str]:
    """Return, per 1-based feature, why its geometry's nesting contradicts its declared type."""
    if path.stat().st_size > MAX_GEOJSON_DIAGNOSE_BYTES:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError):
        return {}
    features = document.get("features", []) if isinstance(document, dict) else []
    notes: dict[int, str] = {}
    for number, feature in enumerate(features, start=1):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            continue
        declared = geometry.get("type")
        depth = _nesting_depth(geometry.get("coordinates"))
        if declared in GEOJSON_DEPTH and depth != GEOJSON_DEPTH[declared]:
            nested_as = DEPTH_NAMES.get(depth, f"{depth} levels deep")
            notes[number] = (
                f'the geometry is malformed: declared "{declared}" but its coordinates are '
                f"nested as {nested_as}"
            )
    return notes


def _nesting_depth(coordinates: Any) -> int:
    """Return how many list levels wrap the numbers of a GeoJSON coordinates member."""
    depth = 0
    while isinstance(coordinates, list) and coordinates:
        coordinates = coordinates[0]
        depth += 1
    return depth


def points_from_table(
    frame: pd.DataFrame, *, file_name: str, lat_field: str | None = None,
    lon_field: str | None = None,
) -> gpd.GeoDataFrame:
    """Return a table as WGS84 points from its latitude/longitude columns (both dropped)."""
    carried = dict(frame.attrs)
    lat_col = cols.require_column(frame, lat_field, LAT_NAMES, "latitude", file_name=file_name,
                                  hint="name it with --field lat=COLUMN")
    lon_col = cols.require_column(frame, lon_field, LON_NAMES, "longitude", file_name=file_name,
                                  hint="name it with --field lon=COLUMN")
    # A facility list with a few unlocated rows is normal (the WHO lists have some): rows
    # with neither coordinate are skipped and reported; half a coordinate is an error.
    unlocated = frame[lat_col].map(cols.is_blank) & frame[lon_col].map(cols.is_blank)
    if unlocated.all():
        fail_one(file_name, "no row has coordinates", field=lat_col)
    skipped = [int(label) for label in frame.index[unlocated]]
    frame = frame[~unlocated]
    lat = cols.numbers(frame, lat_col, file_name=file_name, required=True)
    lon = cols.numbers(frame, lon_col, file_name=file_name, required=True)
    details = []
    for label in frame.index:
        issue = _coordinate_problem(lat[label], lon[label])
        if issue:
            field = lon_col if issue.startswith("longitude") else lat_col
            details.append(problem(file_name, issue, field=field, **cols.where(frame, label)))
    fail_rows(details)
    # Rows already reported (a missing or impossible coordinate) make no point.
    usable = lat.notna() & lon.notna() & pd.Series(
        [not d for d in _row_flags(frame.index, details)], index=frame.index)
    frame, lat, lon = frame[usable], lat[usable], lon[usable]
    geometry = gpd.points_from_xy(lon.to_numpy(), lat.to_numpy())
    rest = frame.drop(columns=[lat_col, lon_col])
    points = gpd.GeoDataFrame(rest, geometry=geometry, crs="EPSG:4326")
    points.attrs.update(carried)
    points.attrs["skipped_rows"] = skipped
    points.attrs["source_fields"] = {"lat": str(lat_col), "lon": str(lon_col)}
    return points


def _row_flags(labels: pd.Index, details: list[dict]) -> list[bool]:
    """Return, per row label, whether a detail names that row."""
    named = {d.get("row", d.get("item", d.get("feature"))) for d in details}
    return [label in named for label in labels]


def _coordinate_problem(lat: float, lon: float) -> str | None:
    """Return why a latitude/longitude pair is impossible, or None when it is fine."""
    if abs(lat) > 90 and abs(lon) <= 90:
        return (
            f"latitude {lat:g} is outside −90…90 while longitude {lon:g} would fit one: "
            "latitude and longitude look swapped"
        )
    if abs(lat) > 90:
        return f"latitude {lat:g} is outside −90…90"
    if abs(lon) > 180:
        return f"longitude {lon:g} is outside −180…180"
    return None


# --- geometry checks ------------------------------------------------------------------


def check_geometries(
    frame: gpd.GeoDataFrame, *, file_name: str, expected: GeometryKind
) -> gpd.GeoDataFrame:
    """Return features reprojected to EPSG:4326 with 2D geometries of the expected kind."""
    carried = dict(frame.attrs)
    _refuse_missing_geometries(frame, file_name)
    frame = frame.set_geometry(shapely.force_2d(frame.geometry.values))
    if expected == "polygon":
        frame, repaired = _polygons(frame, file_name)
    else:
        frame, repaired = _points(frame, file_name), 0
    if frame.crs is None:
        fail_one(file_name, "the layer has no coordinate reference system")
    if not frame.crs.equals("EPSG:4326"):
        frame = frame.to_crs("EPSG:4326")
    _refuse_impossible_bounds(frame, file_name)
    frame.attrs.update(carried)
    frame.attrs["repaired_polygons"] = carried.get("repaired_polygons", 0) + repaired
    return frame


def source_notes(frame: pd.DataFrame) -> list[str]:
    """Return the warnings `read_vector` left on a frame (repairs, skipped rows)."""
    notes = []
    repaired = int(frame.attrs.get("repaired_polygons", 0))
    if repaired:
        notes.append(f"{repaired} invalid polygons were repaired with make_valid")
    skipped = frame.attrs.get("skipped_rows", [])
    if skipped:
        shown = ", ".join(map(str, skipped[:20])) + (" …" if len(skipped) > 20 else "")
        notes.append(f"{len(skipped)} rows without coordinates were skipped (rows {shown})")
    return notes


def _refuse_missing_geometries(frame: gpd.GeoDataFrame, file_name: str) -> None:
    """Raise naming features whose geometry is null (unreadable) or empty."""
    missing = frame.geometry.isna().to_numpy()
    empty = np.zeros(len(frame), dtype=bool)
    empty[~missing] = shapely.is_empty(frame.geometry.to_numpy()[~missing])
    if not (missing.any() or empty.any()):
        return
    notes = frame.attrs.get("geometry_notes", {})
    reason = "the geometry is missing or could not be read"
    details = [
        problem(
            file_name,
            "the geometry is empty" if is_empty else notes.get(label, reason),
            field="geometry",
            **cols.where(frame, label),
        )
        for label, is_missing, is_empty in zip(frame.index, missing, empty, strict=True)
        if is_missing or is_empty
    ]
    fail(details)


def _polygons(frame: gpd.GeoDataFrame, file_name: str) -> tuple[gpd.GeoDataFrame, int]:
    """Return polygons as MultiPolygons, invalid ones repaired, and how many were repaired."""
    _refuse_wrong_types(frame, file_name, {"Polygon", "MultiPolygon"}, "polygons")
    geometries = frame.geometry.to_numpy()
    invalid = ~shapely.is_valid(geometries)
    fixed = geometries.copy()
    for position in np.flatnonzero(invalid):
        fixed[position] = _polygonal_part(shapely.make_valid(geometries[position]))
    broken = [label for label, geom in zip(frame.index, fixed, strict=True) if geom is None]
    if broken:
        fail(
            [
                problem(
                    file_name,
                    "the polygon is invalid and repairing it left no area",
                    field="geometry",
                    **cols.where(frame, label),
                )
                for label in broken
            ]
        )
    promoted = [
        shapely.MultiPolygon([geom]) if geom.geom_type == "Polygon" else geom for geom in fixed
    ]
    return frame.set_geometry(gpd.GeoSeries(promoted, index=frame.index, crs=frame.crs)), int(
        invalid.sum()
    )


def _polygonal_part(geometry: shapely.Geometry) -> shapely.MultiPolygon | None:
    """Return the polygonal parts of a repaired geometry as a MultiPolygon (None if none)."""
    parts = shapely.get_parts(geometry)
    polygons: list[shapely.Polygon] = []
    for part in parts:
        if part.geom_type == "Polygon" and not part.is_empty:
            polygons.append(part)
        elif part.geom_type in ("MultiPolygon", "GeometryCollection"):
            nested = _polygonal_part(part)
            polygons.extend(nested.geoms if nested is not None else [])
    return shapely.MultiPolygon(polygons) if polygons else None


def _points(frame: gpd.GeoDataFrame, file_name: str) -> gpd.GeoDataFrame:
    """Return points; a MultiPoint holding a single point becomes that point."""
    geometries = frame.geometry.to_numpy().copy()
    single = (shapely.get_type_id(geometries) == 4) & (shapely.get_num_geometries(geometries) == 1)
    geometries[single] = shapely.get_geometry(geometries[single], 0)
    frame = frame.set_geometry(gpd.GeoSeries(geometries, index=frame.index, crs=frame.crs))
    _refuse_wrong_types(frame, file_name, {"Point"}, "points")
    return frame


def _refuse_wrong_types(
    frame: gpd.GeoDataFrame, file_name: str, allowed: set[str], wanted: str
) -> None:
    """Raise naming every feature whose geometry type is not allowed for this kind."""
    types = frame.geom_type
    wrong = types[~types.isin(allowed)]
    if wrong.empty:
        return
    fail(
        [
            problem(
                file_name,
                f"wrong geometry type: got {kind}, this kind of layer needs {wanted}",
                field="geometry",
                **cols.where(frame, label),
            )
            for label, kind in wrong.items()
        ]
    )


def _refuse_impossible_bounds(frame: gpd.GeoDataFrame, file_name: str) -> None:
    """Raise naming features whose WGS84 bounds are not finite or leave ±180/±90."""
    bounds = shapely.bounds(frame.geometry.to_numpy())
    finite = np.isfinite(bounds).all(axis=1)
    inside = (bounds[:, 0] >= -180) & (bounds[:, 2] <= 180)
    inside &= (bounds[:, 1] >= -90) & (bounds[:, 3] <= 90)
    bad = ~(finite & inside)
    if not bad.any():
        return
    fail(
        [
            problem(
                file_name,
                "impossible coordinates: bounds "
                f"{tuple(round(float(v), 4) for v in bounds[position])} leave −180…180 / −90…90 "
                "(wrong CRS or malformed geometry)",
                field="geometry",
                **cols.where(frame, frame.index[position]),
            )
            for position in np.flatnonzero(bad)
        ]
    )


# --- localities -----------------------------------------------------------------------


# The code column of admin level n under the names teams' files use: OCHA COD (ADM2_PCODE),
# the IBF system (admin2Pcode), and other exports (Adm2_Code, adm2_pcode).
LEVEL_CODE = re.compile(r"^(?:adm(\d)_pcode|admin(\d)_?pcode|adm(\d)_code)$", re.IGNORECASE)
# A name of admin level n in one language: ADM2_EN, ADM2_FR (COD), admin2Name_en (IBF).
LEVEL_NAME = re.compile(r"^(?:adm(\d)_([a-z]{2})|admin(\d)_?name_([a-z]{2}))$", re.IGNORECASE)
# Two-letter suffixes of ADMn_ columns that are not languages.
NOT_LANGUAGES = frozenset({"id", "tp", "no", "nm"})
LEVEL_PLAIN_NAME = ("ADM{n}_NAME", "admin{n}Name", "ADM{n}_REF", "adm{n}_name")
CODE_NAMES = ("code", "pcode", "p_code", "placecode", "locality_code", "adm_pcode")
NAME_NAMES = ("name", "nama", "nom", "nombre", "locality_name")
POPULATION_NAMES = ("population", "pop", "pop_total", "total_pop", "populationtotal", "T_TL")
# Kept for callers that looked up COD code columns by this name.
COD_PCODE = re.compile(r"^adm(\d)_pcode$", re.IGNORECASE)


def level_code_columns(frame: pd.DataFrame) -> dict[int, str]:
    """Return, per admin level, the column holding that level's codes (COD/IBF names)."""
    found: dict[int, str] = {}
    for column in frame.columns:
        match = LEVEL_CODE.match(str(column))
        if match:
            level = int(next(g for g in match.groups() if g is not None))
            found.setdefault(level, str(column))
    return dict(sorted(found.items()))


def level_name_columns(frame: pd.DataFrame, level: int) -> dict[str, str]:
    """Return {language: column} of the names of admin level `level` (its own, no other)."""
    found: dict[str, str] = {}
    for column in frame.columns:
        match = LEVEL_NAME.match(str(column))
        if not match:
            continue
        number, language = (match.group(1), match.group(2)) if match.group(1) else (
            match.group(3), match.group(4))
        language = language.lower()
        if int(number) == level and language not in NOT_LANGUAGES and language != "pc":
            found.setdefault(language, str(column))
    return found


def _main_name_column(frame: pd.DataFrame, level: int, explicit: str | None,
                      languages: dict[str, str], file_name: str) -> str | None:
    """Return the column of the main name: the explicit one, English, another language, ..."""
    if explicit is not None:
        return cols.find_column(frame, explicit, (), file_name=file_name)
    for language in ("en", "fr", "es", "pt", *sorted(languages)):
        if language in languages:
            return languages[language]
    plain = tuple(pattern.format(n=level) for pattern in LEVEL_PLAIN_NAME)
    return cols.find_column(frame, None, (*plain, *NAME_NAMES), file_name=file_name)


def _ancestor_name_column(frame: pd.DataFrame, level: int, languages: dict[str, str],
                          file_name: str) -> str | None:
    """Return the main name column of an ancestor level: only that level's own columns."""
    for language in ("en", "fr", "es", "pt", *sorted(languages)):
        if language in languages:
            return languages[language]
    plain = tuple(pattern.format(n=level) for pattern in LEVEL_PLAIN_NAME)
    return cols.find_column(frame, None, plain, file_name=file_name)


def _names_by_language(frame: pd.DataFrame, languages: dict[str, str]) -> pd.Series:
    """Return per row {language code: name} from the level's own language columns."""
    texts = {language: cols.text_values(frame, column) for language, column in languages.items()}
    return pd.Series(
        [{lang: values[label] for lang, values in texts.items() if values[label] is not None}
         for label in frame.index],
        index=frame.index, dtype=object,
    )


def normalise_localities(
    frame: gpd.GeoDataFrame,
    *,
    file_name: str,
    level: int | None = None,
    code_field: str | None = None,
    name_field: str | None = None,
    parent_field: str | None = None,
    population_field: str | None = None,
) -> Normalised:
    """Return code, name, level, parent_code, population, names, geometry per locality.

    `name` is None where the file gives none (a stored name is then kept); `names` holds
    the locality's own level's names per language code (ADM2_FR → "fr"), never another
    level's. attrs["source_fields"] says which column played which role.
    """
    notes: list[str] = []
    code_levels = level_code_columns(frame)
    if level is None and code_levels:
        level = max(code_levels)
        notes.append(f"admin level {level} inferred from the {code_levels[level]} column")
    if level is None:
        fail_one(file_name, "cannot tell the admin level (no ADMn_PCODE column); pass level "
                 "(--level N)")
    own_code = (code_levels[level],) if level in code_levels else ()
    code_col = cols.require_column(
        frame, code_field, (*own_code, *CODE_NAMES), file_name=file_name, what="code",
        # Codes are never invented: re-uploads, parents and every joined table key on them.
        hint="name the column holding a stable, unique code per locality with "
        "--field code=COLUMN",
    )
    languages = level_name_columns(frame, level)
    name_col = _main_name_column(frame, level, name_field, languages, file_name)
    parent_names = (code_levels[level - 1],) if level - 1 in code_levels else ()
    parent_col = cols.find_column(
        frame, parent_field, (*parent_names, "parent_code", "parent"), file_name=file_name
    )
    pop_col = cols.find_column(frame, population_field, POPULATION_NAMES, file_name=file_name)
    codes = _codes(frame, code_col, file_name)
    names = (
        cols.text_values(frame, name_col)
        if name_col
        else pd.Series(None, index=frame.index, dtype=object)
    )
    if names.isna().any():
        notes.append(f"{int(names.isna().sum())} localities have no name in the file; a stored "
                     "name is kept, a new locality shows its code")
    parents = cols.text_values(frame, parent_col) if parent_col else None
    if parents is None and level > 0:
        notes.append(f"no parent code column for level {level}; parent_code left empty")
    population = (
        cols.numbers(frame, pop_col, file_name=file_name, minimum=0) if pop_col else None
    )
    notes.extend(source_notes(frame))
    result = gpd.GeoDataFrame(
        {
            "code": codes,
            "name": names,
            "level": int(level),
            "parent_code": parents if parents is not None else None,
            "population": population if population is not None else math.nan,
            "names": _names_by_language(frame, languages),
        },
        geometry=frame.geometry,
        crs=frame.crs,
        index=frame.index,
    )
    result.attrs["source_fields"] = _source_fields(
        code=code_col, name=name_col, parent_code=parent_col, population=pop_col,
        **{f"name_{language}": column for language, column in languages.items()},
    )
    result.attrs["has_population"] = pop_col is not None
    return Normalised(result, notes)


def ancestors_from_columns(
    frame: gpd.GeoDataFrame, localities: gpd.GeoDataFrame, *, file_name: str
) -> gpd.GeoDataFrame:
    """Return the ancestors a child file describes in its parent-code columns, dissolved.

    A COD adm3 file carries ADM2_PCODE and ADM1_PCODE (often ADM0_PCODE) with their names:
    each such column gives one level of units, their outline the union of their children's.
    Returned with the same columns as `normalise_localities`, coarsest level first.
    """
    level = int(localities["level"].iloc[0]) if len(localities) else 0
    code_levels = {k: c for k, c in level_code_columns(frame).items() if k < level}
    parts: list[gpd.GeoDataFrame] = []
    for ancestor_level, column in sorted(code_levels.items()):
        codes = cols.text_values(frame, column)
        known = codes.notna() & localities["code"].notna()
        if not known.any():
            continue
        languages = level_name_columns(frame, ancestor_level)
        names = _names_by_language(frame, languages)
        main = _ancestor_name_column(frame, ancestor_level, languages, file_name)
        main_names = (cols.text_values(frame, main) if main else
                      pd.Series(None, index=frame.index, dtype=object))
        parent_column = code_levels.get(ancestor_level - 1)
        parents = (cols.text_values(frame, parent_column) if parent_column
                   else pd.Series(None, index=frame.index, dtype=object))
        table = pd.DataFrame({"code": codes, "name": main_names, "parent_code": parents,
                              "names": names})[known]
        geometry = localities.geometry[known]
        grouped = table.groupby("code", sort=True)
        dissolved = gpd.GeoDataFrame(
            {
                "code": list(grouped.groups),
                "name": [_first(g["name"]) for _, g in grouped],
                "level": ancestor_level,
                "parent_code": [_first(g["parent_code"]) for _, g in grouped],
                "population": math.nan,
                "names": [_merged_names(g["names"]) for _, g in grouped],
            },
            geometry=[_dissolve(geometry.loc[g.index]) for _, g in grouped],
            crs=localities.crs,
        )
        dissolved.attrs["source_column"] = column
        parts.append(dissolved)
    if not parts:
        return gpd.GeoDataFrame(
            {"code": [], "name": [], "level": [], "parent_code": [], "population": [],
             "names": []}, geometry=[], crs=localities.crs)
    combined = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=localities.crs)
    combined.attrs["source_columns"] = {int(p["level"].iloc[0]): p.attrs["source_column"]
                                        for p in parts}
    return combined


def _first(values: pd.Series) -> Any:
    """Return the first present value of a group, or None."""
    present = values.dropna()
    return present.iloc[0] if len(present) else None


def _merged_names(values: pd.Series) -> dict[str, str]:
    """Return the union of per-language name dicts of a group (first wins)."""
    merged: dict[str, str] = {}
    for names in values:
        for language, name in (names or {}).items():
            merged.setdefault(language, name)
    return merged


def _dissolve(geometries: gpd.GeoSeries) -> shapely.MultiPolygon:
    """Return the union of polygons as a valid MultiPolygon."""
    union = shapely.union_all(np.asarray(geometries.values))
    if not union.is_valid:
        union = shapely.make_valid(union)
    polygons = _polygonal_part(union)
    return polygons if polygons is not None else shapely.MultiPolygon()


def _source_fields(**columns: str | None) -> dict[str, str]:
    """Return which of the file's columns each normalised column came from, for messages."""
    return {ours: str(theirs) for ours, theirs in columns.items() if theirs is not None}


def _codes(frame: pd.DataFrame, column: str, file_name: str) -> pd.Series:
    """Return the code column as text; report rows with a missing or repeated code."""
    codes = cols.text_values(frame, column)
    missing = codes[codes.isna()]
    fail_rows(
        [
            problem(file_name, "the code is missing", field=column, **cols.where(frame, label))
            for label in missing.index
        ]
    )
    present = codes.notna()
    cols.duplicates(frame[present], codes[present], file_name=file_name, field=column,
                    what="code")
    return codes


# --- events ---------------------------------------------------------------------------


def normalise_events(
    frame: gpd.GeoDataFrame,
    *,
    file_name: str,
    date_field: str | None = None,
    type_field: str | None = None,
    actor_field: str | None = None,
    fatalities_field: str | None = None,
    date_format: str | None = None,
) -> Normalised:
    """Return event_date, event_type, actor, fatalities, attributes, geometry per event."""
    notes = source_notes(frame)
    find = partial(cols.find_column, frame, file_name=file_name)
    date_names = ("event_date", "date_start", "date", "event date", "datetime")
    date_col = cols.require_column(frame, date_field, date_names, "event date", file_name=file_name)
    type_col = find(type_field, ("event_type", "type_of_violence", "type", "category"))
    actor_col = find(actor_field, ("actor1", "side_a", "actor", "perpetrator"))
    deaths_col = find(fatalities_field, ("fatalities", "best", "deaths", "killed"))
    event_types = (cols.text_values(frame, type_col) if type_col
                   else pd.Series(None, index=frame.index, dtype=object))
    if type_col and str(type_col).lower() == "type_of_violence":
        event_types = pd.Series([_ucdp_type(v) for v in event_types], index=frame.index,
                                dtype=object)
    if deaths_col:
        fatalities = cols.numbers(frame, deaths_col, file_name=file_name, minimum=0, integer=True)
    else:
        fatalities = pd.Series(math.nan, index=frame.index)
        notes.append("no fatalities column; fatalities left empty")
    used = (date_col, type_col, actor_col, deaths_col)
    result = gpd.GeoDataFrame(
        {
            "event_date": cols.dates(frame, date_col, file_name=file_name,
                                     date_format=date_format),
            "event_type": event_types,
            "actor": cols.text_values(frame, actor_col) if actor_col else None,
            "fatalities": fatalities,
            "attributes": cols.attributes(frame, used),
        },
        geometry=frame.geometry,
        crs=frame.crs,
        index=frame.index,
    )
    result.attrs["source_fields"] = _source_fields(
        date=date_col, type=type_col, actor=actor_col, fatalities=deaths_col,
        **frame.attrs.get("source_fields", {}))
    return Normalised(result, notes)


def _ucdp_type(value: str | None) -> str | None:
    """Return UCDP's type_of_violence code (1, 2, 3) as words; other text as it is."""
    if value is None:
        return None
    try:
        return UCDP_VIOLENCE_TYPES.get(int(float(value)), value)
    except ValueError:
        return value


# --- institutions ---------------------------------------------------------------------


INSTITUTION_TYPE_NAMES = (
    "type", "institution_type", "facility_type_9", "facility_type", "facility type",
    "amenity", "healthcare", "remark", "category",
)
INSTITUTION_NAME_NAMES = ("name", "facility name", "facility_name", "namobj", "nama")


def normalise_institutions(
    frame: gpd.GeoDataFrame,
    *,
    file_name: str,
    type_field: str | None = None,
    name_field: str | None = None,
    capacity_field: str | None = None,
    sensitive_field: str | None = None,
    type_map: Mapping[str, str] | None = None,
) -> Normalised:
    """Return type, name, capacity, sensitive, attributes, geometry per institution."""
    notes = source_notes(frame)
    overrides = _checked_type_map(type_map, file_name)
    find = partial(cols.find_column, frame, file_name=file_name)
    type_col = find(type_field, INSTITUTION_TYPE_NAMES)
    name_col = find(name_field, INSTITUTION_NAME_NAMES)
    capacity_col = find(capacity_field, ("capacity", "beds", "bed_count", "kapasitas"))
    sensitive_col = find(sensitive_field, ("sensitive", "is_sensitive"))
    labels = (cols.text_values(frame, type_col) if type_col
              else pd.Series(None, index=frame.index, dtype=object))
    types = pd.Series([institution_type(v, overrides) if v else None for v in labels],
                      index=frame.index, dtype=object)
    unmapped = pd.Series(["(blank)" if v is None else v for v in labels[types.isna()]],
                         dtype=object).value_counts()
    if type_col is None:
        notes.append("no type column; every institution is typed 'other'")
    elif not unmapped.empty:
        listed = ", ".join(f"{label!r} ×{n}" for label, n in unmapped.head(10).items())
        notes.append(f"{int(unmapped.sum())} institutions typed 'other' (unmapped: {listed})")
    capacity = (
        cols.numbers(frame, capacity_col, file_name=file_name, minimum=0)
        if capacity_col
        else pd.Series(math.nan, index=frame.index)
    )
    sensitive = (
        cols.booleans(frame, sensitive_col, file_name=file_name)
        if sensitive_col
        else pd.Series(False, index=frame.index)
    )
    extra = cols.attributes(frame, (type_col, name_col, capacity_col, sensitive_col))
    if type_col:
        # Keep the source label: the vocabulary is coarser than what the data said.
        extra = pd.Series(
            [{**a, "source_type": t} for a, t in zip(extra, labels, strict=True)], index=frame.index
        )
    result = gpd.GeoDataFrame(
        {
            "type": types.fillna("other"),
            "name": cols.text_values(frame, name_col) if name_col else None,
            "capacity": capacity,
            "sensitive": sensitive,
            "attributes": extra,
        },
        geometry=frame.geometry,
        crs=frame.crs,
        index=frame.index,
    )
    result.attrs["source_fields"] = _source_fields(
        type=type_col, name=name_col, capacity=capacity_col, sensitive=sensitive_col,
        **frame.attrs.get("source_fields", {}))
    return Normalised(result, notes)


def _checked_type_map(type_map: Mapping[str, str] | None, file_name: str) -> dict[str, str]:
    """Return a caller's label→type mapping with folded keys; raise on unknown types."""
    if not type_map:
        return {}
    bad = [value for value in type_map.values() if value not in INSTITUTION_TYPES]
    if bad:
        fail_one(file_name, f"type_map uses unknown types {bad}; allowed: {INSTITUTION_TYPES}")
    return {fold(key): value for key, value in type_map.items()}


# --- population tables ----------------------------------------------------------------


# COD-PS population columns: T_TL total, F_TL/M_TL by sex, T_00_04 / F_80Plus age bands.
SEX_TOTAL = re.compile(r"^([FM])_TL$", re.IGNORECASE)
AGE_BAND = re.compile(r"^([FMT])_(\d{1,2})(?:_(\d{1,2})|_?(plus))$", re.IGNORECASE)
SEXES = {"f": "female", "m": "male"}


def normalise_population_table(
    frame: pd.DataFrame,
    *,
    file_name: str,
    code_field: str | None = None,
    population_field: str | None = None,
    level: int | None = None,
    year: int | None = None,
    year_field: str | None = None,
    level_field: str | None = None,
) -> Normalised:
    """Return code, population, level, year per locality from a wide, long or COD-PS table.

    attrs["subgroup_shares"] holds, for a COD-PS table, each locality's share of people by
    sex (F_TL/M_TL), age band (T_00_04) and both (F_00_04): long rows code, subgroup, share.
    """
    notes: list[str] = []
    find = partial(cols.find_column, frame, file_name=file_name)
    indicator_col = find(None, ("indicator",))
    if indicator_col and find(None, ("placeCode",)):
        wanted = pd.Series([(cols.as_text(v) or "").lower() == "populationtotal"
                            for v in frame[indicator_col]], index=frame.index)
        if not wanted.any():
            fail_one(file_name, "no rows with indicator populationTotal", field=indicator_col)
        if (~wanted).any():
            notes.append(f"{int((~wanted).sum())} rows with other indicators were ignored")
        frame = frame[wanted]
    code_levels = level_code_columns(frame)
    finest = [code_levels[k] for k in sorted(code_levels, reverse=True)]
    code_col = cols.require_column(
        frame, code_field, ("placeCode", *CODE_NAMES, *finest), file_name=file_name, what="code",
        hint="name it with --field code=COLUMN",
    )
    if level is None and code_col in code_levels.values():
        level = next(k for k, c in code_levels.items() if c == code_col)
    sexes = {SEX_TOTAL.match(str(c)).group(1).lower(): str(c)  # type: ignore[union-attr]
             for c in frame.columns if SEX_TOTAL.match(str(c))}
    pop_col = cols.find_column(frame, population_field, (*POPULATION_NAMES, "value", "total"),
                               file_name=file_name)
    if pop_col is None and set(sexes) == {"f", "m"}:
        population = (cols.numbers(frame, sexes["f"], file_name=file_name, required=True,
                                   minimum=0)
                      + cols.numbers(frame, sexes["m"], file_name=file_name, required=True,
                                     minimum=0))
        notes.append(f"no total column; population = {sexes['f']} + {sexes['m']}")
        pop_col = f"{sexes['f']}+{sexes['m']}"
    else:
        pop_col = cols.require_column(
            frame, population_field, (*POPULATION_NAMES, "value", "total"),
            file_name=file_name, what="population", hint="name it with --field population=COLUMN",
        )
        population = cols.numbers(frame, pop_col, file_name=file_name, required=True, minimum=0)
    level_col = find(level_field, ("adminLevel", "admin_level", "level"))
    year_col = find(year_field, ("year", "period", "reference_year"))
    result = pd.DataFrame(
        {
            "code": _codes_allowing_repeats(frame, code_col, file_name),
            "population": population,
            "level": _optional_int(frame, level_col, level, file_name),
            "year": _optional_int(frame, year_col, year, file_name),
        },
        index=frame.index,
    )
    keys = result[["code", "level", "year"]].astype(object).where(result.notna(), None)
    cols.duplicates(frame, keys, file_name=file_name, field=code_col, what="code/level/year")
    shares, share_columns = _subgroup_shares(frame, result, sexes, file_name)
    if share_columns:
        notes.append(f"subgroup population shares from {len(share_columns)} columns "
                     f"({', '.join(share_columns[:6])}{' …' if len(share_columns) > 6 else ''})")
    result.attrs["subgroup_shares"] = shares
    result.attrs["source_fields"] = _source_fields(
        code=code_col, population=pop_col, level=level_col, year=year_col,
        **{f"share:{c}": c for c in share_columns},
    )
    return Normalised(result, notes)


def _subgroup_shares(frame: pd.DataFrame, result: pd.DataFrame, sexes: dict[str, str],
                     file_name: str) -> tuple[pd.DataFrame, list[str]]:
    """Return long (code, subgroup, share) rows from COD-PS sex and age columns, and those."""
    columns: dict[str, str] = {}
    for letter, column in sexes.items():
        columns[column] = f"sex={SEXES[letter]}"
    for column in frame.columns:
        match = AGE_BAND.match(str(column))
        if not match:
            continue
        letter, low, high, plus = match.groups()
        band = f"{int(low):02d}-{int(high):02d}" if high else f"{int(low):02d}+"
        subgroup = f"age={band}"
        if letter.lower() in SEXES:
            subgroup = canonical_subgroup(f"{subgroup};sex={SEXES[letter.lower()]}")
        columns[str(column)] = subgroup
    if not columns:
        return pd.DataFrame(columns=["code", "subgroup", "share", "row"]), []
    total = result["population"].where(result["population"] > 0)
    rows = []
    for column, subgroup in columns.items():
        counts = cols.numbers(frame, column, file_name=file_name, minimum=0)
        share = counts / total
        for label, value in share.items():
            if pd.notna(value) and result.at[label, "code"] is not None:
                rows.append((result.at[label, "code"], subgroup, min(float(value), 1.0), label))
    return pd.DataFrame(rows, columns=["code", "subgroup", "share", "row"]), list(columns)


def _codes_allowing_repeats(frame: pd.DataFrame, column: str, file_name: str) -> pd.Series:
    """Return a code column as text; raise naming rows where it is blank."""
    codes = cols.text_values(frame, column)
    fail_rows(
        [
            problem(file_name, "the code is missing", field=column, **cols.where(frame, label))
            for label in codes[codes.isna()].index
        ]
    )
    return codes


def _optional_int(
    frame: pd.DataFrame, column: str | None, default: int | None, file_name: str
) -> pd.Series:
    """Return a whole-number column (or the default everywhere) as nullable Int64."""
    if column is None:
        return pd.Series(default, index=frame.index, dtype="Int64")
    values = cols.numbers(frame, column, file_name=file_name, integer=True)
    whole = values.round().astype("Int64")
    return whole.fillna(default) if default is not None else whole


# --- indicators, observations, priorities ---------------------------------------------


def normalise_indicators(
    frame: pd.DataFrame, *, file_name: str, fields: Mapping[str, str] | None = None
) -> Normalised:
    """Return code, name, dimension, polarity, cutoff, unit, target per indicator."""
    req = partial(_role_column, frame, fields or {}, file_name=file_name)
    code_col = req("code", ("code", "indicator", "indicator_code"), "indicator code")
    name_col = req("name", ("name", "label", "title"), "name")
    dimension_col = req("dimension", ("dimension",), "dimension")
    polarity_col = req("polarity", ("polarity",), "polarity")
    codes = _codes(frame, code_col, file_name)
    dimensions = _vocabulary_values(frame, dimension_col, DIMENSIONS, file_name)
    polarities = _vocabulary_values(frame, polarity_col, POLARITIES, file_name)
    optional = {
        key: cols.find_column(frame, (fields or {}).get(key), names, file_name=file_name)
        for key, names in {"cutoff": ("cutoff", "threshold"), "unit": ("unit", "units"),
                           "target": ("target",),
                           "design_effect": ("design_effect", "deff")}.items()
    }

    def number(key: str) -> pd.Series:
        column = optional[key]
        if column is None:
            return pd.Series(math.nan, index=frame.index)
        return cols.numbers(frame, column, file_name=file_name)

    result = pd.DataFrame(
        {
            "code": codes,
            "name": cols.text_values(frame, name_col).fillna(codes),
            "dimension": dimensions,
            "polarity": polarities,
            "cutoff": number("cutoff"),
            "unit": cols.text_values(frame, optional["unit"]) if optional["unit"] else None,
            "target": number("target"),
            "design_effect": _design_effects(frame, optional["design_effect"], file_name),
        },
        index=frame.index,
    )
    notes = [] if optional["cutoff"] else ["no cutoff column; deprivation cutoffs left empty"]
    result.attrs["source_fields"] = _source_fields(
        code=code_col, name=name_col, dimension=dimension_col, polarity=polarity_col,
        **optional)
    return Normalised(result, notes)


def _role_column(frame: pd.DataFrame, fields: Mapping[str, str], role: str,
                 names: tuple[str, ...], what: str, *, file_name: str) -> str:
    """Return the column of a required role: the one named in `fields`, else a usual name."""
    return cols.require_column(frame, fields.get(role), names, what, file_name=file_name,
                               hint=f"name it with --field {role}=COLUMN")


def _design_effects(frame: pd.DataFrame, column: str | None, file_name: str) -> pd.Series:
    """Return the indicators' design effects (NaN where not given); refuse any <= 0."""
    if column is None:
        return pd.Series(math.nan, index=frame.index)
    values = cols.numbers(frame, column, file_name=file_name)
    bad = values <= 0
    if bad.any():
        fail([problem(file_name, f"design effect {values[label]:g} must be above 0",
                      field=column, **cols.where(frame, label)) for label in values.index[bad]])
    return values


def _vocabulary_values(
    frame: pd.DataFrame, column: str, allowed: tuple[str, ...], file_name: str
) -> pd.Series:
    """Return a column folded to snake_case; raise naming rows not in the vocabulary."""
    values = pd.Series([fold(v).replace(" ", "_") if v else None
                        for v in cols.text_values(frame, column)], index=frame.index,
                       dtype=object)
    bad = values[~values.isin(allowed)]
    fail_rows(
        [
            problem(
                file_name,
                f"the value is missing (one of {', '.join(allowed)})"
                if cols.is_blank(frame.at[label, column])
                else f"{frame.at[label, column]!r} is not one of {', '.join(allowed)}",
                field=column,
                **cols.where(frame, label),
            )
            for label in bad.index
        ]
    )
    return values


def canonical_subgroup(text: str | None) -> str:
    """Return a subgroup key in canonical form: `all`, or `k=v` pairs sorted by key with `;`."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "all":
        return "all"
    pairs: dict[str, str] = {}
    for part in re.split(r"[;&|]", str(text)):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip().lower(), value.strip().lower()
        if not sep or not key or not value:
            raise ValueError(f"{part.strip()!r} is not of the form key=value")
        if key in pairs and pairs[key] != value:
            raise ValueError(f"key {key!r} appears twice")
        pairs[key] = value
    return ";".join(f"{key}={pairs[key]}" for key in sorted(pairs))


def normalise_observations(
    frame: pd.DataFrame, *, file_name: str, fields: Mapping[str, str] | None = None
) -> Normalised:
    """Return locality_code, indicator, period, subgroup, value, sample_size, source."""
    fields = fields or {}
    req = partial(_role_column, frame, fields, file_name=file_name)
    cod = tuple(reversed(level_code_columns(frame).values()))
    code_col = req("code", ("locality_code", "code", "pcode", "placeCode", *cod), "locality code")
    indicator_col = req("indicator", ("indicator", "indicator_code"), "indicator")
    period_col = req("period", ("period", "year", "date"), "period")
    value_col = req("value", ("value",), "value")
    find = partial(cols.find_column, frame, file_name=file_name)
    subgroup_col = find(fields.get("subgroup"), ("subgroup", "group"))
    sample_col = find(fields.get("sample_size"), ("sample_size", "n"))
    source_col = find(fields.get("source"), ("source",))
    uncertainty = _observation_uncertainty(frame, file_name)
    sample = (
        cols.numbers(frame, sample_col, file_name=file_name, minimum=0, integer=True)
        if sample_col
        else pd.Series(math.nan, index=frame.index)
    )
    result = pd.DataFrame(
        {
            "locality_code": _codes_allowing_repeats(frame, code_col, file_name),
            "indicator": _codes_allowing_repeats(frame, indicator_col, file_name),
            "period": _codes_allowing_repeats(frame, period_col, file_name),
            "subgroup": _subgroups(frame, subgroup_col, file_name),
            "value": cols.numbers(frame, value_col, file_name=file_name, required=True),
            "sample_size": sample.round().astype("Int64"),
            "source": cols.text_values(frame, source_col) if source_col else None,
            **uncertainty,
        },
        index=frame.index,
    )
    keys = result[["locality_code", "indicator", "period", "subgroup"]]
    cols.duplicates(frame, keys, file_name=file_name, field=value_col, what="observation")
    result.attrs["source_fields"] = _source_fields(
        locality_code=code_col, indicator=indicator_col, period=period_col, value=value_col,
        subgroup=subgroup_col, sample_size=sample_col, source=source_col)
    return Normalised(result, [])


def _observation_uncertainty(frame: pd.DataFrame, file_name: str) -> dict[str, pd.Series]:
    """Return standard_error, ci_low, ci_high (NaN where not given); refuse low > high."""
    names = {"standard_error": ("standard_error", "se", "std_error"),
             "ci_low": ("ci_low", "ci_lower"),
             "ci_high": ("ci_high", "ci_upper")}
    found = {key: cols.find_column(frame, None, aliases, file_name=file_name)
             for key, aliases in names.items()}
    values = {key: (cols.numbers(frame, column, file_name=file_name,
                                 minimum=0 if key == "standard_error" else None)
                    if column else pd.Series(math.nan, index=frame.index))
              for key, column in found.items()}
    crossed = values["ci_low"] > values["ci_high"]
    if crossed.any():
        fail([problem(file_name, f"interval {values['ci_low'][label]:g} to "
                      f"{values['ci_high'][label]:g} has its low end above its high end",
                      field=found["ci_low"], **cols.where(frame, label))
              for label in values["ci_low"].index[crossed]])
    return values


def _subgroups(frame: pd.DataFrame, column: str | None, file_name: str) -> pd.Series:
    """Return the subgroup column in canonical form ('all' when absent or blank)."""
    if column is None:
        return pd.Series("all", index=frame.index, dtype=object)
    details: list[dict] = []
    values: list[str | None] = []
    for label, raw in frame[column].items():
        try:
            values.append(canonical_subgroup(None if cols.is_blank(raw) else str(raw)))
        except ValueError as exc:
            values.append(None)
            details.append(problem(file_name, str(exc), field=column, **cols.where(frame, label)))
    fail_rows(details)
    return pd.Series(values, index=frame.index, dtype=object)


def normalise_priorities(
    frame: pd.DataFrame, *, file_name: str, fields: Mapping[str, str] | None = None,
    date_format: str | None = None,
) -> Normalised:
    """Return locality_code, forum_date, rank, need: one row per ranked need."""
    fields = fields or {}
    req = partial(_role_column, frame, fields, file_name=file_name)
    code_col = req("code", ("locality_code", "code", "pcode"), "locality code")
    date_col = req("date", ("forum_date", "date"), "forum date")
    codes = _codes_allowing_repeats(frame, code_col, file_name)
    forum_dates = cols.dates(frame, date_col, file_name=file_name, date_format=date_format)
    needs_col = cols.find_column(frame, fields.get("needs"), ("needs",), file_name=file_name)
    rank_col = need_col = None
    if needs_col:
        rows = _split_needs(frame, needs_col, codes, forum_dates, file_name)
    else:
        rank_col = req("rank", ("rank",), "rank (or a 'needs' list)")
        need_col = req("need", ("need", "priority"), "need")
        ranks = cols.numbers(frame, rank_col, file_name=file_name, required=True, minimum=1,
                             integer=True)
        needs = _codes_allowing_repeats(frame, need_col, file_name)
        rows = [
            (label, codes[label], forum_dates[label], int(ranks[label]), needs[label])
            for label in frame.index
        ]
    result = pd.DataFrame(
        [row[1:] for row in rows],
        columns=["locality_code", "forum_date", "rank", "need"],
        index=pd.Index([row[0] for row in rows], name=frame.index.name),
    )
    keys = result[["locality_code", "forum_date", "rank"]]
    cols.duplicates(result, keys, file_name=file_name, field="rank", what="rank")
    result.attrs["source_fields"] = _source_fields(
        locality_code=code_col, forum_date=date_col, needs=needs_col, rank=rank_col,
        need=need_col)
    return Normalised(result, [])


def _split_needs(
    frame: pd.DataFrame, column: str, codes: pd.Series, forum_dates: pd.Series, file_name: str
) -> list[tuple[Any, ...]]:
    """Return (row, code, date, rank, need) tuples from a ranked `a; b | c` needs list."""
    rows: list[tuple[Any, ...]] = []
    for label, raw in frame[column].items():
        needs = [] if cols.is_blank(raw) else [n.strip() for n in re.split(r"[;|]", str(raw))]
        needs = [need for need in needs if need]
        if not needs:
            fail_rows([problem(file_name, "the needs list is empty", field=column,
                               **cols.where(frame, label))])
            continue
        rows.extend(
            (label, codes[label], forum_dates[label], rank, need)
            for rank, need in enumerate(needs, start=1)
        )
    return rows
