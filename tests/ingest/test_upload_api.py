"""Every kind of layer through `POST /api/v1/uploads/{kind}` over real HTTP, checked in PostGIS.

Also: who may upload, hazard versions, the asynchronous path, two uploads of one layer at
once, the size limit, and user strings (file names, field names) that look like GDAL paths.
"""

from __future__ import annotations

import http.server
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyproj import Geod
from rio_cogeo.cogeo import cog_validate
from sqlalchemy import text
from stack_helpers import (
    SCRIPT,
    Region,
    Stack,
    assert_nothing_left,
    big_raster,
    events_csv,
    hazard_raster,
    indicators_csv,
    institutions_csv,
    localities_files,
    observations_csv,
    population_long,
    population_raster,
    population_wide,
    priorities_csv,
    snapshot,
    upload,
    wait_for_job,
    write_text,
)

from geo.jobs import create_job
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer, free_port

REGION = Region("AP", x=31.0, y=-3.0)


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    """An HTTP client carrying the uploader key."""
    with stack.client() as http_client:
        yield http_client


@pytest.fixture(scope="module")
def loaded(stack: Stack, client: httpx.Client,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Upload one file of every kind (in dependency order) and return each job's result."""
    tmp = tmp_path_factory.mktemp("api-kinds")
    adm1, adm2 = localities_files(tmp, REGION)
    uploads: list[tuple[str, str, Path, dict[str, Any]]] = [
        ("adm1", "localities", adm1, {}),
        ("adm2", "localities", adm2, {}),
        ("population_wide", "population", population_wide(tmp, REGION), {}),
        ("population_long", "population", population_long(tmp, REGION), {}),
        ("population_count", "population",
         population_raster(tmp, REGION, "count.tif"), {"name": "ap-pop-count"}),
        ("population_density", "population", population_raster(tmp, REGION, "density.tif"),
         {"name": "ap-pop-density", "value_kind": "density"}),
        ("hazard", "hazard", hazard_raster(tmp),
         {"name": "ap-flood", "kind": "flood", "unit": "m", "threshold": "0.5",
          "level_thresholds": {"low": 1, "medium": 3, "high": 5}}),
        ("institutions", "institutions", institutions_csv(tmp, REGION), {}),
        ("indicators", "indicators", indicators_csv(tmp, REGION.prefix), {}),
        ("observations", "observations", observations_csv(tmp, REGION), {}),
        ("priorities", "priorities", priorities_csv(tmp, REGION), {}),
    ]
    results: dict[str, dict[str, Any]] = {}
    for key, kind, path, options in uploads:
        response = upload(client, kind, path, **options)
        assert response.status_code == 201, (key, response.text)
        body = response.json()
        assert body["status"] == "succeeded"
        results[key] = body["result"]
    # The default path: 202 at once, then the job is polled to its end.
    accepted = upload(client, "events", events_csv(tmp, REGION), wait=False, layer="ap-acled")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "queued"
    job = wait_for_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0
    results["events"] = job["result"]
    return results


# --- every kind ------------------------------------------------------------------------


def test_localities_two_levels_keep_names_verbatim(stack: Stack, loaded: dict) -> None:
    assert loaded["adm1"]["levels"] == {"1": 1}
    assert loaded["adm2"]["levels"] == {"2": 2}
    rows = stack.rows(
        "SELECT code, name, level, parent_code, names, ST_SRID(geom), GeometryType(geom), "
        "area_km2 FROM localities WHERE code LIKE 'AP%' ORDER BY code"
    )
    by_code = {row.code: row for row in rows}
    a, b = REGION.adm2
    assert set(by_code) == {REGION.adm1, a, b}
    assert by_code[REGION.adm1].name == "Région de Séguéla"
    assert by_code[REGION.adm1].names == {"ar": "منطقة سيغيلا", "en": "Région de Séguéla"}
    assert by_code[a].names == {"ar": "الرقة", "en": "Séguéla-Nord"}
    # HTML is data: stored exactly as written, never stripped or escaped in the database.
    assert by_code[b].name == SCRIPT
    assert by_code[a].parent_code == by_code[b].parent_code == REGION.adm1
    assert by_code[a].level == 2
    for row in rows:
        assert row.st_srid == 4326
        assert row.geometrytype == "MULTIPOLYGON"
        assert row.area_km2 > 0


def test_population_tables_wide_and_long(stack: Stack, loaded: dict) -> None:
    assert loaded["population_wide"]["rows"] == 2
    # The long (IBF) table came second and wins; its householdSize row is ignored.
    assert loaded["population_long"]["rows"] == 3
    rows = dict(stack.rows("SELECT code, population FROM localities WHERE code LIKE 'AP%'"))
    a, b = REGION.adm2
    assert rows == {REGION.adm1: 5000, a: 2000, b: 3000}
    assert stack.scalar("SELECT population_year FROM localities WHERE code = :c", c=a) == 2020


def _version(stack: Stack, layer: str, version: int = 1) -> Any:
    rows = stack.rows(
        "SELECT v.*, l.role, l.kind, l.unit, l.threshold, l.level_thresholds, "
        "ST_SRID(v.footprint) AS srid, ST_XMin(v.footprint) AS west "
        "FROM raster_versions v JOIN raster_layers l ON l.id = v.layer_id "
        "WHERE l.name = :name AND v.version = :version", name=layer, version=version,
    )
    assert len(rows) == 1, (layer, version)
    return rows[0]


def _assert_cog(stack: Stack, path: str) -> None:
    cog = Path(path)
    assert cog.is_file()
    assert cog.is_relative_to(stack.settings.storage.raster_dir)
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    assert valid, errors


def test_population_rasters_count_and_density(stack: Stack, loaded: dict) -> None:
    count = _version(stack, "ap-pop-count")
    assert count.role == "population" and count.value_kind == "count"
    assert count.statistics["total"] == pytest.approx(2.5 * 399)
    assert count.statistics["nodata_count"] == 1
    _assert_cog(stack, count.path)
    density = _version(stack, "ap-pop-density")
    assert density.statistics["density_converted"] is True
    # People per km² × the true area of each 0.01° cell (rows differ by latitude).
    geod = Geod(ellps="WGS84")
    expected = 0.0
    for row in range(20):
        top = REGION.y + 0.2 - row * 0.01
        area, _ = geod.polygon_area_perimeter([0, 0.01, 0.01, 0], [top, top, top - 0.01,
                                                                    top - 0.01])
        expected += 2.5 * abs(area) / 1e6 * (19 if row == 0 else 20)
    assert density.statistics["total"] == pytest.approx(expected, rel=1e-4)
    _assert_cog(stack, density.path)


def test_hazard_raster_becomes_a_cog_with_metadata(stack: Stack, loaded: dict) -> None:
    assert loaded["hazard"]["version"] == 1
    version = _version(stack, "ap-flood")
    assert (version.role, version.kind, version.unit, version.threshold) == (
        "hazard", "flood", "m", 0.5)
    assert version.level_thresholds == {"low": 1, "medium": 3, "high": 5}
    # The COG keeps the native grid; only the footprint is in EPSG:4326.
    assert version.crs == "EPSG:32736"
    assert version.srid == 4326
    assert 30 < version.west < 34
    assert (version.width, version.height) == (64, 64)
    assert version.statistics["max"] == 6.0
    _assert_cog(stack, version.path)


def test_events_acled_style(stack: Stack, loaded: dict) -> None:
    assert loaded["events"]["rows"] == 3
    rows = stack.rows(
        "SELECT e.event_date, e.event_type, e.actor, e.fatalities, e.attributes, "
        "ST_SRID(e.geom) AS srid, ST_Y(e.geom) AS lat FROM events e "
        "JOIN event_layers l ON l.id = e.layer_id WHERE l.name = 'ap-acled' ORDER BY 1"
    )
    assert [str(r.event_date) for r in rows] == ["2023-03-12", "2023-03-14", "2023-04-02"]
    assert [r.fatalities for r in rows] == [3, 0, None]
    assert rows[0].event_type == "Battles" and rows[0].actor == "Militia A"
    assert rows[0].attributes["notes"] == "clash, near market"
    assert rows[2].attributes["notes"] == SCRIPT
    assert all(r.srid == 4326 for r in rows)
    assert rows[0].lat == pytest.approx(REGION.y + 0.05)


def test_institutions_typed_by_vocabulary(stack: Stack, loaded: dict) -> None:
    assert loaded["institutions"]["by_type"] == {
        "health_centre": 1, "school_primary": 1, "shelter": 1}
    rows = {r.name: r for r in stack.rows(
        "SELECT name, type, capacity, sensitive, ST_SRID(geom) AS srid FROM institutions "
        "WHERE dataset_id = :ds", ds=loaded["institutions"]["dataset_id"])}
    assert rows["Safe house"].sensitive is True and rows["Safe house"].capacity == 12
    assert rows["École primaire"].capacity is None
    assert rows["Centre de Santé Séguéla"].type == "health_centre"
    assert {r.srid for r in rows.values()} == {4326}


def test_indicators_observations_priorities(stack: Stack, loaded: dict) -> None:
    indicators = dict(stack.rows(
        "SELECT code, polarity FROM indicators WHERE code LIKE 'ap\\_%'"))
    assert indicators == {"ap_water": "higher_is_better", "ap_food": "higher_is_worse"}
    observations = stack.rows(
        "SELECT l.code, i.code AS indicator, o.period, o.subgroup, o.value, o.sample_size "
        "FROM observations o JOIN localities l ON l.id = o.locality_id "
        "JOIN indicators i ON i.id = o.indicator_id WHERE l.code LIKE 'AP%' ORDER BY 1, 4"
    )
    a, b = REGION.adm2
    assert [(r.code, r.subgroup, r.value) for r in observations] == [
        (a, "all", 61.5), (a, "sex=female", 55.0), (b, "all", 41.0)]
    priorities = stack.rows(
        "SELECT p.rank, p.need FROM community_priorities p "
        "JOIN localities l ON l.id = p.locality_id WHERE l.code = :a ORDER BY 1", a=a)
    assert [(r.rank, r.need) for r in priorities] == [(1, "water"), (2, "health"),
                                                      (3, "schools")]


def test_datasets_record_each_upload_with_its_job(stack: Stack, loaded: dict) -> None:
    for result in loaded.values():
        row = stack.rows("SELECT d.kind, d.sha256, j.status FROM datasets d "
                         "JOIN jobs j ON j.id = d.job_id WHERE d.id = :id",
                         id=result["dataset_id"])
        assert len(row) == 1 and row[0].status == "succeeded" and len(row[0].sha256) == 64


# --- who may upload --------------------------------------------------------------------


def test_upload_needs_the_uploader_role(stack: Stack, tmp_path: Path) -> None:
    path = hazard_raster(tmp_path)
    before = snapshot(stack)
    with stack.client(None) as anonymous:
        response = upload(anonymous, "hazard", path, name="nope")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert "uploader" in response.json()["message"]
        anonymous.headers["X-API-Key"] = "ra_0000_not-a-real-key"
        assert upload(anonymous, "hazard", path, name="nope").status_code == 401
    with stack.client("analyst") as analyst:
        response = upload(analyst, "hazard", path, name="nope")
        assert response.status_code == 403
        assert "uploader" in response.json()["message"]
    assert_nothing_left(stack, before)


# --- hazard versions -------------------------------------------------------------------


def test_hazard_reupload_is_a_new_version_and_the_old_one_stays(
    stack: Stack, client: httpx.Client, tmp_path: Path
) -> None:
    first = upload(client, "hazard", hazard_raster(tmp_path, "v1.tif"), name="ap-versions")
    assert first.status_code == 201, first.text
    v1 = _version(stack, "ap-versions", 1)
    # A failed re-upload changes nothing: v1's row and file stay, no v2 appears.
    corrupt = tmp_path / "v2.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
    before = snapshot(stack)
    failed = upload(client, "hazard", corrupt, name="ap-versions")
    assert failed.status_code == 422
    assert_nothing_left(stack, before)
    assert Path(v1.path).is_file()
    # While v2 is being written, v1 still serves; afterwards both versions exist.
    second = upload(client, "hazard", big_raster(tmp_path / "v2big.tif", 1200), wait=False,
                    name="ap-versions")
    assert second.status_code == 202
    while client.get(second.json()["status_url"]).json()["status"] in ("queued", "running"):
        assert Path(v1.path).is_file()
        assert _version(stack, "ap-versions", 1).path == v1.path
        time.sleep(0.05)
    assert wait_for_job(client, second.json()["job_id"])["status"] == "succeeded"
    v2 = _version(stack, "ap-versions", 2)
    assert v2.path != v1.path and v2.width == 1200
    _assert_cog(stack, v1.path)
    _assert_cog(stack, v2.path)


# --- the same layer twice at once --------------------------------------------------------


def test_upload_while_the_layer_is_locked_is_409_naming_the_job(
    stack: Stack, client: httpx.Client, tmp_path: Path
) -> None:
    holder = create_job(stack.engine, "ingest:hazard", {}, "raster:ap-locked")
    before = snapshot(stack)
    response = upload(client, "hazard", hazard_raster(tmp_path), name="ap-locked")
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["code"] == "conflict"
    assert str(holder) in body["message"]
    assert body["details"]["job_id"] == str(holder)
    assert_nothing_left(stack, before)
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE jobs SET status = 'failed' WHERE id = :id"), {"id": holder})
    assert upload(client, "hazard", hazard_raster(tmp_path), name="ap-locked").status_code == 201


@pytest.mark.slow
def test_two_simultaneous_uploads_of_one_layer(
    stack: Stack, client: httpx.Client, tmp_path: Path
) -> None:
    # Big enough (31 MB) that the winner's job is still running when the loser asks.
    source = big_raster(tmp_path / "race.tif", 2800)
    barrier = threading.Barrier(2)
    responses: list[httpx.Response] = []

    def send() -> None:
        with stack.client() as own:
            barrier.wait()
            responses.append(upload(own, "hazard", source, name="ap-race"))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 201).json()
    loser = next(r for r in responses if r.status_code == 409).json()
    assert winner["job_id"] in loser["message"]
    assert "raster:ap-race" in loser["message"]
    assert stack.scalar("SELECT count(*) FROM raster_versions v JOIN raster_layers l "
                        "ON l.id = v.layer_id WHERE l.name = 'ap-race'") == 1


