"""Real files from ../shared/data through the whole ingest, each country in its own database.

Skipped cleanly when the shared data is absent. Most loads call `geo.ingest.service`
directly (the code path the API and the CLI share); the Central African Republic set and
the malformed IBF originals go over HTTP, and the Jakarta villages through the CLI.

What the Jakarta villages (kelurahan) showed: the layer has names but no codes. Codes are
never invented (re-uploads, parents and every joined table key on them), so a plain load
asks for the admin level, then for `code_field`. Sub-district names (`KEC_NAME_1`) repeat
and are refused as duplicate codes; the village name `KEL_NAME_1` happens to be unique
among the 261 villages, so `-o code_field=KEL_NAME_1` loads them.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from pyproj import Geod
from rio_cogeo.cogeo import cog_validate
from sqlalchemy import Engine, text
from stack_helpers import (
    Stack,
    assert_nothing_left,
    cli_summary,
    run_cli,
    snapshot,
    upload,
)

from geo.db import build_engine
from geo.errors import ValidationError
from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.keys import create_key
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer, shared_file

pytestmark = pytest.mark.realdata


@dataclass
class Country:
    """A database of its own for one country's files, and how to load into it."""

    stack: Stack

    def load(self, kind: str, path: Path, /, **options: Any) -> dict[str, Any]:
        """Ingest a file through the service (as the API and CLI do); return the result."""
        job_id = start_ingest_job(self.stack.engine, kind, options, path.name)
        return run_ingest_job(self.stack.engine, self.stack.settings, job_id, kind, path,
                              path.name, options)

    def refuse(self, kind: str, path: Path, /, **options: Any) -> ValidationError:
        """Ingest a file that must be refused; return the error after checking nothing stayed."""
        before = snapshot(self.stack)
        with pytest.raises(ValidationError) as caught:
            self.load(kind, path, **options)
        assert_nothing_left(self.stack, before)
        return caught.value


@pytest.fixture(scope="module")
def country_db(new_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[[str], Stack]]:
    """Return a factory of migrated databases with their own data directories."""
    engines: list[Engine] = []

    def make(name: str) -> Stack:
        url = new_database(f"riskatlas_real_{name}")
        upgrade(url)
        settings = Settings(
            database=DatabaseSettings(url=url),
            storage=StorageSettings(data_dir=tmp_path_factory.mktemp(f"real-{name}")),
        )
        engine = build_engine(url, settings)
        engines.append(engine)
        key = create_key(engine, f"real data {name}", "uploader").secret
        return Stack(url, settings, engine, "", key, "")

    yield make
    for engine in engines:
        engine.dispose()


def zip_files(target: Path, *members: Path) -> Path:
    """Zip the given files flat into `target`."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in members:
            archive.write(member, member.name)
    return target


def level_counts(stack: Stack) -> dict[int, int]:
    """Return how many localities each admin level holds."""
    return dict(stack.rows("SELECT level, count(*) FROM localities GROUP BY level"))


def assert_tree_is_whole(stack: Stack) -> None:
    """Assert every unit below level 1 has a parent exactly one level up, all valid 4326."""
    assert stack.scalar(
        "SELECT count(*) FROM localities c LEFT JOIN localities p ON p.code = c.parent_code "
        "WHERE c.level > 1 AND (p.code IS NULL OR p.level <> c.level - 1)") == 0
    assert stack.scalar("SELECT count(*) FROM localities WHERE NOT ST_IsValid(geom) "
                        "OR ST_SRID(geom) <> 4326") == 0


# --- Rwanda --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rwanda(country_db: Callable[[str], Stack]) -> Country:
    """Rwanda's three admin levels and population table, loaded."""
    country = Country(country_db("rwa"))
    for level in (1, 2, 3):
        path = shared_file("rwanda", "admin", f"rwa_adm{level}.geojson")
        country.stack.extra[f"adm{level}"] = country.load("localities", path)
    country.stack.extra["population"] = country.load(
        "population", shared_file("rwanda", "population", "population_RWA.csv"))
    return country


