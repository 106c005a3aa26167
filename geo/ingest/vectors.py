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
from geo.ingest._problems import fail, fail_one, problem
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


def read_table(uploaded: UploadedFile) -> pd.DataFrame:
    """Return a CSV (all cells as text) or YAML list as a DataFrame indexed by row/item."""
    if uploaded.kind is FileKind.CSV:
        return _read_csv(uploaded)
    if uploaded.kind is FileKind.YAML:
        return _read_yaml(uploaded)
    fail_one(uploaded.original_name, f"expected a CSV or YAML table, got a {uploaded.kind} file")


def _read_csv(uploaded: UploadedFile) -> pd.DataFrame:
    """Return a UTF-8 CSV as text columns; 'NA' stays a string (it is Namibia's code)."""
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


def read_vector(uploaded: UploadedFile, *, expected_geometry: GeometryKind) -> gpd.GeoDataFrame:
    """Return the upload's features in EPSG:4326, checked and with polygons repaired.

    `attrs["repaired_polygons"]` holds how many invalid polygons `make_valid` repaired.
    A CSV is read as points from its latitude/longitude columns.
    """
    if uploaded.kind is FileKind.CSV:
        if expected_geometry != "point":
            fail_one(uploaded.original_name, "a CSV holds points, but polygons are needed")
        frame = points_from_table(read_table(uploaded), file_name=uploaded.original_name)
    elif uploaded.kind in ALLOWED_VECTOR_DRIVERS:
        frame = _read_ogr(uploaded)
    else:
        fail_one(uploaded.original_name, f"expected a vector file, got a {uploaded.kind} file")
    return check_geometries(frame, file_name=uploaded.original_name, expected=expected_geometry)


def _read_ogr(uploaded: UploadedFile) -> gpd.GeoDataFrame:
    """Return the single layer of a vector file through an allow-listed GDAL driver."""
    name = uploaded.original_name
    expected_driver = ALLOWED_VECTOR_DRIVERS[uploaded.kind]
    path = vector_source(gdal_path(uploaded.path, uploaded.directory), expected_driver)
    with vector_env(), warnings.catch_warnings():
        # GDAL's own warnings are replaced by the per-feature diagnosis below.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            layers = pyogrio.list_layers(path)
            if len(layers) != 1:
                listed = ", ".join(str(layer[0]) for layer in layers[:10]) or "none"
                fail_one(name, f"expected exactly one layer, found {len(layers)} ({listed})")
            info = pyogrio.read_info(path)
            if info["driver"] != expected_driver:
                fail_one(name, f"read as {info['driver']}, but only {expected_driver} is allowed")
            frame = pyogrio.read_dataframe(path, on_invalid="ignore")
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


def points_from_table(frame: pd.DataFrame, *, file_name: str) -> gpd.GeoDataFrame:
    """Return a table as WGS84 points from its latitude/longitude columns (both dropped)."""
    lat_col = cols.require_column(frame, None, LAT_NAMES, "latitude", file_name=file_name)
    lon_col = cols.require_column(frame, None, LON_NAMES, "longitude", file_name=file_name)
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
    if details:
        fail(details)
    geometry = gpd.points_from_xy(lon.to_numpy(), lat.to_numpy())
    rest = frame.drop(columns=[lat_col, lon_col])
    points = gpd.GeoDataFrame(rest, geometry=geometry, crs="EPSG:4326")
    points.attrs["skipped_rows"] = skipped
    return points


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


COD_PCODE = re.compile(r"^adm(\d)_pcode$", re.IGNORECASE)
CODE_NAMES = ("code", "pcode", "p_code", "placecode", "locality_code", "adm_pcode")
NAME_NAMES = ("name", "nama", "nom", "nombre", "locality_name")
POPULATION_NAMES = ("population", "pop", "pop_total", "total_pop", "populationtotal")


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
    """Return code, name, level, parent_code, population, geometry (+ warnings) per locality."""
    notes: list[str] = []
    cod_levels = sorted(
        int(m.group(1)) for c in frame.columns if (m := COD_PCODE.match(str(c))) is not None
    )
    if level is None and cod_levels:
        level = cod_levels[-1]
        notes.append(f"admin level {level} inferred from the ADM{level}_PCODE column")
    if level is None:
        fail_one(file_name, "cannot tell the admin level (no ADMn_PCODE column); pass level")
    code_col = cols.require_column(
        frame, code_field, (f"ADM{level}_PCODE", *CODE_NAMES), file_name=file_name, what="code",
        # Codes are never invented: re-uploads, parents and every joined table key on them.
        hint="name the column holding a stable, unique code per locality with the "
        "code_field option",
    )
    name_col = cols.find_column(
        frame,
        name_field,
        tuple(f"ADM{level}_{s}" for s in ("EN", "NAME", "FR", "ES", "PT", "REF")) + NAME_NAMES,
        file_name=file_name,
    )
    parent_col = cols.find_column(
        frame, parent_field, (f"ADM{level - 1}_PCODE", "parent_code", "parent"), file_name=file_name
    )
    pop_col = cols.find_column(frame, population_field, POPULATION_NAMES, file_name=file_name)
    codes = _codes(frame, code_col, file_name)
    names = (
        cols.text_values(frame, name_col)
        if name_col
        else pd.Series(None, index=frame.index, dtype=object)
    )
    if names.isna().any():
        notes.append(f"{int(names.isna().sum())} localities have no name; their code is shown")
        names = names.fillna(codes)
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
        },
        geometry=frame.geometry,
        crs=frame.crs,
        index=frame.index,
    )
    result.attrs["source_fields"] = _source_fields(code=code_col, parent_code=parent_col)
    return Normalised(result, notes)


