"""Issue 11: the files teams actually have load without reading the code.

One test (or a few) per defect of the issue, on generated COD-style fixtures, each in a
database of its own (`fresh`), loaded in the order users load data: boundaries first (here
often only the lowest level), then population, then the rest. The real files of
../shared/data are in test_country_real_files.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from ingest_helpers import write_tif
from rasterio.transform import from_origin
from stack_helpers import (
    REPO,
    Fresh,
    assert_nothing_left,
    cli_env,
    cli_summary,
    run_cli,
    snapshot,
    square,
    write_geojson,
    write_text,
)

from geo.errors import NotFoundError
from geo.ingest.layers import delete_named_layer, list_named_layers
from geo.runs.methodologies import ensure_methodology
from tests.conftest import LiveServer

# A made-up country "QX": 2 regions (adm1), 4 districts (adm2), 8 communes (adm3).
REGIONS = {"QX01": ("Nord", "Norte"), "QX02": ("Sud", "Sur")}
DISTRICTS = {"QX0101": "QX01", "QX0102": "QX01", "QX0201": "QX02", "QX0202": "QX02"}


def commune_code(district: str, number: int) -> str:
    return f"{district}{number:02d}"


def adm3_file(tmp: Path, *, with_parents: bool = True, name: str = "qx_adm3.geojson",
              spanish: bool = True) -> Path:
    """Write a COD adm3 file: 8 communes in a 4 × 2 grid, with ADM2/ADM1/ADM0 columns."""
    features = []
    for d_index, (district, region) in enumerate(DISTRICTS.items()):
        for number in (1, 2):
            code = commune_code(district, number)
            props: dict[str, Any] = {"ADM3_PCODE": code, "ADM3_EN": f"Commune {code}"}
            if spanish:
                props["ADM3_ES"] = f"Comuna {code}"
            if with_parents:
                props.update({
                    "ADM2_PCODE": district, "ADM2_EN": f"District {district}",
                    "ADM1_PCODE": region, "ADM1_EN": REGIONS[region][0],
                    "ADM0_PCODE": "QX", "ADM0_EN": "Qx Republic",
                })
                if spanish:
                    props.update({"ADM2_ES": f"Distrito {district}",
                                  "ADM1_ES": REGIONS[region][1], "ADM0_ES": "República Qx"})
            features.append((props, square(10 + d_index * 0.2 + (number - 1) * 0.1, 5.0)))
    return write_geojson(tmp / name, features)


def adm1_file(tmp: Path) -> Path:
    """Write the real adm1 file of QX: the same two regions, with their own outlines."""
    return write_geojson(tmp / "qx_adm1.geojson", [
        ({"ADM1_PCODE": "QX01", "ADM1_EN": "Nord (official)", "ADM0_PCODE": "QX"},
         square(10.0, 5.0, 0.4)),
        ({"ADM1_PCODE": "QX02", "ADM1_EN": "Sud (official)", "ADM0_PCODE": "QX"},
         square(10.4, 5.0, 0.4)),
    ])


def level_counts(fresh: Fresh) -> dict[int, int]:
    return dict(fresh.stack.rows("SELECT level, count(*) FROM localities GROUP BY level"))


# --- 1. parents that are not loaded -----------------------------------------------------


def test_one_cod_adm3_file_builds_the_whole_hierarchy(fresh: Fresh, tmp_path: Path) -> None:
    result = fresh.load("localities", adm3_file(tmp_path))
    assert level_counts(fresh) == {0: 1, 1: 2, 2: 4, 3: 8}
    assert result["created_ancestors"] == {"0": 1, "1": 2, "2": 4}
    assert any("created 1 level-0 unit, 2 level-1 units, 4 level-2 units from the parent "
               "columns" in w for w in result["warnings"]), result["warnings"]
    tree = dict(fresh.stack.rows("SELECT code, parent_code FROM localities"))
    assert tree["QX010102"] == "QX0101" and tree["QX0101"] == "QX01" and tree["QX01"] == "QX"
    assert tree["QX"] is None
    region = fresh.stack.rows("SELECT name, derived, ST_Area(geom) AS area FROM localities "
                              "WHERE code = 'QX01'")[0]
    # The dissolved region is the union of its four communes (4 squares of 0.1°).
    assert (region.name, region.derived) == ("Nord", True)
    assert region.area == pytest.approx(0.04, rel=1e-6)


def test_real_parent_file_replaces_the_dissolved_units(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    result = fresh.load("localities", adm1_file(tmp_path))
    assert result["replaced_derived"] == 2 and result["new"] == 0
    rows = {r.code: r for r in fresh.stack.rows(
        "SELECT code, name, derived, ST_Area(geom) AS area, names FROM localities "
        "WHERE level = 1")}
    assert rows["QX01"].name == "Nord (official)" and not rows["QX01"].derived
    assert rows["QX01"].area == pytest.approx(0.16, rel=1e-6)
    # The Spanish name the adm3 file gave the region stays; the file's English one wins.
    assert rows["QX01"].names == {"en": "Nord (official)", "es": "Norte"}
    assert level_counts(fresh) == {0: 1, 1: 2, 2: 4, 3: 8}
    # Tiles follow the new outline.
    assert fresh.stack.scalar(
        "SELECT count(*) FROM locality_tile_geometry t JOIN localities l ON l.id = t.locality_id"
        " WHERE l.code = 'QX01' AND t.name = 'Nord (official)'") == 1


def test_adm2_file_before_its_adm1_file_is_accepted(fresh: Fresh, tmp_path: Path) -> None:
    adm2 = write_geojson(tmp_path / "adm2.geojson", [
        ({"ADM2_PCODE": "QX0101", "ADM2_EN": "A", "ADM1_PCODE": "QX01", "ADM1_EN": "Nord"},
         square(10, 5)),
        ({"ADM2_PCODE": "QX0201", "ADM2_EN": "B", "ADM1_PCODE": "QX02", "ADM1_EN": "Sud"},
         square(10.1, 5)),
    ])
    result = fresh.load("localities", adm2)
    assert result["created_ancestors"] == {"1": 2}
    assert level_counts(fresh) == {1: 2, 2: 2}


# --- 2. names from the wrong level --------------------------------------------------------


def test_each_level_keeps_its_own_names_in_every_language(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    names = dict(fresh.stack.rows("SELECT code, names FROM localities"))
    assert names["QX010101"] == {"en": "Commune QX010101", "es": "Comuna QX010101"}
    assert names["QX0101"] == {"en": "District QX0101", "es": "Distrito QX0101"}
    assert names["QX02"] == {"en": "Sud", "es": "Sur"}
    assert names["QX"] == {"en": "Qx Republic", "es": "República Qx"}
    # No commune carries the country's (or its region's) Spanish name.
    assert not any(v.get("es") in ("República Qx", "Norte", "Sur")
                   for code, v in names.items() if len(code) == 8)


# --- 3. re-uploads that clobber ------------------------------------------------------------


def test_reloading_codes_without_names_keeps_the_names(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    bare = write_geojson(tmp_path / "codes_only.geojson", [
        ({"ADM3_PCODE": "QX010101"}, square(10, 5)),
        ({"ADM3_PCODE": "QX010102", "ADM3_EN": None, "ADM3_ES": "  "}, square(10.1, 5)),
    ])
    result = fresh.load("localities", bare)
    assert result["updated"] == 2
    rows = {r.code: r for r in fresh.stack.rows(
        "SELECT code, name, names, parent_code FROM localities WHERE level = 3")}
    assert rows["QX010101"].name == "Commune QX010101"
    assert rows["QX010102"].names == {"en": "Commune QX010102", "es": "Comuna QX010102"}
    # A file without the parent column leaves the stored parent alone too.
    assert rows["QX010101"].parent_code == "QX0101"


def facilities_csv(tmp: Path, points: list[tuple[float, float]], name: str = "sites.csv",
                   kind: str = "Health Centre") -> Path:
    lines = ["name,type,latitude,longitude"]
    lines += [f"Site {i},{kind},{lat},{lon}" for i, (lon, lat) in enumerate(points)]
    return write_text(tmp / name, "\n".join(lines) + "\n")


def test_reloading_an_inventory_replaces_it(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    sites = facilities_csv(tmp_path, [(10.05, 5.05), (10.45, 5.05), (10.65, 5.05)])
    first = fresh.load("institutions", sites)
    again = fresh.load("institutions", sites)
    assert (first["layer"], first["version"], again["version"]) == ("sites", 1, 2)
    assert again["replaced"] == 3
    assert fresh.stack.scalar("SELECT count(*) FROM institutions") == 3
    other = fresh.load("institutions", facilities_csv(tmp_path, [(10.1, 5.1)], "other.csv"))
    assert other["layer"] == "other"
    assert fresh.stack.scalar("SELECT count(*) FROM institutions") == 4
    named = fresh.load("institutions", sites, layer_name="other")
    assert named["replaced"] == 1
    assert fresh.stack.scalar("SELECT count(*) FROM institutions") == 6


def test_reloading_events_replaces_the_layer(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    events = write_text(tmp_path / "acled.csv", (
        "event_date,event_type,fatalities,latitude,longitude\n"
        "2024-01-05,Battles,2,5.05,10.05\n2024-02-05,Riots,0,5.05,10.25\n"))
    fresh.load("events", events)
    again = fresh.load("events", events)
    assert again["version"] == 2 and again["replaced"] == 2
    assert fresh.stack.scalar("SELECT count(*) FROM events") == 2


def test_layers_list_and_delete_from_the_cli(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    fresh.load("institutions", facilities_csv(tmp_path, [(10.05, 5.05)]))
    flood = write_tif(tmp_path / "flood.tif", np.ones((10, 10), dtype="float32"),
                      transform=from_origin(10, 5.1, 0.1, 0.01))
    fresh.load("hazard", flood, name="flood depth", kind="flood")
    env = cli_env(fresh.stack)
    listed = subprocess.run([sys.executable, "-m", "api.cli", "layers", "list"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "institutions  sites  (version 1, 1 institutions, from sites.csv)" in listed.stdout
    assert "hazard        flood depth  (version 1, 1 versions, from flood.tif)" in listed.stdout
    path = fresh.stack.scalar("SELECT path FROM raster_versions")
    deleted = subprocess.run([sys.executable, "-m", "api.cli", "layers", "delete", "hazard",
                              "flood depth"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted the hazard layer 'flood depth' (1 versions)" in deleted.stdout
    assert not Path(path).exists()
    assert fresh.stack.scalar("SELECT count(*) FROM raster_layers") == 0
    missing = subprocess.run([sys.executable, "-m", "api.cli", "layers", "delete", "events",
                              "nothing"], cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=120, check=False)
    assert missing.returncode == 1 and "no events layer called 'nothing'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_delete_route_needs_admin_and_waits_for_runs(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    fresh.load("institutions", facilities_csv(tmp_path, [(10.05, 5.05)]))
    with LiveServer(fresh.stack.settings) as server:
        def delete(key: str) -> httpx.Response:
            return httpx.delete(f"{server.base_url}/api/v1/layers/institutions/sites",
                                headers={"X-API-Key": key}, timeout=60)

        assert delete(fresh.stack.uploader_key).status_code == 403
        methodology = ensure_methodology(fresh.stack.engine)
        with fresh.stack.engine.begin() as conn:
            run_id = conn.exec_driver_sql(
                "INSERT INTO score_runs (methodology_id, status, parameters, data_versions, "
                f"summary) VALUES ({methodology}, 'running', '{{}}', '{{}}', '{{}}') "
                "RETURNING id").scalar()
        busy = delete(fresh.stack.analyst_key)  # the fresh stack's second key is an admin
        assert busy.status_code == 409, busy.text
        assert f"score run {run_id}" in busy.json()["message"]
        with fresh.stack.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE score_runs SET status = 'failed' WHERE id = {run_id}")
        done = delete(fresh.stack.analyst_key)
        assert done.status_code == 200, done.text
        assert done.json() == {"kind": "institutions", "name": "sites", "rows": 1,
                               "unit": "institutions"}
        assert delete(fresh.stack.analyst_key).status_code == 404
    assert fresh.stack.scalar("SELECT count(*) FROM institutions") == 0
    assert list_named_layers(fresh.stack.engine) == []


def test_delete_refuses_unknown_kinds_and_names(fresh: Fresh) -> None:
    with pytest.raises(NotFoundError):
        delete_named_layer(fresh.stack.engine, fresh.stack.settings, "events", "none")
    with pytest.raises(Exception, match="cannot be deleted"):
        delete_named_layer(fresh.stack.engine, fresh.stack.settings, "localities", "x")


# --- 6. column names ------------------------------------------------------------------------


def test_ibf_and_other_column_names_need_no_options(fresh: Fresh, tmp_path: Path) -> None:
    ibf = write_geojson(tmp_path / "ibf_adm2.geojson", [
        ({"admin2Pcode": "QX0101", "admin2Name_en": "One", "admin1Pcode": "QX01",
          "admin1Name_en": "Nord"}, square(10, 5)),
    ])
    result = fresh.load("localities", ibf)
    assert result["columns"]["recognised"]["code"] == "admin2Pcode"
    assert fresh.stack.scalar("SELECT name FROM localities WHERE code = 'QX0101'") == "One"
    assert fresh.stack.scalar("SELECT name FROM localities WHERE code = 'QX01'") == "Nord"
    other = write_geojson(tmp_path / "other.geojson", [
        ({"Adm2_Code": "QX0102", "name": "Two", "parent": "QX01"}, square(10.1, 5)),
    ])
    assert fresh.load("localities", other)["levels"] == {"2": 1}
    table = write_text(tmp_path / "pop.csv", "pcode,T_TL\nQX0101,100\nQX0102,250\n")
    loaded = fresh.load("population", table)
    assert loaded["columns"]["recognised"] == {"code": "pcode", "population": "T_TL"}
    assert dict(fresh.stack.rows("SELECT code, population FROM localities WHERE level = 2")) == {
        "QX0101": 100, "QX0102": 250}


def test_field_options_name_any_column(fresh: Fresh, tmp_path: Path) -> None:
    odd = write_geojson(tmp_path / "odd.geojson", [
        ({"KODE": "QX0101", "NAMA": "Satu", "INDUK": None}, square(10, 5)),
    ])
    result = run_cli(fresh.stack, "localities", odd, "--level", "2", "--field", "code=KODE",
                     "--field", "name=NAMA")
    assert cli_summary(result)["rows"] == 1
    sites = write_text(tmp_path / "sites.csv", "Kind;Label;Y;X;Beds\nHospital;H1;5,05;10,05;12\n")
    result = run_cli(fresh.stack, "institutions", sites, "-f", "type=Kind", "-f", "name=Label",
                     "-f", "lat=Y", "-f", "lon=X", "-f", "capacity=Beds")
    assert cli_summary(result)["by_type"] == {"hospital": 1}
    row = fresh.stack.rows("SELECT name, capacity, ST_X(geom) AS x, ST_Y(geom) AS y "
                           "FROM institutions")[0]
    assert (row.name, row.capacity, row.x, row.y) == ("H1", 12, 10.05, 5.05)
    bad = run_cli(fresh.stack, "institutions", sites, "-f", "colour=Kind")
    assert bad.returncode == 1 and "unknown role colour" in bad.stderr
    assert "type, name, capacity, sensitive, lat, lon" in bad.stderr


def test_cod_ps_sex_and_age_columns_become_subgroup_shares(fresh: Fresh, tmp_path: Path
                                                           ) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    table = write_text(tmp_path / "cod_ps.csv", (
        "ADM3_PCODE,ADM3_EN,T_TL,F_TL,M_TL,T_00_04,F_00_04,M_00_04,T_80Plus\n"
        "#adm3+code,#adm3+name,#population+total,#population+f,#population+m,,,,\n"
        "QX010101,A,1000,520,480,150,70,80,20\n"
        "QX010102,B,2000,1000,1000,300,160,140,50\n"
    ))
    result = fresh.load("population", table, year=2020)
    assert result["rows"] == 2 and result["subgroup_shares"] == 2 * 6
    assert "the HXL hashtag row under the header was skipped" in result["warnings"]
    shares = {(code, subgroup): value for code, subgroup, value in fresh.stack.rows(
        "SELECT l.code, o.subgroup, o.value FROM observations o JOIN localities l "
        "ON l.id = o.locality_id JOIN indicators i ON i.id = o.indicator_id "
        "WHERE i.code = 'population_share' AND o.period = '2020'")}
    assert shares[("QX010101", "sex=female")] == pytest.approx(0.52)
    assert shares[("QX010101", "age=00-04")] == pytest.approx(0.15)
    assert shares[("QX010101", "age=00-04;sex=male")] == pytest.approx(0.08)
    assert shares[("QX010102", "age=80+")] == pytest.approx(0.025)


# --- 7. all-or-nothing that helps -------------------------------------------------------------


def test_unknown_codes_refuse_the_table_unless_skipped(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    rows = [f"{commune_code(d, n)},{100 * i}" for i, (d, n) in
            enumerate(((d, n) for d in DISTRICTS for n in (1, 2)), start=1)]
    table = write_text(tmp_path / "pop.csv", "code,population\n" + "\n".join(
        [*rows, "QX999901,5", "QX999902,6", "ZZ1,7"]) + "\n")
    refused = fresh.refuse("population", table)
    assert "unknown locality code 'QX999901'" in refused.message
    assert "--skip-unknown" in refused.message
    assert [d["row"] for d in refused.details] == [10, 11, 12]
    result = run_cli(fresh.stack, "population", table, "--skip-unknown")
    summary = cli_summary(result)
    assert summary["rows"] == 8
    assert "3 rows with unknown codes were skipped (QX999901, QX999902, ZZ1)" in result.stdout
    assert "skipped: row: 12, field: code, code: ZZ1, problem: unknown locality code" in (
        result.stdout)
    job = fresh.stack.rows("SELECT result FROM jobs WHERE kind = 'ingest:population' "
                           "AND status = 'succeeded'")[0].result
    assert [s["code"] for s in job["skipped"]] == ["QX999901", "QX999902", "ZZ1"]
    assert fresh.stack.scalar("SELECT sum(population) FROM localities WHERE level = 3") == 3600


# --- 9. coverage warnings -----------------------------------------------------------------------


def five_regions(tmp: Path) -> Path:
    return write_geojson(tmp / "regions.geojson", [
        ({"ADM1_PCODE": f"QR{i}", "ADM1_EN": f"Region {i}"}, square(20 + i, 0, 1.0))
        for i in range(5)
    ])


def test_partial_facility_inventory_is_loaded_with_a_warning(fresh: Fresh, tmp_path: Path
                                                             ) -> None:
    from geo.runs.lifecycle import run_scores

    fresh.load("localities", five_regions(tmp_path))
    # a run refuses a database without population (issue 9), so the regions get some
    people = tmp_path / "people.csv"
    people.write_text("code,population\n" + "".join(f"QR{i},1000\n" for i in range(5)))
    fresh.load("population", people)
    sites = facilities_csv(tmp_path, [(20.5, 0.5), (20.6, 0.6), (21.5, 0.5)])
    result = fresh.load("institutions", sites)
    warning = "the facilities lie in 2 of 5 level-1 units (40%)"
    assert any(warning in w for w in result["warnings"]), result["warnings"]
    assert result["coverage"]["share"] == pytest.approx(0.4)
    complete = facilities_csv(tmp_path, [(20 + i + 0.5, 0.5) for i in range(5)], "all.csv")
    assert not any("partial coverage" in w for w in fresh.load("institutions",
                                                                complete)["warnings"])
    summary = run_scores(fresh.stack.engine, fresh.stack.settings)
    assert any(w.startswith("sites: partial coverage") for w in summary["coverage_warnings"])
    assert not any(w.startswith("all:") for w in summary["coverage_warnings"])


def test_partial_hazard_raster_is_loaded_with_a_warning(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", five_regions(tmp_path))
    # Covers regions 0 and 1 (20-22 °E) only.
    half = write_tif(tmp_path / "flood_west.tif", np.ones((100, 200), dtype="float32"),
                     transform=from_origin(20, 1, 0.01, 0.01))
    result = fresh.load("hazard", half, name="flood west", kind="flood")
    assert "the raster covers 2 of 5 level-1 localities (40%)" in " ".join(result["warnings"])
    whole = write_tif(tmp_path / "flood_all.tif", np.ones((100, 500), dtype="float32"),
                      transform=from_origin(20, 1, 0.01, 0.01))
    assert fresh.load("hazard", whole, name="flood all", kind="flood")["warnings"] == []
    check = run_cli(fresh.stack, "hazard", half, "--name", "flood west")
    assert "partial coverage" in check.stdout


def test_layer_listing_reports_every_kind(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", five_regions(tmp_path))
    fresh.load("institutions", facilities_csv(tmp_path, [(20.5, 0.5)]))
    events = write_text(tmp_path / "ev.csv", "date,latitude,longitude\n2024-01-01,0.5,20.5\n")
    fresh.load("events", events, layer_name="acled")
    kinds = {(layer["kind"], layer["name"], layer["rows"])
             for layer in list_named_layers(fresh.stack.engine)}
    assert kinds == {("institutions", "sites", 1), ("events", "acled", 1)}
    assert json.dumps(list_named_layers(fresh.stack.engine))  # JSON-able for the API


def test_refusals_leave_nothing_behind(fresh: Fresh, tmp_path: Path) -> None:
    fresh.load("localities", adm3_file(tmp_path))
    before = snapshot(fresh.stack)
    bad = write_text(tmp_path / "bad.csv", "code,population\nQX010101,abc\nQX010102,-4\n")
    error = fresh.refuse("population", bad)
    assert [(d["row"], d["field"]) for d in error.details] == [(2, "population"),
                                                               (3, "population")]
    assert_nothing_left(fresh.stack, before)
