"""Compare two stored score runs locality by locality (stored side of geo.analysis.compare)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from geo.analysis.compare import comparability, compare_results
from geo.analysis.methodology import parse_methodology
from geo.errors import NotFoundError, ValidationError

RESULTS_SQL = text(
    "SELECT l.code, l.name, l.level, l.parent_code, r.composite, r.rank, "
    "r.stressed_dimensions, r.compounded, r.pillars, r.dimensions FROM score_results r "
    "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = :run "
    "AND (CAST(:level AS integer) IS NULL OR l.level = :level)")
NUMBERS = ("composite", "rank", "stressed_dimensions")
COLUMNS = ("code", "name", "level", "parent_code",
           *(f"{n}_{w}" for n in NUMBERS for w in ("before", "after", "change")),
           "compounded_before", "compounded_after", "compounded_change")


def _run(conn: Connection, run_id: int) -> dict[str, Any]:
    row = conn.execute(text(
        "SELECT r.id, r.status, r.completed_at, m.id AS mid, m.name, m.version, m.document "
        "FROM score_runs r JOIN methodologies m ON m.id = r.methodology_id WHERE r.id = :id"),
        {"id": run_id}).first()
    if row is None:
        raise NotFoundError(f"no run with id {run_id}")
    if row.status != "succeeded":
        raise NotFoundError(f"run {run_id} has not completed (status {row.status})")
    return {"id": row.id, "completed_at": row.completed_at.isoformat(),
            "methodology": {"id": row.mid, "name": row.name, "version": row.version},
            "document": row.document}


def compare_runs(conn: Connection, before: int, after: int, level: int | None = None
                 ) -> dict[str, Any]:
    """Return the comparison of two succeeded runs: comparability, summary and items."""
    if before == after:
        raise ValidationError("compare two different runs", {"field": "b"})
    runs = [_run(conn, before), _run(conn, after)]
    frames = [pd.read_sql(RESULTS_SQL, conn, params={"run": r["id"], "level": level})
              .set_index("code") for r in runs]
    names = pd.concat([f[["name", "level", "parent_code"]] for f in frames])
    names = names[~names.index.duplicated()]
    diff = compare_results(frames[0], frames[1])
    diff = names.reindex(diff.index).join(diff)
    diff = diff.sort_values(["level", "composite_change"], ascending=[True, False],
                            na_position="last")
    check = comparability(parse_methodology(runs[0]["document"]),
                          parse_methodology(runs[1]["document"]))
    statuses = diff["compounded_change"]
    return {
        "before": {k: v for k, v in runs[0].items() if k != "document"},
        "after": {k: v for k, v in runs[1].items() if k != "document"},
        "level": level,
        "comparable": check["comparable"],
        "caveats": check["reasons"],
        "summary": {
            "localities": len(diff),
            "entered_compounded": sorted(statuses.index[statuses == "entered"].tolist()),
            "left_compounded": sorted(statuses.index[statuses == "left"].tolist()),
            "composite_change_mean": _number(diff["composite_change"].mean()),
            "improved": int((diff["composite_change"] < 0).sum()),
            "worsened": int((diff["composite_change"] > 0).sum()),
        },
        "items": [_item(code, row) for code, row in diff.iterrows()],
    }


def _number(value: Any) -> Any:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, float):
        return round(value, 6)
    return value.item() if hasattr(value, "item") else value


def _item(code: str, row: pd.Series) -> dict[str, Any]:
    item: dict[str, Any] = {"code": code}
    for column in COLUMNS[1:]:
        value = row[column]
        item[column] = None if value is None or (not isinstance(value, str | bool)
                                                 and pd.isna(value)) else _number(value)
    for column in ("rank_before", "rank_after", "rank_change", "stressed_dimensions_before",
                   "stressed_dimensions_after", "stressed_dimensions_change", "level"):
        if item[column] is not None:
            item[column] = int(item[column])
    item["pillars_change"] = row["pillars_change"]
    item["dimensions_change"] = row["dimensions_change"]
    return item


def compare_csv(comparison: dict[str, Any]) -> Iterator[str]:
    """Yield the comparison as CSV: a header, then one row per locality (pillars spread).

    The last column, `comparable`, repeats whether the two runs share fixed goalposts.
    """
    pillars = sorted({k for i in comparison["items"] for k in i["pillars_change"]})
    dims = sorted({k for i in comparison["items"] for k in i["dimensions_change"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    # every row says whether the runs compare (a spreadsheet keeps no response headers)
    comparable = str(comparison["comparable"]).lower()
    writer.writerow([*COLUMNS, *(f"pillar_change.{p}" for p in pillars),
                     *(f"dimension_change.{d}" for d in dims), "comparable"])
    for item in comparison["items"]:
        values = [item.get(c) for c in COLUMNS]
        values += [item["pillars_change"].get(p) for p in pillars]
        values += [item["dimensions_change"].get(d) for d in dims]
        values.append(comparable)
        writer.writerow(["" if v is None else v for v in values])
    yield buffer.getvalue()


def compare_geojson(conn: Connection, comparison: dict[str, Any]) -> Iterator[str]:
    """Yield the comparison as a GeoJSON FeatureCollection (outlines from the localities)."""
    codes = [item["code"] for item in comparison["items"]]
    shapes = dict(conn.execute(text(
        "SELECT code, ST_AsGeoJSON(geom, 6) FROM localities WHERE code = ANY(:codes)"),
        {"codes": codes}).all())
    head = {k: comparison[k] for k in ("before", "after", "level", "comparable", "caveats")}
    yield '{"type": "FeatureCollection", "comparison": ' + json.dumps(head) + ', "features": ['
    for index, item in enumerate(comparison["items"]):
        properties = {k: v for k, v in item.items() if k != "code"}
        feature = {"type": "Feature", "id": item["code"],
                   "properties": {"code": item["code"], **properties},
                   "geometry": json.loads(shapes[item["code"]]) if item["code"] in shapes
                   else None}
        yield ("," if index else "") + json.dumps(feature, ensure_ascii=False)
    yield "]}"