def test_rwanda_boundaries_three_levels(rwanda: Country) -> None:
    stack = rwanda.stack
    assert level_counts(stack) == {1: 5, 2: 30, 3: 416}
    assert_tree_is_whole(stack)
    assert stack.scalar("SELECT parent_code FROM localities WHERE code = 'RW1101'") == "RW11"
    notes = stack.extra["adm3"]["warnings"]
    assert "2 invalid polygons were repaired with make_valid" in notes
    assert "parent codes of 416 localities taken from their P-code prefix" in notes


def test_rwanda_population_table(rwanda: Country) -> None:
    stack = rwanda.stack
    assert stack.extra["population"]["rows"] == 451
    totals = dict(stack.rows("SELECT level, sum(population) FROM localities GROUP BY level"))
    # The upstream totals differ between levels; each level keeps its own.
    assert totals[1] == pytest.approx(13.78e6, rel=1e-3)
    assert totals[2] == pytest.approx(totals[1])
    assert totals[3] == pytest.approx(14.57e6, rel=1e-3)
    assert stack.scalar("SELECT count(*) FROM localities WHERE population IS NULL") == 0


def test_rwanda_health_facilities(rwanda: Country) -> None:
    who = rwanda.load("institutions",
                      shared_file("rwanda", "health", "who_public_health_facilities_rwa.csv"))
    assert who["rows"] == 572
    assert who["by_type"]["health_centre"] == 486
    osm = rwanda.load("institutions", shared_file("rwanda", "health", "healthsites_io_rwa.geojson"))
    assert osm["rows"] == 119
    assert osm["by_type"]["pharmacy"] == 24
    # The points are where the file says: all but a handful (on borders and lake shores,
    # where the generalised polygons fall short) lie inside a sector.
    outside = rwanda.stack.scalar(
        "SELECT count(*) FROM institutions i WHERE i.dataset_id = :ds AND NOT EXISTS ("
        "SELECT 1 FROM localities l WHERE l.level = 3 AND ST_Intersects(l.geom, i.geom))",
        ds=who["dataset_id"])
    assert outside < 10


# --- Central African Republic, over HTTP ------------------------------------------------------


@pytest.fixture(scope="module")
def car(country_db: Callable[[str], Stack]) -> Iterator[tuple[Country, httpx.Client]]:
    """CAR's database served over HTTP, its boundaries and population uploaded."""
    stack = country_db("caf")
    with LiveServer(stack.settings) as server:
        stack.base_url = server.base_url
        with stack.client() as client:
            for level in (1, 2, 3):
                path = shared_file("central_african_republic", "admin", f"caf_adm{level}.geojson")
                response = upload(client, "localities", path)
                assert response.status_code == 201, response.text
            population = shared_file("central_african_republic", "population",
                                     "population_CAF.csv")
            response = upload(client, "population", population)
            assert response.status_code == 201, response.text
            yield Country(stack), client


def test_car_boundaries_and_population(car: tuple[Country, httpx.Client]) -> None:
    stack = car[0].stack
    assert level_counts(stack) == {1: 17, 2: 72, 3: 175}
    assert_tree_is_whole(stack)
    totals = dict(stack.rows("SELECT level, sum(population) FROM localities GROUP BY level"))
    assert totals[1] == pytest.approx(5.58e6, rel=1e-3)
    assert totals[3] == pytest.approx(5.51e6, rel=1e-3)


def test_car_health_facilities(car: tuple[Country, httpx.Client]) -> None:
    country, client = car
    who = upload(client, "institutions", shared_file(
        "central_african_republic", "health", "who_public_health_facilities_caf.csv"))
    assert who.status_code == 201, who.text
    result = who.json()["result"]
    # 10 of the 555 rows have no coordinates: skipped and reported, not an error.
    assert result["rows"] == 545
    assert any("10 rows without coordinates were skipped" in w for w in result["warnings"])
    osm = country.load("institutions", shared_file(
        "central_african_republic", "health", "healthsites_io_caf.geojson"))
    assert osm["rows"] == 450


