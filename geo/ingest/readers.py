"""From an opened upload to the clean frame each loader writes: the file layer, per kind.

Every reader runs inside `collecting()`: row problems of every column are gathered and
raised together when the reader ends, before anything is written. Each returns a `Read`:
the clean frame, the notes worth showing, and which of the file's columns it used for what.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, TypeVar

import geopandas as gpd
import pandas as pd

from geo.errors import ValidationError
from geo.ingest import vectors
from geo.ingest._problems import collecting
from geo.ingest.files import VECTOR_KINDS, FileKind, UploadedFile

R = TypeVar("R")


@dataclass
class Read:
    """What a reader made of an upload."""

    frame: pd.DataFrame
    notes: list[str]
    columns: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def _collected(func: Callable[..., R]) -> Callable[..., R]:
    """Run a reader with its row problems gathered and raised together at the end."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        with collecting():
            return func(*args, **kwargs)

    return wrapper


def columns_report(source: pd.DataFrame, used: dict[str, str]) -> dict[str, Any]:
    """Return which source column plays which role, and which columns were kept as is."""
    taken = {column for column in used.values()}
    rest = [str(c) for c in source.columns if c != "geometry" and str(c) not in taken]
    report: dict[str, Any] = {"recognised": dict(used), "other": rest}
    if source.attrs.get("sheet"):
        report["sheet"] = source.attrs["sheet"]
        report["sheets"] = source.attrs.get("sheets", [])
    if source.attrs.get("decimal") == ",":
        report["decimal"] = ","
    return report


def reading_notes(source: pd.DataFrame) -> list[str]:
    """Return notes about how the file was read (sheet chosen, rows dropped)."""
    notes = []
    sheets = source.attrs.get("sheets") or []
    if len(sheets) > 1:
        notes.append(f"read the sheet {source.attrs['sheet']!r} of {len(sheets)} "
                     f"({', '.join(sheets)}); choose another with --sheet")
    if source.attrs.get("hxl_row"):
        notes.append("the HXL hashtag row under the header was skipped")
    if source.attrs.get("blank_rows"):
        notes.append(f"{source.attrs['blank_rows']} empty rows were skipped")
    if source.attrs.get("decimal") == ",":
        notes.append("numbers read with a decimal comma (';' delimiter); pass --decimal . "
                     "if that is wrong")
    return notes


def _points(upload: UploadedFile, options: Any) -> gpd.GeoDataFrame:
    return vectors.read_vector(upload, expected_geometry="point", options=options)


def _table(upload: UploadedFile, kind: str, options: Any) -> pd.DataFrame:
    if upload.kind in VECTOR_KINDS - {FileKind.GEOJSON} or upload.is_raster:
        raise ValidationError(
            f"{upload.original_name}: {kind} come as a table (CSV, .xlsx, YAML or JSON), not a "
            f"{upload.kind.value} file",
            [{"file": upload.original_name,
              "problem": f"expected a table, got {upload.kind.value}"}],
        )
    return vectors.read_table(upload, options)


@_collected
def localities_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return the localities (code, name, level, parent_code, population, names, geometry).

    `extra["ancestors"]` holds the units of coarser levels dissolved from the file's
    parent-code columns (ADM1_PCODE, ADM0_PCODE, ...), coarsest first.
    """
    if upload.kind not in VECTOR_KINDS:
        raise ValidationError(
            f"{upload.original_name}: boundaries must be a vector file (GeoJSON, GeoPackage, "
            "zipped shapefile or FlatGeobuf)",
            [{"file": upload.original_name, "problem": f"got {upload.kind.value}"}],
        )
    source = vectors.read_vector(upload, expected_geometry="polygon", options=options)
    frame, notes = vectors.normalise_localities(
        source, file_name=upload.original_name, level=options.level,
        code_field=options.field("code"), name_field=options.field("name"),
        parent_field=options.field("parent"), population_field=options.field("population"),
    )
    ancestors = vectors.ancestors_from_columns(source, frame, file_name=upload.original_name)
    used = dict(frame.attrs.get("source_fields", {}))
    for level, column in ancestors.attrs.get("source_columns", {}).items():
        used[f"level {level} code"] = column
    return Read(frame, notes, columns_report(source, used), {"ancestors": ancestors})


@_collected
def population_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return one population per locality code (the latest year when several are given).

    `extra["shares"]` holds the subgroup population shares of a COD-PS table.
    """
    table = _table(upload, "population tables", options)
    frame, notes = vectors.normalise_population_table(
        table, file_name=upload.original_name, year=options.year,
        code_field=options.field("code"), population_field=options.field("population"),
        year_field=options.field("year"), level_field=options.field("level"),
    )
    ordered = frame.assign(_year=frame["year"].fillna(-1)).sort_values("_year", kind="stable")
    latest = ordered.drop_duplicates("code", keep="last").drop(columns="_year")
    shares = frame.attrs.get("subgroup_shares", pd.DataFrame())
    if not shares.empty:
        shares = shares[shares["row"].isin(latest.index)]
    used = frame.attrs.get("source_fields", {})
    result = latest[["code", "population", "year"]]
    return Read(result, reading_notes(table) + notes, columns_report(table, used),
                {"shares": shares})


@_collected
def events_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return event_date, event_type, actor, fatalities, attributes and point geometry."""
    source = _points(upload, options)
    frame, notes = vectors.normalise_events(
        source, file_name=upload.original_name, date_field=options.field("date"),
        type_field=options.field("type"), actor_field=options.field("actor"),
        fatalities_field=options.field("fatalities"), date_format=options.date_format,
    )
    return Read(frame, reading_notes(source) + notes,
                columns_report(source, frame.attrs.get("source_fields", {})))


@_collected
def institutions_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return type, name, capacity, sensitive, attributes and point geometry."""
    source = _points(upload, options)
    frame, notes = vectors.normalise_institutions(
        source, file_name=upload.original_name,
        type_field=options.field("type"), name_field=options.field("name"),
        capacity_field=options.field("capacity"), sensitive_field=options.field("sensitive"),
    )
    if options.default_type:
        frame.loc[frame["type"] == "other", "type"] = options.default_type
    return Read(frame, reading_notes(source) + notes,
                columns_report(source, frame.attrs.get("source_fields", {})))


@_collected
def indicators_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return indicator metadata: code, name, dimension, polarity, cutoff, unit, target."""
    table = _table(upload, "indicators", options)
    frame, notes = vectors.normalise_indicators(table, file_name=upload.original_name,
                                                fields=options.fields)
    return Read(frame, reading_notes(table) + notes,
                columns_report(table, frame.attrs.get("source_fields", {})))


@_collected
def observations_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return long-form observations with canonical subgroups."""
    table = _table(upload, "observations", options)
    frame, notes = vectors.normalise_observations(table, file_name=upload.original_name,
                                                  fields=options.fields)
    return Read(frame, reading_notes(table) + notes,
                columns_report(table, frame.attrs.get("source_fields", {})))


@_collected
def priorities_from_upload(upload: UploadedFile, options: Any) -> Read:
    """Return locality_code, forum_date, rank, need."""
    table = _table(upload, "community priorities", options)
    frame, notes = vectors.normalise_priorities(
        table, file_name=upload.original_name, fields=options.fields,
        date_format=options.date_format)
    return Read(frame, reading_notes(table) + notes,
                columns_report(table, frame.attrs.get("source_fields", {})))
