"""Defect 9: names that a spreadsheet would run as formulas are defused in every CSV export.

The region's localities are named `=HYPERLINK(...)`, `+1+2`, `-2+3`, `@SUM(...)` and a
DDE `=cmd|...`; the rankings CSV is fetched over real HTTP and read back with the csv module
as a spreadsheet would. Before the fix these names were written raw.
"""

from __future__ import annotations

import csv
import io
import json

from security_helpers import HOSTILE_NAMES, SecurityStack

# OWASP's list of cell starts that spreadsheets treat as formulas.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_rows(stack: SecurityStack, **params: object) -> list[dict[str, str]]:
    with stack.client() as client:
        response = client.get("/api/v1/rankings.csv", params={"limit": 100, **params})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(response.text)))
    header, hxl, body = lines[0], lines[1], lines[2:]
    assert hxl[0] == "#loc+code"
    return [dict(zip(header, row, strict=True)) for row in body]


def test_formula_names_are_prefixed_with_a_quote(security_stack: SecurityStack) -> None:
    rows = _csv_rows(security_stack, level=2)
    names = {row["code"]: row["name"] for row in rows}
    expected = dict(zip(security_stack.region.adm2, HOSTILE_NAMES, strict=True))
    assert set(names) == set(expected)
    for code, raw in expected.items():
        assert names[code] == ("'" + raw if raw.startswith(FORMULA_STARTS) else raw), code
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            if cell.startswith("-"):
                float(cell)  # only plain negative numbers may start with a minus


def test_negative_numbers_stay_numbers(security_stack: SecurityStack) -> None:
    rows = _csv_rows(security_stack)
    # The region lies south of the equator: every latitude is a plain negative number.
    latitudes = [float(row["lat"]) for row in rows]
    assert latitudes and all(lat < 0 for lat in latitudes)
    assert all(not row["lat"].startswith("'") for row in rows)
    assert all(float(row["composite"]) >= 0 for row in rows if row["composite"])


def test_geojson_export_keeps_names_as_they_are(security_stack: SecurityStack) -> None:
    # Only spreadsheets run formulas; GeoJSON consumers get the name unchanged.
    with security_stack.client() as client:
        collection = json.loads(client.get("/api/v1/rankings.geojson",
                                           params={"level": 2, "limit": 100}).text)
    names = {f["properties"]["name"] for f in collection["features"]}
    assert '=HYPERLINK("http://evil.example/","click")' in names
    assert "+1+2" in names


def test_tab_and_carriage_return_starts_are_defused_too() -> None:
    # The ingest trims blanks around names, so these cannot arrive through a boundary file;
    # the CSV writer defuses them anyway, whatever column they reach.
    from geo.read.exports import csv_stream

    item = {"code": "X1", "name": "\tTabbed", "parent_code": "\r=1+1", "level": 2,
            "rank": 1, "composite": -0.0, "pillars": {}, "top_drivers": ["-x", "y"],
            "centroid": [30.5, -2.25]}
    rows = list(csv.reader(io.StringIO("".join(csv_stream([item])))))
    row = dict(zip(rows[0], rows[2], strict=True))
    assert row["name"] == "'\tTabbed" and row["parent_code"] == "'\r=1+1"
    assert row["top_drivers"] == "'-x;y"
    assert row["lat"] == "-2.25" and row["composite"] == "-0.0"