# --- size limit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_app(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same database served by an app whose upload limit is 10,000 bytes."""
    settings = Settings(
        database=DatabaseSettings(url=stack.url),
        storage=StorageSettings(data_dir=tmp_path_factory.mktemp("tiny-data"),
                                max_upload_bytes=10_000),
    )
    with LiveServer(settings) as server:
        yield Stack(stack.url, settings, stack.engine, server.base_url, stack.uploader_key,
                    stack.analyst_key)


@pytest.mark.parametrize("size", [30_000, 500_000], ids=["counted-while-saving", "declared"])
def test_upload_over_the_size_limit_is_413(tiny_app: Stack, tmp_path: Path, size: int) -> None:
    path = tmp_path / "big.csv"
    path.write_text("name,lat,lon\n" + "x,1,1\n" * (size // 6))
    before = snapshot(tiny_app)
    with tiny_app.client() as tiny:
        response = upload(tiny, "institutions", path)
    assert response.status_code == 413, response.text
    assert "over the limit of 10,000 bytes" in response.json()["message"]
    assert_nothing_left(tiny_app, before)
    assert list(tiny_app.settings.storage.staging_dir.glob("*")) == []


# --- user strings never reach GDAL -------------------------------------------------------


@pytest.fixture
def recorder() -> Iterator[tuple[int, list[str]]]:
    """A local HTTP server recording every request it gets, and its port."""
    hits: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        do_HEAD = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, hits
    finally:
        server.shutdown()


def test_hostile_file_names_are_only_labels(
    stack: Stack, client: httpx.Client, tmp_path: Path, recorder: tuple[int, list[str]]
) -> None:
    port, hits = recorder
    url_name = f"/vsicurl/http://127.0.0.1:{port}/x.tif"
    loaded = upload(client, "hazard", hazard_raster(tmp_path), filename=url_name,
                    name="ap-hostile-name")
    assert loaded.status_code == 201, loaded.text
    assert hits == []
    assert stack.scalar("SELECT source_filename FROM datasets WHERE id = :id",
                        id=loaded.json()["result"]["dataset_id"]) == url_name
    assert _version(stack, "ap-hostile-name").statistics["max"] == 6.0
    # Garbage named /etc/passwd is judged by its content; the real file is never read.
    before = snapshot(stack)
    junk = write_text(tmp_path / "junk", "just words\n")
    refused = upload(client, "hazard", junk, filename="/etc/passwd", name="ap-hostile-2")
    assert refused.status_code == 422
    assert "/etc/passwd" in refused.json()["message"]
    assert "root:" not in refused.text
    assert_nothing_left(stack, before)


def test_hostile_field_name_option_is_only_a_column_name(
    stack: Stack, client: httpx.Client, tmp_path: Path, recorder: tuple[int, list[str]]
) -> None:
    port, hits = recorder
    adm1, _ = localities_files(tmp_path, Region("HF"))
    before = snapshot(stack)
    field = f"/vsicurl/http://127.0.0.1:{port}/x"
    response = upload(client, "localities", adm1, code_field=field)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert "no such column" in response.json()["message"]
    assert hits == []
    assert_nothing_left(stack, before)


def test_options_as_one_json_field(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    response = upload(client, "hazard", hazard_raster(tmp_path),
                      options={"name": "ap-json-options", "unit": "cm", "threshold": 2})
    assert response.status_code == 201, response.text
    version = _version(stack, "ap-json-options")
    assert (version.unit, version.threshold) == ("cm", 2)
    assert not math.isnan(version.statistics["mean"])


def test_option_text_starting_with_a_brace_is_text(stack: Stack, client: httpx.Client,
                                                   tmp_path: Path) -> None:
    response = upload(client, "hazard", hazard_raster(tmp_path), name="ap-brace",
                      description="{draft} flood depth")
    assert response.status_code == 201, response.text
    assert stack.scalar("SELECT description FROM raster_layers WHERE name = 'ap-brace'") == (
        "{draft} flood depth")


def test_geopackage_in_utm_is_stored_in_wgs84(stack: Stack, client: httpx.Client,
                                              tmp_path: Path) -> None:
    import geopandas as gpd
    from shapely.geometry import box

    frame = gpd.GeoDataFrame(
        {"code": ["UT1"], "name": ["Zone Sud"], "pop": [1500]},
        geometry=[box(500_000, 9_700_000, 510_000, 9_710_000)], crs="EPSG:32736")
    frame.to_file(tmp_path / "utm.gpkg", driver="GPKG")
    response = upload(client, "localities", tmp_path / "utm.gpkg", level=1,
                      population_field="pop")
    assert response.status_code == 201, response.text
    row = stack.rows("SELECT population, ST_SRID(geom) AS srid, ST_XMin(geom) AS west, "
                     "ST_YMin(geom) AS south, area_km2 FROM localities WHERE code = 'UT1'")[0]
    assert row.srid == 4326 and row.population == 1500
    assert row.west == pytest.approx(33.0, abs=0.01)
    assert row.south == pytest.approx(-2.71, abs=0.01)
    assert row.area_km2 == pytest.approx(100, rel=0.01)


def test_indicator_metadata_as_yaml(stack: Stack, client: httpx.Client, tmp_path: Path) -> None:
    path = write_text(tmp_path / "indicators.yaml", (
        "indicators:\n"
        "  - code: ap_school\n    name: École — enrolment\n    dimension: education\n"
        "    polarity: higher_is_better\n    cutoff: 80\n    unit: '%'\n"))
    response = upload(client, "indicators", path)
    assert response.status_code == 201, response.text
    row = stack.rows("SELECT name, cutoff, unit FROM indicators WHERE code = 'ap_school'")[0]
    assert (row.name, row.cutoff, row.unit) == ("École — enrolment", 80, "%")
