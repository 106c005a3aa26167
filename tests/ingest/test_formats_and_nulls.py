"""Issue 11, defects 4, 5 and 8: null cells, the formats teams bring, and the dry run.

Every null/NaN/empty cell of every column of every kind is *missing*: it loads as missing
or is refused with file, row, field and problem, never a crash (a traceback in the CLI, a
500 from the API). The formats: .xlsx (first sheet, --sheet), GeoPackages with several
layers (--layer), CSVs with ';' and decimal commas, dates like 01/01/20 or 2020-1-5
(--date-format), a JSON array of features. The dry run writes nothing, not even a job.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import pandas as pd
import pytest
from shapely.geometry import Point, box
from stack_helpers import (
    REPO,
    Fresh,
    assert_nothing_left,
    run_cli,
    snapshot,
    square,
    upload,
    write_geojson,
    write_text,
)

from geo.errors import ValidationError
from tests.conftest import LiveServer


def base(fresh: Fresh, tmp: Path) -> None:
    """Load two level-1 units NL1, NL2 and the indicator nl_water."""
    fresh.load("localities", write_geojson(tmp / "nl_adm1.geojson", [
        ({"ADM1_PCODE": "NL1", "ADM1_EN": "One"}, square(40, 0, 1)),
        ({"ADM1_PCODE": "NL2", "ADM1_EN": "Two"}, square(41, 0, 1)),
    ]))
    fresh.load("indicators", write_text(tmp / "ind.csv", (
        "code,name,dimension,polarity,cutoff\nnl_water,Water,health,higher_is_better,50\n")))


# --- 4. nulls in every column of every kind ------------------------------------------------

# One good two-row table per kind; each test blanks one column in one row.
TABLES: dict[str, dict[str, list[Any]]] = {
    "population": {"code": ["NL1", "NL2"], "population": [10, 20], "year": [2020, 2020]},
    "events": {"event_date": ["2024-01-01", "2024-02-01"], "event_type": ["Battles", "Riots"],
               "actor1": ["A", "B"], "fatalities": [1, 0], "latitude": [0.5, 0.5],
               "longitude": [40.5, 41.5]},
    "institutions": {"name": ["H", "C"], "type": ["Hospital", "Clinic"], "capacity": [5, 2],
                     "sensitive": ["no", "yes"], "latitude": [0.5, 0.5],
                     "longitude": [40.5, 41.5]},
    "indicators": {"code": ["nl_a", "nl_b"], "name": ["A", "B"],
                   "dimension": ["food", "health"],
                   "polarity": ["higher_is_worse", "higher_is_better"], "cutoff": [1, 2],
                   "unit": ["%", "%"], "target": [0, 3]},
    "observations": {"locality_code": ["NL1", "NL2"], "indicator": ["nl_water", "nl_water"],
                     "period": ["2023", "2023"], "subgroup": ["all", "sex=female"],
                     "value": [1.5, 2.5], "sample_size": [10, 20], "source": ["s", "s"]},
    "priorities": {"locality_code": ["NL1", "NL2"], "forum_date": ["2024-01-01", "2024-01-02"],
                   "rank": [1, 1], "need": ["water", "roads"]},
}
CASES = [(kind, column) for kind, table in TABLES.items() for column in table]
BLANKS = {"empty": "", "spaces": "   ", "nan": float("nan"), "none": None}


def write_table(tmp: Path, kind: str, table: dict[str, list[Any]], fmt: str) -> Path:
    frame = pd.DataFrame(table)
    if fmt == "csv":
        path = tmp / f"{kind}.csv"
        frame.to_csv(path, index=False)
    elif fmt == "xlsx":
        path = tmp / f"{kind}.xlsx"
        frame.to_excel(path, index=False)
    else:
        path = tmp / f"{kind}.json"
        records = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
                   for r in frame.to_dict("records")]
        path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_a_blank_cell_anywhere_is_missing_never_a_crash(fresh: Fresh, tmp_path: Path,
                                                        fmt: str) -> None:
    base(fresh, tmp_path)
    outcomes: dict[tuple[str, str, str], str] = {}
    for kind, column in CASES:
        for blank_name, blank in BLANKS.items():
            if fmt == "csv" and blank_name in ("nan", "none"):
                continue  # a CSV has only text: "" and spaces are its blanks
            table = {k: list(v) for k, v in TABLES[kind].items()}
            table[column][1] = blank
            path = write_table(tmp_path, kind, table, fmt)
            before = snapshot(fresh.stack)
            try:
                fresh.load(kind, path)
                outcomes[(kind, column, blank_name)] = "loaded"
            except ValidationError as error:
                detail = error.details[0]
                assert detail["file"] == path.name, (kind, column, detail)
                assert detail.get("field") == column, (kind, column, detail)
                assert detail.get("row", detail.get("item")) in (3, 2), (kind, column, detail)
                assert "missing" in detail["problem"], (kind, column, detail)
                assert_nothing_left(fresh.stack, before)
                outcomes[(kind, column, blank_name)] = "refused"
    # Required roles are refused by name; the optional ones load as missing.
    refused = sorted({(k, c) for (k, c, _), o in outcomes.items() if o == "refused"})
    # Half a coordinate pair is refused (a row with neither is skipped as unlocated).
    assert refused == sorted([
        ("events", "event_date"), ("events", "latitude"), ("events", "longitude"),
        ("institutions", "latitude"), ("institutions", "longitude"), ("indicators", "code"),
        ("indicators", "dimension"),
        ("indicators", "polarity"), ("observations", "indicator"),
        ("observations", "locality_code"), ("observations", "period"),
        ("observations", "value"), ("population", "code"), ("population", "population"),
        ("priorities", "forum_date"), ("priorities", "locality_code"), ("priorities", "need"),
        ("priorities", "rank"),
    ]), refused


def test_osm_export_with_null_types_loads_over_http(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    osm = write_geojson(tmp_path / "healthsites.geojson", [
        ({"amenity": None, "healthcare": None, "name": None, "beds": None},
         {"type": "Point", "coordinates": [40.5, 0.5]}),
        ({"amenity": "hospital", "healthcare": "hospital", "name": "H", "beds": "12"},
         {"type": "Point", "coordinates": [41.5, 0.5]}),
        ({"amenity": "", "healthcare": "clinic", "name": "", "beds": ""},
         {"type": "Point", "coordinates": [41.2, 0.5]}),
    ])
    with LiveServer(fresh.stack.settings) as server, httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": fresh.stack.uploader_key},
            timeout=60) as client:
        response = upload(client, "institutions", osm)
    assert response.status_code == 201, response.text
    result = response.json()["result"]
    assert result["by_type"] == {"other": 2, "hospital": 1}
    assert any("(blank)" in w for w in result["warnings"])
    names = fresh.stack.rows("SELECT name, capacity FROM institutions ORDER BY id")
    assert [(r.name, r.capacity) for r in names] == [(None, None), ("H", 12), (None, None)]


def test_pandas_major_version_is_the_pinned_one() -> None:
    pins = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pandas_pin = next(p for p in pins if p.startswith("pandas"))
    major = int(pd.__version__.split(".")[0])
    assert re.fullmatch(rf"pandas>={major}\.\d+,<{major + 1}", pandas_pin), pandas_pin


# --- 5. formats ---------------------------------------------------------------------------------


def test_xlsx_first_sheet_by_default_and_sheet_by_name(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    path = tmp_path / "cod_ps.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"Note": ["read me"]}).to_excel(writer, sheet_name="README", index=False)
        pd.DataFrame({"ADM1_PCODE": ["#adm1+code", "NL1", "NL2"],
                      "T_TL": ["#population", 1234.0, 4321.0]}).to_excel(
            writer, sheet_name="adm1", index=False)
    refused = fresh.refuse("population", path)
    assert "no code column" in refused.message
    missing = fresh.refuse("population", path, sheet="adm9")
    assert "no sheet 'adm9' (the sheets are: README, adm1)" in missing.message
    result = fresh.load("population", path, sheet="adm1")
    assert result["rows"] == 2
    assert "read the sheet 'adm1' of 2 (README, adm1); choose another with --sheet" in (
        result["warnings"])
    assert dict(fresh.stack.rows("SELECT code, population FROM localities")) == {
        "NL1": 1234, "NL2": 4321}
    assert fresh.load("population", path, sheet="2")["rows"] == 2


def test_geopackage_with_several_layers(fresh: Fresh, tmp_path: Path) -> None:
    path = tmp_path / "cod_ab.gpkg"
    for level in (1, 2):
        gpd.GeoDataFrame({f"ADM{level}_PCODE": [f"GP{'1' * level}"],
                          f"ADM{level}_EN": [f"Level {level}"]},
                         geometry=[box(40, 0, 41, 1)], crs="EPSG:4326").to_file(
            path, layer=f"adm{level}", driver="GPKG")
    refused = fresh.refuse("localities", path)
    assert "holds 2 layers (adm1, adm2); choose one with --layer NAME" in refused.message
    wrong = fresh.refuse("localities", path, source_layer="adm3")
    assert "no layer 'adm3' (the layers are: adm1, adm2)" in wrong.message
    result = run_cli(fresh.stack, "localities", path, "--layer", "adm1")
    assert result.returncode == 0, result.stderr
    assert fresh.stack.scalar("SELECT name FROM localities WHERE code = 'GP1'") == "Level 1"
    csv = write_text(tmp_path / "ev.csv", "date,latitude,longitude\n2024-01-01,0.5,40.5\n")
    misused = run_cli(fresh.stack, "events", csv, "--layer", "acled")
    assert misused.returncode == 1 and "--layer-name" in misused.stderr


def test_semicolons_and_decimal_commas(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    table = write_text(tmp_path / "pop.csv", "code;population\nNL1;1.234,5\nNL2;12,25\n")
    result = fresh.load("population", table)
    assert any("decimal comma" in w for w in result["warnings"])
    assert dict(fresh.stack.rows("SELECT code, population FROM localities")) == {
        "NL1": 1234.5, "NL2": 12.25}
    dotted = write_text(tmp_path / "pop_dot.csv", "code;population\nNL1;1.5\nNL2;2.5\n")
    fresh.load("population", dotted, decimal=".")
    assert dict(fresh.stack.rows("SELECT code, population FROM localities")) == {
        "NL1": 1.5, "NL2": 2.5}
    explicit = write_text(tmp_path / "pop_tab.csv", "code\tpopulation\nNL1\t3,5\nNL2\t4\n")
    fresh.load("population", explicit, decimal=",")
    assert fresh.stack.scalar("SELECT population FROM localities WHERE code = 'NL1'") == 3.5


@pytest.mark.parametrize(("dates", "date_format", "expected"), [
    (("01/01/20", "31/12/21"), None, ("2020-01-01", "2021-12-31")),
    (("2020-1-5", "2021-11-15"), None, ("2020-01-05", "2021-11-15")),
    (("01/02/20", "03/04/20"), "%m/%d/%y", ("2020-01-02", "2020-03-04")),
])
def test_dates_teams_write(fresh: Fresh, tmp_path: Path, dates: tuple[str, str],
                           date_format: str | None, expected: tuple[str, str]) -> None:
    base(fresh, tmp_path)
    events = write_text(tmp_path / "ev.csv", "event_date,latitude,longitude\n" + "".join(
        f"{d},0.5,40.5\n" for d in dates))
    options = {"date_format": date_format} if date_format else {}
    fresh.load("events", events, **options)
    stored = [r[0].isoformat() for r in fresh.stack.rows(
        "SELECT event_date FROM events ORDER BY event_date")]
    assert tuple(stored) == expected


def test_a_date_refusal_names_the_format_tried(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    events = write_text(tmp_path / "ev.csv", "event_date,latitude,longitude\n"
                                             "2024-01-05,0.5,40.5\nsoon,0.5,40.5\n")
    error = fresh.refuse("events", events)
    assert error.details[0]["row"] == 3 and error.details[0]["field"] == "event_date"
    assert "cannot parse 'soon' as a date (tried the format ISO8601" in error.message
    forced = fresh.refuse("events", events, date_format="%d/%m/%Y")
    assert "tried the format %d/%m/%Y" in forced.message


def test_json_array_of_features_and_json_records(fresh: Fresh, tmp_path: Path) -> None:
    features = [{"type": "Feature", "properties": {"ADM1_PCODE": "JA1", "ADM1_EN": "Array"},
                 "geometry": square(40, 0)}]
    path = tmp_path / "array.json"
    path.write_text(json.dumps(features))
    assert fresh.load("localities", path)["rows"] == 1
    records = tmp_path / "pop.json"
    records.write_text(json.dumps({"DataList": [{"pcode": "JA1", "population": 77}]}))
    assert fresh.load("population", records)["rows"] == 1
    assert fresh.stack.scalar("SELECT population FROM localities WHERE code = 'JA1'") == 77
    points = tmp_path / "sites.json"
    points.write_text(json.dumps([{"name": "H", "type": "hospital", "lat": 0.1, "lon": 40.1}]))
    assert fresh.load("institutions", points)["by_type"] == {"hospital": 1}


def test_old_xls_is_refused_with_what_to_do(fresh: Fresh, tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512))
    assert "save it as .xlsx or CSV" in fresh.refuse("population", path).message


# --- 8. the dry run ----------------------------------------------------------------------------


def test_check_reports_and_writes_nothing(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    before = snapshot(fresh.stack)
    jobs = fresh.stack.scalar("SELECT count(*) FROM jobs")
    good = write_text(tmp_path / "pop.csv", "pcode,T_TL,extra\nNL1,5,x\nNL2,6,y\n")
    result = run_cli(fresh.stack, "population", good)  # sanity: the real load works
    assert result.returncode == 0
    before, jobs = snapshot(fresh.stack), fresh.stack.scalar("SELECT count(*) FROM jobs")
    ok = _check(fresh, "population", good)
    assert ok.returncode == 0, ok.stderr
    assert "pop.csv would load as population" in ok.stdout
    assert "column 'pcode' read as code" in ok.stdout
    assert "column 'T_TL' read as population" in ok.stdout
    assert "other columns (kept as attributes or ignored): extra" in ok.stdout
    bad = write_text(tmp_path / "bad.csv", "code,population\nNL1,abc\nXX9,\nNL2,-1\n")
    refused = _check(fresh, "population", bad)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    problems = [line for line in refused.stdout.splitlines() if "problem:" in line]
    assert len(problems) == 3, refused.stdout  # every problem of every row, at once
    assert "row: 2, field: population, problem: 'abc' is not a number" in refused.stdout
    assert "row: 3, field: population, problem: the value is missing" in refused.stdout
    assert "row: 4, field: population, problem: -1 is below the minimum of 0" in refused.stdout
    assert_nothing_left(fresh.stack, before)
    assert fresh.stack.scalar("SELECT count(*) FROM jobs") == jobs


def test_dry_run_over_http(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    before = snapshot(fresh.stack)
    sites = write_text(tmp_path / "sites.csv", "name,type,latitude,longitude\nH,Hospital,0.5,"
                                               "40.5\n")
    unknown = write_text(tmp_path / "obs.csv", "locality_code,indicator,period,value\n"
                                               "ZZ1,nl_water,2023,5\n")
    with LiveServer(fresh.stack.settings) as server, httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": fresh.stack.uploader_key},
            timeout=60) as client:
        response = client.post("/api/v1/uploads/institutions", params={"dry_run": "true"},
                               files={"file": ("sites.csv", sites.read_bytes())},
                               data={"field": "name=name"})
        refused = client.post("/api/v1/uploads/observations", params={"dry_run": "true"},
                              files={"file": ("obs.csv", unknown.read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] and body["would_load"]["by_type"] == {"hospital": 1}
    assert body["would_load"]["layer"] == "sites"
    assert body["would_load"]["columns"]["recognised"]["lat"] == "latitude"
    assert refused.status_code == 200 and not refused.json()["ok"]
    assert refused.json()["problems"][0]["problem"].startswith("unknown locality code 'ZZ1'")
    assert_nothing_left(fresh.stack, before)
    assert fresh.stack.scalar("SELECT count(*) FROM jobs WHERE kind LIKE 'ingest:%' AND "
                              "params->>'file' IN ('sites.csv', 'obs.csv')") == 0


def test_dry_run_of_a_raster_writes_no_file(fresh: Fresh, tmp_path: Path) -> None:
    from ingest_helpers import write_tif

    base(fresh, tmp_path)
    before = snapshot(fresh.stack)
    flood = write_tif(tmp_path / "flood.tif")
    checked = _check(fresh, "hazard", flood, "--name", "flood", "--hazard-kind", "flood")
    assert checked.returncode == 0, checked.stderr
    assert '"version": 1' in checked.stdout
    assert_nothing_left(fresh.stack, before)


def _check(fresh: Fresh, kind: str, path: Path, *args: str) -> Any:
    import subprocess
    import sys

    from stack_helpers import cli_env

    return subprocess.run([sys.executable, "-m", "api.cli", "check", kind, str(path), *args],
                          cwd=REPO, env=cli_env(fresh.stack), capture_output=True, text=True,
                          timeout=180, check=False)


def test_points_outside_are_kept(fresh: Fresh, tmp_path: Path) -> None:
    base(fresh, tmp_path)
    frame = gpd.GeoDataFrame({"name": ["far"], "type": ["clinic"]}, geometry=[Point(60, 10)],
                             crs="EPSG:4326")
    path = tmp_path / "far.geojson"
    frame.to_file(path, driver="GeoJSON")
    assert fresh.load("institutions", path)["rows"] == 1


