"""Exports of rankings: CSV with an HXL hashtag row, GeoJSON and GeoPackage, written row by row."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

# Column, HXL hashtag (https://hxlstandard.org): a second header row other tools understand.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("code", "#loc+code"), ("name", "#loc+name"), ("level", "#loc+level"),
    ("parent_code", "#loc+code+parent"), ("rank", "#indicator+rank"),
    ("rank_low", "#indicator+rank+low"), ("rank_high", "#indicator+rank+high"),
    ("composite", "#severity+composite"), ("hazard_exposure", "#severity+hazard"),
    ("vulnerability", "#severity+vulnerability"),
    ("lack_of_coping_capacity", "#severity+coping"),
    ("stressed_dimensions", "#indicator+num+stressed"),
    ("compounded", "#indicator+bool+compounded"), ("hotspot", "#indicator+text+hotspot"),
    ("quadrant", "#indicator+text+quadrant"), ("completeness", "#indicator+pct+complete"),
    ("top_drivers", "#indicator+text+drivers"),
    # Deprivation per person (Alkire-Foster, from household microdata) with 95 % intervals,
    # and who is behind beyond noise; blank where withheld or not measured.
    ("mpi_method", "#indicator+text+mpi+method"),
    ("mpi_h", "#indicator+pct+mpi+headcount"),
    ("mpi_h_ci_low", "#indicator+pct+mpi+headcount+ci_low"),
    ("mpi_h_ci_high", "#indicator+pct+mpi+headcount+ci_high"),
    ("mpi_a", "#indicator+pct+mpi+intensity"),
    ("mpi_a_ci_low", "#indicator+pct+mpi+intensity+ci_low"),
    ("mpi_a_ci_high", "#indicator+pct+mpi+intensity+ci_high"),
    ("mpi_m0", "#indicator+mpi+m0"), ("mpi_m0_ci_low", "#indicator+mpi+m0+ci_low"),
    ("mpi_m0_ci_high", "#indicator+mpi+m0+ci_high"),
    ("mpi_reliability", "#indicator+text+mpi+reliability"),
    ("groups_behind", "#indicator+num+groups_behind"),
    ("possible_gaps", "#indicator+num+possible_gaps"),
    ("furthest_behind", "#indicator+text+furthest_behind"),
    ("lon", "#geo+lon"), ("lat", "#geo+lat"),
)
BATCH = 1000
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection: a
# locality named `=HYPERLINK(...)` becomes a live link). OWASP's advice: prefix such a cell
# with a single quote, which spreadsheets show as text. A cell that is only a number
# ("-0.5", "+3") is a value, not a formula, and is left alone so numbers stay numbers.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def spreadsheet_safe(value: Any) -> Any:
    """Return a CSV cell that a spreadsheet shows as text rather than runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) \
            and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def flat_row(item: dict[str, Any]) -> dict[str, Any]:
    """Return a ranking item as flat columns (pillars spread, drivers joined)."""
    pillars = item.get("pillars") or {}
    return {
        **{key: item.get(key) for key, _ in COLUMNS},
        **(item.get("subgroup_summary") or {}),
        **{key: pillars.get(key) for key in ("hazard_exposure", "vulnerability",
                                              "lack_of_coping_capacity")},
        "top_drivers": ";".join(item.get("top_drivers") or []),
        "lon": (item.get("centroid") or [None, None])[0],
        "lat": (item.get("centroid") or [None, None])[1],
    }


def csv_stream(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield CSV text: header, HXL hashtag row, then one line per item (formulas defused)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([key for key, _ in COLUMNS])
    writer.writerow([tag for _, tag in COLUMNS])
    for count, item in enumerate(items, start=1):
        row = flat_row(item)
        writer.writerow(["" if row[key] is None else spreadsheet_safe(row[key])
                         for key, _ in COLUMNS])
        if count % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def geojson_stream(items: Iterable[dict[str, Any]]) -> Iterator[str]:
    """Yield a GeoJSON FeatureCollection one feature at a time."""
    yield '{"type": "FeatureCollection", "features": ['
    for index, item in enumerate(items):
        properties = {key: value for key, value in flat_row(item).items()
                      if key not in ("lon", "lat")}
        feature = {"type": "Feature", "id": item["code"], "properties": properties,
                   "geometry": json.loads(item["geojson"])}
        yield ("," if index else "") + json.dumps(feature, ensure_ascii=False)
    yield "]}"


def write_geopackage(items: Iterable[dict[str, Any]], path: Path) -> int:
    """Write the items to a GeoPackage layer in batches; return how many were written."""
    written, batch = 0, []
    for item in items:
        batch.append(item)
        if len(batch) == BATCH:
            written += _append(batch, path, first=written == 0)
            batch = []
    if batch or written == 0:
        written += _append(batch, path, first=written == 0)
    return written


def _append(batch: list[dict[str, Any]], path: Path, first: bool) -> int:
    rows = [{k: v for k, v in flat_row(item).items() if k not in ("lon", "lat")}
            for item in batch]
    geometries = [shapely.from_geojson(item["geojson"]) for item in batch]
    frame = gpd.GeoDataFrame(pd.DataFrame(rows, columns=[k for k, _ in COLUMNS
                                                          if k not in ("lon", "lat")]),
                             geometry=geometries, crs="EPSG:4326")
    frame.to_file(path, layer="ranking", driver="GPKG", engine="pyogrio",
                  mode="w" if first else "a")
    return len(batch)