def _source_fields(**columns: str | None) -> dict[str, str]:
    """Return which of the file's columns each normalised column came from, for messages."""
    return {ours: str(theirs) for ours, theirs in columns.items() if theirs is not None}


def _codes(frame: pd.DataFrame, column: str, file_name: str) -> pd.Series:
    """Return the code column as text; raise naming rows with a missing or repeated code."""
    codes = cols.text_values(frame, column)
    missing = codes[codes.isna()]
    if not missing.empty:
        fail(
            [
                problem(file_name, "the code is missing", field=column, **cols.where(frame, label))
                for label in missing.index
            ]
        )
    cols.duplicates(frame, codes, file_name=file_name, field=column, what="code")
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
) -> Normalised:
    """Return event_date, event_type, actor, fatalities, attributes, geometry per event."""
    notes = source_notes(frame)
    find = partial(cols.find_column, frame, file_name=file_name)
    date_names = ("event_date", "date_start", "date", "event date", "datetime")
    date_col = cols.require_column(frame, date_field, date_names, "event date", file_name=file_name)
    type_col = find(type_field, ("event_type", "type_of_violence", "type", "category"))
    actor_col = find(actor_field, ("actor1", "side_a", "actor", "perpetrator"))
    deaths_col = find(fatalities_field, ("fatalities", "best", "deaths", "killed"))
    event_types = cols.text_values(frame, type_col) if type_col else pd.Series(None, frame.index)
    if type_col and str(type_col).lower() == "type_of_violence":
        event_types = event_types.map(lambda v: UCDP_VIOLENCE_TYPES.get(int(v), v) if v else v)
    if deaths_col:
        fatalities = cols.numbers(frame, deaths_col, file_name=file_name, minimum=0, integer=True)
    else:
        fatalities = pd.Series(math.nan, index=frame.index)
        notes.append("no fatalities column; fatalities left empty")
    used = (date_col, type_col, actor_col, deaths_col)
    result = gpd.GeoDataFrame(
        {
            "event_date": cols.dates(frame, date_col, file_name=file_name),
            "event_type": event_types,
            "actor": cols.text_values(frame, actor_col) if actor_col else None,
            "fatalities": fatalities,
            "attributes": cols.attributes(frame, used),
        },
        geometry=frame.geometry,
        crs=frame.crs,
        index=frame.index,
    )
    return Normalised(result, notes)


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
    labels = cols.text_values(frame, type_col) if type_col else pd.Series(None, frame.index)
    types = labels.map(lambda v: institution_type(v, overrides) if v else None)
    unmapped = labels[types.isna()].fillna("(blank)").value_counts()
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


def normalise_population_table(
    frame: pd.DataFrame,
    *,
    file_name: str,
    code_field: str | None = None,
    population_field: str | None = None,
    level: int | None = None,
    year: int | None = None,
) -> Normalised:
    """Return code, population, level, year per locality from a wide or long table."""
    notes: list[str] = []
    find = partial(cols.find_column, frame, file_name=file_name)
    indicator_col = find(None, ("indicator",))
    if indicator_col and find(None, ("placeCode",)):
        wanted = frame[indicator_col].astype(str).str.strip().str.lower() == "populationtotal"
        if not wanted.any():
            fail_one(file_name, "no rows with indicator populationTotal", field=indicator_col)
        if (~wanted).any():
            notes.append(f"{int((~wanted).sum())} rows with other indicators were ignored")
        frame = frame[wanted]
    cod = sorted((str(c) for c in frame.columns if COD_PCODE.match(str(c))), reverse=True)
    code_col = cols.require_column(
        frame, code_field, ("placeCode", *CODE_NAMES, *cod), file_name=file_name, what="code"
    )
    pop_col = cols.require_column(
        frame, population_field, (*POPULATION_NAMES, "value", "total"),
        file_name=file_name, what="population",
    )
    level_col = find(None, ("adminLevel", "admin_level", "level"))
    year_col = find(None, ("year", "period"))
    result = pd.DataFrame(
        {
            "code": _codes_allowing_repeats(frame, code_col, file_name),
            "population": cols.numbers(
                frame, pop_col, file_name=file_name, required=True, minimum=0
            ),
            "level": _optional_int(frame, level_col, level, file_name),
            "year": _optional_int(frame, year_col, year, file_name),
        },
        index=frame.index,
    )
    cols.duplicates(
        frame, result[["code", "level", "year"]].astype(object).where(result.notna(), None),
        file_name=file_name, field=code_col, what="code/level/year",
    )
    result.attrs["source_fields"] = _source_fields(code=code_col, population=pop_col)
    return Normalised(result, notes)