def test_car_ucdp_events(car: tuple[Country, httpx.Client]) -> None:
    country, _ = car
    result = country.load("events", shared_file(
        "central_african_republic", "conflict", "ucdp_ged_v23_1_caf.fgb"), layer="ucdp")
    assert result["rows"] == 1848
    stack = country.stack
    row = stack.rows("SELECT count(*) AS n, sum(fatalities) AS deaths, min(event_date) AS first, "
                     "max(event_date) AS last, count(DISTINCT event_type) AS types FROM events")[0]
    assert (row.n, row.deaths, str(row.first), str(row.last)) == (
        1848, 14948, "1991-08-08", "2022-12-30")
    assert set(r[0] for r in stack.rows("SELECT DISTINCT event_type FROM events")) == {
        "state-based conflict", "non-state conflict", "one-sided violence"}
    inside = stack.scalar("SELECT count(*) FROM events e WHERE EXISTS (SELECT 1 FROM "
                          "localities l WHERE l.level = 3 AND ST_Intersects(l.geom, e.geom))")
    assert inside == 1846


@pytest.mark.parametrize("relative", [
    ("central_african_republic", "admin", "original_ibf", "CAF_adm1.json"),
    ("central_african_republic", "admin", "original_ibf", "CAF_adm2.json"),
    ("central_african_republic", "admin", "original_ibf", "CAF_adm3.json"),
    ("rwanda", "admin", "original_ibf", "RWA_adm1.json"),
    ("rwanda", "admin", "original_ibf", "RWA_adm2.json"),
    ("rwanda", "admin", "original_ibf", "RWA_adm3.json"),
], ids=lambda parts: parts[-1])
def test_malformed_ibf_originals_are_refused_over_http(
    car: tuple[Country, httpx.Client], relative: tuple[str, ...]
) -> None:
    country, client = car
    path = shared_file(*relative)
    before = snapshot(country.stack)
    response = upload(client, "localities", path)
    assert response.status_code == 422, response.text
    message = response.json()["message"]
    assert message.startswith(f"{path.name}, feature 1, field 'geometry': ")
    assert 'declared "Polygon" but its coordinates are nested as a MultiPolygon' in message
    assert response.json()["details"][0]["feature"] == 1
    assert_nothing_left(country.stack, before)


# --- Jakarta --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jakarta(country_db: Callable[[str], Stack]) -> Country:
    """An empty database for the Jakarta files."""
    return Country(country_db("jkt"))


def _raster_version(stack: Stack, layer: str) -> Any:
    return stack.rows("SELECT v.* FROM raster_versions v JOIN raster_layers l "
                      "ON l.id = v.layer_id WHERE l.name = :n", n=layer)[0]


@pytest.mark.parametrize("stem", ["Flood_Current_Depth_Jakarta_geographic",
                                  "Flood_Design_Depth_Jakarta_geographic"])
def test_jakarta_flood_depth_grids(jakarta: Country, tmp_path: Path, stem: str) -> None:
    hazard = shared_file("indonesia", "jakarta", "hazard")
    archive = zip_files(tmp_path / f"{stem}.zip", hazard / f"{stem}.asc", hazard / f"{stem}.prj")
    result = jakarta.load("hazard", archive, name=stem.lower(), kind="flood", unit="m")
    assert result["version"] == 1
    version = _raster_version(jakarta.stack, stem.lower())
    assert (version.width, version.height, version.crs) == (638, 649, "EPSG:4326")
    assert version.nodata == -9999
    assert 15.6 < version.statistics["max"] < 15.8
    assert cog_validate(version.path, quiet=True)[0]


def test_jakarta_population_density_grid(jakarta: Country, tmp_path: Path) -> None:
    folder = shared_file("indonesia", "jakarta", "population")
    stem = "Population_Jakarta_geographic"
    archive = zip_files(tmp_path / "population.zip", folder / f"{stem}.asc",
                        folder / f"{stem}.prj")
    result = jakarta.load("population", archive, name="jakarta-population",
                          value_kind="density")
    expected = _people_from_density(folder / f"{stem}.asc")
    assert result["statistics"]["total"] == pytest.approx(expected, rel=1e-4)
    version = _raster_version(jakarta.stack, "jakarta-population")
    assert version.value_kind == "count"
    assert cog_validate(version.path, quiet=True)[0]


