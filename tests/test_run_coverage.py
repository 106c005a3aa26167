"""A run over whatever layers a new country has succeeds and says what it could not score.

A small country loaded as users do (boundaries, population, then the rest): three admin
levels, the top one a single unit; two hazard rasters on grids that do not line up and a
third covering only the west half; health centres, plain "school"s and a pharmacy; no
conflict events and no survey indicators. The default methodology must score every level
(partial composites, vulnerability named as missing), keep missing as missing, and explain
itself in the job result, GET /api/v1/runs/{id} and the CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import httpx
import numpy as np
import psycopg
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from sqlalchemy import Engine

from geo.db import build_engine
from geo.errors import ValidationError
from geo.ingest.load import ingest
from geo.migrate import upgrade
from geo.runs.lifecycle import execute_score_run, start_score_run
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer, _public_tmpdir

WEST, NORTH, CELL = 30.0, -1.8, 0.05  # villages are 0.05 degree squares, 4 x 4


class Country:
    """A database and data directory of its own, loaded through the ingestion path."""

    def __init__(self, url: str, root: Path) -> None:
        self.root = root
        self.settings = Settings(database=DatabaseSettings(url=url),
                                 storage=StorageSettings(data_dir=root / "data"))
        self.engine: Engine = build_engine(url, self.settings)
        self.url = url

    def load(self, kind: str, path: Path, /, **options: Any) -> dict[str, Any]:
        return ingest(self.engine, self.settings, kind, path, path.name, options)

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url.replace("+psycopg", "")) as conn:
            return conn.execute(sql, params).fetchall()


def _raster(path: Path, data: np.ndarray, west: float, north: float, size: float) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="float32", crs="EPSG:4326", nodata=-9999.0,
                       transform=from_origin(west, north, size, size)) as dst:
        dst.write(data.astype("float32"), 1)
    return path


def _boundaries(tmp: Path) -> dict[int, Path]:
    villages, districts = [], []
    for row in range(4):
        for col in range(4):
            district = f"QQ1{1 + (row // 2) * 2 + col // 2}"
            villages.append({"code": f"{district}{row % 2}{col % 2}",
                             "name": f"Village {row}{col}", "parent_code": district,
                             "geometry": shapely.box(WEST + col * CELL, NORTH - (row + 1) * CELL,
                                                     WEST + (col + 1) * CELL,
                                                     NORTH - row * CELL)})
    frame = gpd.GeoDataFrame(villages, crs="EPSG:4326")
    for district, members in frame.groupby("parent_code"):
        districts.append({"code": district, "name": f"District {district[-1]}",
                          "parent_code": "QQ1", "geometry": members.union_all()})
    region = [{"code": "QQ1", "name": "The region", "parent_code": None,
               "geometry": frame.union_all()}]
    paths = {}
    for level, rows in ((1, region), (2, districts), (3, villages)):
        paths[level] = tmp / f"level{level}.geojson"
        gpd.GeoDataFrame(rows, crs="EPSG:4326").to_file(paths[level], driver="GeoJSON")
    return paths


def load_country(country: Country, tmp: Path) -> None:
    for level, path in _boundaries(tmp).items():
        country.load("localities", path, level=level)
    codes = [r[0] for r in country.query("SELECT code FROM localities WHERE level = 3")]
    population = tmp / "population.csv"
    population.write_text("code,population\n" + "".join(
        f"{code},{1000 + 100 * i}\n" for i, code in enumerate(sorted(codes))))
    country.load("population", population)
    # flood: 0.01 degree grid over everything, deep water in the east half only
    flood = np.zeros((20, 20))
    flood[:, 10:] = 2.0
    country.load("hazard", _raster(tmp / "flood.tif", flood, WEST, NORTH, 0.01),
                 name="Flood depth", kind="flood", unit="m", threshold=0.5)
    # drought: another provider's grid (origin and resolution do not line up)
    drought = np.full((30, 30), 0.8)
    country.load("hazard", _raster(tmp / "drought.tif", drought, WEST - 0.0033, NORTH + 0.0041,
                                   0.0073), name="Drought index", kind="drought", threshold=0.5)
    # landslide: covers only the west half of the country
    landslide = np.full((20, 10), 1.0)
    country.load("hazard", _raster(tmp / "landslide.tif", landslide, WEST, NORTH, 0.01),
                 name="Landslide susceptibility", kind="landslide", threshold=0.5)
    institutions = tmp / "institutions.csv"
    institutions.write_text(
        "name,type,latitude,longitude\n"
        f"HC west,Health Centre,{NORTH - 0.05},{WEST + 0.05}\n"
        f"HC east,Health Centre,{NORTH - 0.15},{WEST + 0.15}\n"
        f"School one,school,{NORTH - 0.02},{WEST + 0.02}\n"
        f"School two,School,{NORTH - 0.17},{WEST + 0.12}\n"
        f"Pharmacy,Pharmacy,{NORTH - 0.1},{WEST + 0.1}\n")
    country.ingest_summary = country.load("institutions", institutions)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def country(new_database: Callable[[str], str]) -> Iterator[Country]:
    url = new_database("riskatlas_coverage")
    upgrade(url)
    root = _public_tmpdir("riskatlas-coverage-")
    made = Country(url, root)
    load_country(made, root)
    yield made
    made.engine.dispose()


@pytest.fixture(scope="module")
def run(country: Country) -> dict[str, Any]:
    run_id, job_id = start_score_run(country.engine)
    summary = execute_score_run(country.engine, country.settings, run_id, job_id)
    return {"run_id": run_id, "job_id": job_id, "summary": summary}


def _result(country: Country, run_id: int, code: str) -> dict[str, Any]:
    (row,) = country.query(
        "SELECT r.composite, r.pillars, r.dimensions, r.components, r.details, r.completeness "
        "FROM score_results r JOIN localities l ON l.id = r.locality_id "
        "WHERE r.run_id = %s AND l.code = %s", (run_id, code))
    return dict(zip(("composite", "pillars", "dimensions", "components", "details",
                     "completeness"), row, strict=True))


def test_every_level_scores_partially_and_says_why(country: Country, run: dict) -> None:
    # Defect 5: 0 of 450 scored, silently. Now: every locality of every level has a
    # partial composite, and the summary names the missing pillar and its inputs.
    levels = {item["level"]: item for item in run["summary"]["levels"]}
    assert {level: (item["localities"], item["scored"]) for level, item in levels.items()} == {
        1: (1, 1), 2: (4, 4), 3: (16, 16)}
    for item in levels.values():
        assert item["partial"] == item["localities"]
        why = item["missing_pillars"]["vulnerability"]
        assert why["localities"] == item["localities"]
        assert any("survey observations" in reason for reason in why["why"])
    assert any("vulnerability missing" in line for line in run["summary"]["explained"])
    village = _result(country, run["run_id"], "QQ1100")
    assert village["details"]["coverage"]["partial"] is True
    assert village["details"]["coverage"]["missing_pillars"] == ["vulnerability"]
    assert village["pillars"]["vulnerability"] is None
    assert 0 < village["completeness"] < 1


def test_the_one_unit_level_is_scored_on_its_childrens_scale(country: Country,
                                                             run: dict) -> None:
    # Defect 2: a level with one unit was min-max rescaled alone and came out 0.0.
    region = _result(country, run["run_id"], "QQ1")
    assert region["composite"] is not None and region["composite"] > 0
    flood = region["components"]["flood_exposure"]
    # half of the region's people live in the flooded east half
    assert 0.3 < flood["raw"] < 0.7 and flood["normalised"] == pytest.approx(flood["raw"] * 10)


def test_misaligned_rasters_both_scored(country: Country, run: dict) -> None:
    # Defect 4: two rasters on different grids made exactextract raise and every run fail.
    village = _result(country, run["run_id"], "QQ1100")
    hazards = village["details"]["hazards"]
    assert hazards["Drought index"]["mean"] == pytest.approx(0.8)
    assert hazards["Flood depth"]["share_area_over"] == pytest.approx(0.0)  # no raster of people
    assert village["components"]["drought_exposure"]["normalised"] == pytest.approx(10.0)


def test_half_covering_raster_is_no_data_not_zero(country: Country, run: dict) -> None:
    # Defect 3: a raster not covering a locality gave "0 % of people exposed".
    west, east = (_result(country, run["run_id"], code) for code in ("QQ1100", "QQ1201"))
    assert west["components"]["landslide_exposure"]["normalised"] == pytest.approx(10.0)
    landslide = east["components"]["landslide_exposure"]
    assert landslide["raw"] is None and landslide["normalised"] is None
    assert "no valid cells" in landslide["no_data"]
    assert east["details"]["hazards"]["Landslide susceptibility"]["share_area_over"] is None


def test_no_events_is_no_conflict_data_not_peace(country: Country, run: dict) -> None:
    # Defect 3: no conflict events loaded gave conflict 0.0 at completeness 1.0.
    village = _result(country, run["run_id"], "QQ1100")
    assert village["dimensions"]["conflict_violence"]["score"] is None
    assert "no conflict events" in village["components"]["conflict_events_rate"]["no_data"]
    assert "conflict.events_per_100k" in run["summary"]["inputs_not_loaded"]


def test_plain_school_counts_and_uncounted_types_are_reported(country: Country,
                                                              run: dict) -> None:
    # Defect 6: a file typed `school` was silently ignored by access.
    summary = country.ingest_summary  # type: ignore[attr-defined]
    assert summary["by_family"] == {"health": 2, "school": 2}
    assert summary["not_counted_by_access"] == {"pharmacy": 1}
    assert any("counted by no access measure" in w for w in summary["warnings"])
    assert run["summary"]["institutions"]["not_counted_by_access"] == {"pharmacy": 1}
    village = _result(country, run["run_id"], "QQ1100")
    assert village["components"]["school_distance"]["raw"] is not None
    assert village["details"]["access"]["school"]["count"] == 1


def test_the_explanation_reaches_the_job_the_api_and_the_cli(country: Country,
                                                              run: dict) -> None:
    with LiveServer(country.settings) as server, httpx.Client(base_url=server.base_url,
                                                              timeout=60) as client:
        got = client.get(f"/api/v1/runs/{run['run_id']}").json()
        job = client.get(f"/api/v1/jobs/{run['job_id']}").json()
    assert got["summary"]["levels"] == run["summary"]["levels"]
    assert job["result"]["levels"] == run["summary"]["levels"]
    env = {**os.environ, "DATABASE_URL": country.url,
           "RISKATLAS_DATA_DIR": str(country.root / "data")}
    done = subprocess.run([sys.executable, "-m", "api.cli", "score"], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert [lvl["scored"] for lvl in printed["levels"]] == [1, 4, 16]
    assert "level 3: 16 of 16 localities scored, 16 partial" in done.stderr
    assert "no survey observations" in done.stderr


def test_a_database_with_nothing_to_score_is_refused(new_database: Callable[[str], str],
                                                     tmp_path: Path) -> None:
    url = new_database("riskatlas_refusal")
    upgrade(url)
    empty = Country(url, _public_tmpdir("riskatlas-refusal-"))
    try:
        with pytest.raises(ValidationError, match="no localities"):
            start_score_run(empty.engine)
        empty.load("localities", _boundaries(tmp_path)[1], level=1)
        with pytest.raises(ValidationError, match="no population") as caught:
            start_score_run(empty.engine)
        assert caught.value.details["field"] == "population"
        assert empty.query("SELECT count(*) FROM score_runs") == [(0,)]
    finally:
        empty.engine.dispose()


def test_the_profile_names_what_is_missing(country: Country, run: dict) -> None:
    with LiveServer(country.settings) as server, httpx.Client(base_url=server.base_url,
                                                              timeout=60) as client:
        profile = client.get("/api/v1/localities/QQ1201/risk").json()
    assert profile["coverage"]["partial"] is True
    assert profile["coverage"]["missing_pillars"] == ["vulnerability"]
    assert profile["components"]["landslide_exposure"]["no_data"].startswith("no data")
    assert profile["dimensions"]["conflict_violence"]["score"] is None