def _codes_allowing_repeats(frame: pd.DataFrame, column: str, file_name: str) -> pd.Series:
    """Return a code column as text; raise naming rows where it is blank."""
    codes = cols.text_values(frame, column)
    if codes.isna().any():
        fail(
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


def normalise_indicators(frame: pd.DataFrame, *, file_name: str) -> Normalised:
    """Return code, name, dimension, polarity, cutoff, unit, target per indicator."""
    req = partial(cols.require_column, frame, None, file_name=file_name)
    code_col = req(("code", "indicator", "indicator_code"), "indicator code")
    name_col = req(("name", "label", "title"), "name")
    dimension_col = req(("dimension",), "dimension")
    polarity_col = req(("polarity",), "polarity")
    codes = _codes(frame, code_col, file_name)
    dimensions = _vocabulary_values(frame, dimension_col, DIMENSIONS, file_name)
    polarities = _vocabulary_values(frame, polarity_col, POLARITIES, file_name)
    optional = {
        key: cols.find_column(frame, None, names, file_name=file_name)
        for key, names in {"cutoff": ("cutoff", "threshold"), "unit": ("unit", "units"),
                           "target": ("target",)}.items()
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
        },
        index=frame.index,
    )
    notes = [] if optional["cutoff"] else ["no cutoff column; deprivation cutoffs left empty"]
    return Normalised(result, notes)


def _vocabulary_values(
    frame: pd.DataFrame, column: str, allowed: tuple[str, ...], file_name: str
) -> pd.Series:
    """Return a column folded to snake_case; raise naming rows not in the vocabulary."""
    values = cols.text_values(frame, column).map(
        lambda v: fold(v).replace(" ", "_") if v else None
    )
    bad = values[~values.isin(allowed)]
    if not bad.empty:
        fail(
            [
                problem(
                    file_name,
                    f"{frame.at[label, column]!r} is not one of {', '.join(allowed)}",
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


def normalise_observations(frame: pd.DataFrame, *, file_name: str) -> Normalised:
    """Return locality_code, indicator, period, subgroup, value, sample_size, source."""
    req = partial(cols.require_column, frame, None, file_name=file_name)
    code_col = req(("locality_code", "code", "pcode", "placeCode"), "locality code")
    indicator_col = req(("indicator", "indicator_code"), "indicator")
    period_col = req(("period", "year", "date"), "period")
    value_col = req(("value",), "value")
    subgroup_col = cols.find_column(frame, None, ("subgroup", "group"), file_name=file_name)
    sample_col = cols.find_column(frame, None, ("sample_size", "n"), file_name=file_name)
    source_col = cols.find_column(frame, None, ("source",), file_name=file_name)
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
        },
        index=frame.index,
    )
    keys = result[["locality_code", "indicator", "period", "subgroup"]]
    cols.duplicates(frame, keys, file_name=file_name, field=value_col, what="observation")
    result.attrs["source_fields"] = _source_fields(locality_code=code_col,
                                                   indicator=indicator_col)
    return Normalised(result, [])


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
    if details:
        fail(details)
    return pd.Series(values, index=frame.index, dtype=object)


def normalise_priorities(frame: pd.DataFrame, *, file_name: str) -> Normalised:
    """Return locality_code, forum_date, rank, need: one row per ranked need."""
    req = partial(cols.require_column, frame, None, file_name=file_name)
    code_col = req(("locality_code", "code", "pcode"), "locality code")
    date_col = req(("forum_date", "date"), "forum date")
    codes = _codes_allowing_repeats(frame, code_col, file_name)
    forum_dates = cols.dates(frame, date_col, file_name=file_name)
    needs_col = cols.find_column(frame, None, ("needs",), file_name=file_name)
    if needs_col:
        rows = _split_needs(frame, needs_col, codes, forum_dates, file_name)
    else:
        rank_col = req(("rank",), "rank (or a 'needs' list)")
        need_col = req(("need", "priority"), "need")
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
    result.attrs["source_fields"] = _source_fields(locality_code=code_col)
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
            fail_one(file_name, "the needs list is empty", field=column, **cols.where(frame, label))
        rows.extend(
            (label, codes[label], forum_dates[label], rank, need)
            for rank, need in enumerate(needs, start=1)
        )
    return rows
