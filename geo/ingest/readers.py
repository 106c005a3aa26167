"""From an opened upload to the clean frame each loader writes: the file layer, per kind."""

from __future__ import annotations

import re
from typing import Any

import geopandas as gpd
import pandas as pd

from geo.errors import ValidationError
from geo.ingest import vectors
from geo.ingest.files import VECTOR_KINDS, UploadedFile

# Names in other languages beside the main one, e.g. ADM3_AR, ADM2_FR (OCHA COD style).
OTHER_NAME = re.compile(r"^ADM(\d)_(?!PCODE|EN$|REF|NAME)([A-Z]{2})$", re.IGNORECASE)


def _points(upload: UploadedFile) -> gpd.GeoDataFrame:
    if upload.kind in VECTOR_KINDS:
        return vectors.read_vector(upload, expected_geometry="point")
    return vectors.points_from_table(vectors.read_table(upload), file_name=upload.original_name)


def _table(upload: UploadedFile, kind: str) -> pd.DataFrame:
    if upload.kind in VECTOR_KINDS or upload.is_raster:
        raise ValidationError(
            f"{upload.original_name}: {kind} come as a CSV (or YAML) table, not a "
            f"{upload.kind.value} file",
            [{"file": upload.original_name,
              "problem": f"expected a table, got {upload.kind.value}"}],
        )
    return vectors.read_table(upload)


def localities_from_upload(
    upload: UploadedFile, options: Any
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Return code, name, level, parent_code, population, names and geometry, plus notes."""
    if upload.kind not in VECTOR_KINDS:
        raise ValidationError(
            f"{upload.original_name}: boundaries must be a vector file (GeoJSON, GeoPackage, "
            "zipped shapefile or FlatGeobuf)",
            [{"file": upload.original_name, "problem": f"got {upload.kind.value}"}],
        )
    source = vectors.read_vector(upload, expected_geometry="polygon")
    frame, notes = vectors.normalise_localities(
        source, file_name=upload.original_name, level=options.level,
        code_field=options.code_field, name_field=options.name_field,
        parent_field=options.parent_field, population_field=options.population_field,
    )
    frame["names"] = _other_names(source)
    return frame, notes


def _other_names(source: pd.DataFrame) -> pd.Series:
    columns = {col: OTHER_NAME.match(str(col)) for col in source.columns}
    found = {col: match.group(2).lower() for col, match in columns.items() if match}
    if not found:
        return pd.Series([{} for _ in range(len(source))], index=source.index)
    return pd.Series(
        [{lang: str(row[col]) for col, lang in found.items() if pd.notna(row[col])}
         for _, row in source[list(found)].iterrows()],
        index=source.index,
    )


def population_from_upload(upload: UploadedFile, options: Any) -> pd.DataFrame:
    """Return one population per locality code (the latest year when several are given)."""
    table = _table(upload, "population tables")
    frame, _notes = vectors.normalise_population_table(
        table, file_name=upload.original_name, year=options.year
    )
    ordered = frame.assign(_year=frame["year"].fillna(-1)).sort_values("_year", kind="stable")
    latest = ordered.drop_duplicates("code", keep="last").drop(columns="_year")
    return latest[["code", "population", "year"]]


def events_from_upload(upload: UploadedFile, options: Any) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Return event_date, event_type, actor, fatalities, attributes and point geometry."""
    frame, notes = vectors.normalise_events(_points(upload), file_name=upload.original_name)
    return frame, notes


def institutions_from_upload(
    upload: UploadedFile, options: Any
) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Return type, name, capacity, sensitive, attributes and point geometry."""
    frame, notes = vectors.normalise_institutions(
        _points(upload), file_name=upload.original_name,
        type_field=options.type_field, name_field=options.name_field,
    )
    if options.default_type:
        frame.loc[frame["type"] == "other", "type"] = options.default_type
    return frame, notes


def indicators_from_upload(upload: UploadedFile) -> pd.DataFrame:
    """Return indicator metadata: code, name, dimension, polarity, cutoff, unit, target."""
    return vectors.normalise_indicators(_table(upload, "indicators"),
                                        file_name=upload.original_name).frame


def observations_from_upload(upload: UploadedFile) -> pd.DataFrame:
    """Return long-form observations with canonical subgroups."""
    return vectors.normalise_observations(_table(upload, "observations"),
                                          file_name=upload.original_name).frame


def priorities_from_upload(upload: UploadedFile) -> pd.DataFrame:
    """Return locality_code, forum_date, rank, need."""
    return vectors.normalise_priorities(_table(upload, "community priorities"),
                                        file_name=upload.original_name).frame
