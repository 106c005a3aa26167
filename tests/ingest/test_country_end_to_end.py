"""Issue 11 end to end: a country from its lowest-level COD file to a scored map.

Rwanda's 416 sectors as an OCHA COD adm3 file carries them (ADM3_PCODE/ADM3_EN with the
ADM2_/ADM1_ parent columns and names; the shared copy was stripped of them upstream, so
they are put back from the shared adm1/adm2 files), a COD-PS style population workbook
generated from the real population CSV, the real WHO facility list, and a flood raster
over the country. Loaded through the CLI as the guide (docs/own-country.md) says, scored
with the default methodology.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from ingest_helpers import write_tif
from rasterio.transform import from_origin
from stack_helpers import Fresh, cli_summary, run_cli

from tests.conftest import shared_file

pytestmark = pytest.mark.realdata


def cod_adm3(tmp: Path) -> Path:
    """Return Rwanda's sectors as a COD adm3 file: own code and name plus parent columns."""
    sectors = gpd.read_file(shared_file("rwanda", "admin", "rwa_adm3.geojson"))
    districts = gpd.read_file(shared_file("rwanda", "admin", "rwa_adm2.geojson"))
    provinces = gpd.read_file(shared_file("rwanda", "admin", "rwa_adm1.geojson"))
    sectors["ADM2_PCODE"] = sectors["ADM3_PCODE"].str[:4]
    sectors["ADM1_PCODE"] = sectors["ADM3_PCODE"].str[:3]
    sectors["ADM2_EN"] = sectors["ADM2_PCODE"].map(
        dict(zip(districts["ADM2_PCODE"], districts["ADM2_EN"], strict=True)))
    sectors["ADM1_EN"] = sectors["ADM1_PCODE"].map(
        dict(zip(provinces["ADM1_PCODE"], provinces["ADM1_EN"], strict=True)))
    assert sectors[["ADM2_EN", "ADM1_EN"]].notna().all().all()
    path = tmp / "rwa_adm3_cod.geojson"
    sectors.to_file(path, driver="GeoJSON")
    return path


def population_workbook(tmp: Path) -> Path:
    """Return a COD-PS style workbook (a sheet per level, HXL row) from the real CSV."""
    table = pd.read_csv(shared_file("rwanda", "population", "population_RWA.csv"))
    table = table[table["indicator"] == "populationTotal"]
    path = tmp / "rwa_pop_2020.xlsx"
    with pd.ExcelWriter(path) as writer:
        for level in (1, 2, 3):
            rows = table[table["adminLevel"] == level]
            sheet = pd.DataFrame({f"ADM{level}_PCODE": rows["placeCode"].astype(object),
                                  "T_TL": rows["value"].astype(object)})
            hxl = pd.DataFrame({f"ADM{level}_PCODE": [f"#adm{level}+code"],
                                "T_TL": ["#population+total"]})
            pd.concat([hxl, sheet]).to_excel(writer, sheet_name=f"rwa_pop_adm{level}",
                                             index=False)
    return path


def flood_raster(tmp: Path) -> Path:
    """Return a flood-depth GeoTIFF over Rwanda: deeper in the west and along 'valleys'."""
    west, north, cell = 28.8, -1.0, 0.01
    cols, rows = 215, 190
    x = np.linspace(0, 1, cols)[np.newaxis, :]
    y = np.linspace(0, 1, rows)[:, np.newaxis]
    depth = (1.5 * (1 - x) * (0.5 + 0.5 * np.sin(12 * y)) ** 2).astype("float32")
    return write_tif(tmp / "flood_depth.tif", depth,
                     transform=from_origin(west, north, cell, cell))


@pytest.fixture
def rwanda(fresh: Fresh, tmp_path: Path) -> dict[str, Any]:
    """Rwanda loaded through the CLI from four files, and one score run."""
    from geo.runs.lifecycle import run_scores

    steps = [
        ("localities", cod_adm3(tmp_path), ()),
        ("population", population_workbook(tmp_path), ("--sheet", "rwa_pop_adm3")),
        ("institutions", shared_file("rwanda", "health", "who_public_health_facilities_rwa.csv"),
         ()),
        ("hazard", flood_raster(tmp_path), ("--name", "Flood depth", "--hazard-kind", "flood",
                                            "--unit", "m", "--threshold", "0.5")),
    ]
    results = {}
    for kind, path, args in steps:
        results[kind] = cli_summary(run_cli(fresh.stack, kind, path, *args))
    results["run"] = run_scores(fresh.stack.engine, fresh.stack.settings)
    results["fresh"] = fresh
    return results


def test_country_loads_from_one_cod_file_and_scores(rwanda: dict[str, Any]) -> None:
    fresh: Fresh = rwanda["fresh"]
    counts = dict(fresh.stack.rows("SELECT level, count(*) FROM localities GROUP BY level"))
    assert counts == {1: 5, 2: 30, 3: 416}
    assert rwanda["localities"]["created_ancestors"] == {"1": 5, "2": 30}
    assert fresh.stack.scalar("SELECT name FROM localities WHERE code = 'RW11'") == "Nyarugenge"
    assert rwanda["population"]["rows"] == 416
    assert fresh.stack.scalar("SELECT sum(population) FROM localities WHERE level = 3") == (
        pytest.approx(14.57e6, rel=1e-3))
    assert rwanda["institutions"]["rows"] == 572
    assert rwanda["hazard"]["version"] == 1
    run = rwanda["run"]
    assert run["localities"] == 451
    assert run["coverage_warnings"] == []


def test_most_localities_get_a_composite(rwanda: dict[str, Any]) -> None:
    # issue 9: without survey indicators the composite is partial, the vulnerability
    # pillar named as missing, instead of empty
    run = rwanda["run"]
    assert run["scored"] >= 0.9 * run["localities"], run
    assert all("vulnerability" in level["missing_pillars"] for level in run["levels"])