def _people_from_density(path: Path) -> float:
    """Return Σ density × geodesic cell area, computed independently of the ingest code."""
    with rasterio.open(path) as source:
        density = source.read(1, masked=True).astype("float64")
        transform = source.transform
    geod = Geod(ellps="WGS84")
    total = 0.0
    for row in range(density.shape[0]):
        top = transform.f + row * transform.e
        area, _ = geod.polygon_area_perimeter(
            [0, transform.a, transform.a, 0], [top, top, top + transform.e, top + transform.e])
        total += float(density[row].filled(0).sum()) * abs(area) / 1e6
    assert math.isfinite(total)
    return total


def test_jakarta_sobek_forecast_keeps_its_projected_crs(jakarta: Country) -> None:
    path = shared_file("indonesia", "jakarta", "hazard",
                       "201208140700_Jakarta_200m_Sobek_Hypothetical_Scenario_ACCESSA_6_hours.tif")
    jakarta.load("hazard", path, name="sobek-6h", kind="flood", unit="m")
    version = _raster_version(jakarta.stack, "sobek-6h")
    assert version.crs == "EPSG:23834"
    west, south = jakarta.stack.rows(
        "SELECT ST_XMin(footprint), ST_YMin(footprint) FROM raster_versions WHERE id = :id",
        id=version.id)[0]
    assert 106 < west < 107.5 and -7 < south < -5.5


def test_jakarta_villages_need_a_code_field(jakarta: Country, tmp_path: Path) -> None:
    admin = shared_file("indonesia", "jakarta", "admin")
    archive = zip_files(tmp_path / "kelurahan.zip",
                        *(admin / f"kelurahan_jakarta.{e}" for e in ("shp", "shx", "dbf", "prj")))
    no_level = jakarta.refuse("localities", archive)
    assert "cannot tell the admin level" in no_level.message and "level" in no_level.message
    no_code = jakarta.refuse("localities", archive, level=4)
    assert "no code column" in no_code.message and "--field code=COLUMN" in no_code.message
    assert "KEL_NAME_1" in no_code.message  # the columns are listed to choose from
    repeated = jakarta.refuse("localities", archive, level=4, code_field="KEC_NAME_1")
    assert "duplicate code" in repeated.message
    assert repeated.details[0]["field"] == "KEC_NAME_1"
    # The village names are unique: through the CLI, as a user would.
    result = run_cli(jakarta.stack, "localities", archive, "--level", "4",
                     "--field", "code=KEL_NAME_1", "--field", "name=KEL_NAME2")
    assert cli_summary(result)["rows"] == 261
    name = jakarta.stack.scalar(
        "SELECT name FROM localities WHERE code = 'KELURAHAN GROGOL SELATAN'")
    assert name == "Grogol Selatan"


@pytest.mark.parametrize(("file_name", "rows", "types"), [
    ("rumahsakit.geojson", 191, {"hospital": 191}),
    ("puskesmas.geojson", 560, {"health_centre": 334, "health_post": 226}),
    ("klinik.geojson", 1381, {"clinic": 1381}),
])
def test_jakarta_health_facilities(jakarta: Country, file_name: str, rows: int,
                                   types: dict[str, int]) -> None:
    result = jakarta.load("institutions", shared_file("indonesia", "jakarta", "facilities",
                                                      file_name))
    assert result["rows"] == rows
    assert result["by_type"] == types
    srid = jakarta.stack.scalar("SELECT DISTINCT ST_SRID(geom) FROM institutions "
                                "WHERE dataset_id = :ds", ds=result["dataset_id"])
    assert srid == 4326


def test_every_loaded_value_is_finite(rwanda: Country) -> None:
    areas = np.array([r[0] for r in rwanda.stack.rows("SELECT area_km2 FROM localities")])
    assert np.isfinite(areas).all() and (areas > 0).all()
    with rwanda.stack.engine.connect() as conn:
        total = conn.execute(text("SELECT sum(area_km2) FROM localities WHERE level = 1")).scalar()
    # Rwanda is 26,338 km² with its share of Lake Kivu, 24,668 km² of land.
    assert 24_000 < total < 27_000
