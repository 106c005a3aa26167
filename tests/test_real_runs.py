"""Full score runs on real sets from ../shared/data: Central African Republic, Rwanda, Jakarta.

None of them has every pillar: CAR has no hazard raster and no survey, Rwanda only health
facilities, Jakarta no survey or conflict data. The default methodology scores them all the
same: a partial composite from the pillars the data supports, the missing ones named per
level in the run summary.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from geo.db import build_engine
from geo.ingest.load import ingest
from geo.migrate import upgrade
from geo.runs.lifecycle import execute_score_run, start_score_run
from geo.runs.methodologies import ensure_methodology
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import SHARED_DATA, _public_tmpdir

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _needs(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


def _zip(target: Path, *members: Path) -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for member in members:
            archive.write(member, member.name)
    return target


class Country:
    """A database of its own, loaded through the normal ingestion path."""

    def __init__(self, url: str, root: Path) -> None:
        self.settings = Settings(database=DatabaseSettings(url=url),
                                 storage=StorageSettings(data_dir=root))
        self.engine: Engine = build_engine(url, self.settings)
        self.url = url.replace("+psycopg", "")

    def load(self, kind: str, path: Path, /, **options: Any) -> dict[str, Any]:
        return ingest(self.engine, self.settings, kind, path, path.name, options)

    def score(self) -> int:
        run_id, job_id = start_score_run(self.engine, ensure_methodology(self.engine))
        self.summary = execute_score_run(self.engine, self.settings, run_id, job_id)
        return run_id

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.url) as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def country(new_database: Callable[[str], str]) -> Iterator[Callable[[str], Country]]:
    made: list[tuple[Country, Path]] = []

    def make(name: str) -> Country:
        url = new_database(name)
        upgrade(url)
        root = _public_tmpdir(f"riskatlas-{name}-")
        made.append((Country(url, root), root))
        return made[-1][0]

    yield make
    for item, _root in made:
        item.engine.dispose()


def test_central_african_republic_run(country: Callable[[str], Country]) -> None:
    car_dir = _needs("central_african_republic")
    car = country("riskatlas_car")
    for level in (1, 2, 3):
        car.load("localities", car_dir / "admin" / f"caf_adm{level}.geojson", level=level)
    car.load("population", car_dir / "population" / "population_CAF.csv")
    car.load("population", _needs("africa", "afripop2020_worldpop_20km.tif"),
             name="WorldPop 2020 (20 km)", value_kind="density")
    car.load("events", car_dir / "conflict" / "ucdp_ged_v23_1_caf.fgb", layer="UCDP GED 23.1")
    car.load("institutions", car_dir / "health" / "who_public_health_facilities_caf.csv")
    run_id = car.score()

    scored = car.query("SELECT count(*), count(r.composite) FROM score_results r JOIN "
                       "localities l ON l.id = r.locality_id WHERE r.run_id = %s AND l.level = 3",
                       (run_id,))
    assert scored == [(175, 175)]
    levels = {item["level"]: item for item in car.summary["levels"]}
    assert {lvl: (i["localities"], i["scored"]) for lvl, i in levels.items()} == {
        1: (17, 17), 2: (72, 72), 3: (175, 175)}
    # no survey: vulnerability is missing everywhere, and said to be
    assert all(i["missing_pillars"]["vulnerability"]["localities"] == i["localities"]
               for i in levels.values())
    # conflict counts at every level (defect 1): the prefectures' events add up
    by_level = dict(car.query(
        "SELECT l.level, sum((r.details->'conflict'->>'events')::float) FROM score_results r "
        "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = %s GROUP BY l.level",
        (run_id,)))
    assert by_level[1] > 0 and by_level[2] > 0 and by_level[3] > 0
    top = car.query(
        "SELECT l.code, l.name, r.composite, r.details->'conflict'->>'events', "
        "r.details->'access'->'health'->>'distance_km' FROM score_results r "
        "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = %s AND l.level = 3 "
        "ORDER BY r.rank LIMIT 10", (run_id,))
    bottom = car.query(
        "SELECT avg((r.details->'access'->'health'->>'distance_km')::float) "
        "FROM score_results r JOIN localities l ON l.id = r.locality_id WHERE r.run_id = %s "
        "AND l.level = 3 AND r.rank > 140", (run_id,))
    top_distance = sum(float(row[4] or 0) for row in top) / len(top)
    # Plausibility: the ten furthest-behind sub-prefectures are further from health care
    # than the best-placed ones, or see more violence (the two coping/exposure drivers here).
    top_events = sum(float(row[3] or 0) for row in top)
    assert top_distance > bottom[0][0] or top_events > 0, top


def test_rwanda_run_with_health_facilities_only(country: Callable[[str], Country]) -> None:
    rwanda = _needs("rwanda")
    rwa = country("riskatlas_rwanda")
    for level in (1, 2, 3):
        rwa.load("localities", rwanda / "admin" / f"rwa_adm{level}.geojson", level=level)
    rwa.load("population", rwanda / "population" / "population_RWA.csv")
    rwa.load("institutions", rwanda / "health" / "who_public_health_facilities_rwa.csv")
    run_id = rwa.score()
    levels = {item["level"]: item for item in rwa.summary["levels"]}
    # Only coping capacity has data: a partial composite everywhere, the two other pillars
    # named, conflict "no data" rather than peace.
    assert {lvl: i["scored"] for lvl, i in levels.items()} == {1: 5, 2: 30, 3: 416}
    for item in levels.values():
        assert set(item["missing_pillars"]) == {"hazard_exposure", "vulnerability"}
    top = rwa.query(
        "SELECT l.name, r.composite, (r.details->'access'->'health'->>'distance_km')::float, "
        "r.components->'conflict_events_rate'->>'no_data' FROM score_results r "
        "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = %s AND l.level = 3 "
        "ORDER BY r.rank LIMIT 10", (run_id,))
    (median,), = rwa.query(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (r.details->'access'->'health'->>"
        "'distance_km')::float) FROM score_results r JOIN localities l ON l.id = r.locality_id "
        "WHERE r.run_id = %s AND l.level = 3", (run_id,))
    # Plausibility: the sectors furthest behind are far from any health facility.
    assert sum(row[2] for row in top) / len(top) > median, top
    assert all("no conflict event" in row[3] for row in top)


def test_jakarta_run(country: Callable[[str], Country], tmp_path: Path) -> None:
    jakarta = _needs("indonesia", "jakarta")
    city = country("riskatlas_jakarta")
    admin = jakarta / "admin"
    villages = _zip(tmp_path / "kelurahan.zip",
                    *(admin / f"kelurahan_jakarta.{ext}" for ext in ("shp", "shx", "dbf", "prj")))
    city.load("localities", villages, level=4, code_field="KEL_NAME_1", name_field="KEL_NAME_1")
    hazard = jakarta / "hazard"
    for stem, name in (("Flood_Current_Depth_Jakarta_geographic", "Flood depth (current)"),
                       ("Flood_Design_Depth_Jakarta_geographic", "Flood depth (design)")):
        grid = _zip(tmp_path / f"{stem}.zip", hazard / f"{stem}.asc", hazard / f"{stem}.prj")
        city.load("hazard", grid, name=name, kind="flood", unit="m", threshold=0.5,
                  level_thresholds={"low": 0.1, "medium": 0.5, "high": 1.0})
    population = jakarta / "population"
    density = _zip(tmp_path / "population.zip",
                   population / "Population_Jakarta_geographic.asc",
                   population / "Population_Jakarta_geographic.prj")
    city.load("population", density, name="Population density", value_kind="density")
    for facilities in ("puskesmas.geojson", "rumahsakit.geojson"):
        city.load("institutions", jakarta / "facilities" / facilities)
    run_id = city.score()

    counts = city.query("SELECT count(*), count(composite) FROM score_results "
                        "WHERE run_id = %s", (run_id,))
    total, scored = counts[0]
    assert total == 261 and scored >= 250
    rows = city.query(
        "SELECT l.name, r.rank, (r.details->'hazards'->'Flood depth (current)'->>"
        "'people_exposed_share')::float FROM score_results r JOIN localities l "
        "ON l.id = r.locality_id WHERE r.run_id = %s AND r.composite IS NOT NULL "
        "ORDER BY r.rank", (run_id,))
    top_share = sum(row[2] or 0 for row in rows[:20]) / 20
    rest_share = sum(row[2] or 0 for row in rows[20:]) / max(len(rows) - 20, 1)
    # Plausibility: the villages furthest behind are the ones whose people stand in the water.
    assert top_share > rest_share, (rows[:5], top_share, rest_share)
