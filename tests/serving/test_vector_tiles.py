"""Vector tiles of localities over real HTTP: content, runs, cache, ETags, roles, bad addresses."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import httpx
import mapbox_vector_tile
import psycopg
import pytest
from sqlalchemy import create_engine

from geo.ingest.tile_geometry import BANDS, refresh_tile_geometry
from geo.keys import create_key


def _sql(db_url: str) -> str:
    return db_url.replace("+psycopg", "")


def tile_of(lon: float, lat: float, zoom: int) -> tuple[int, int, int]:
    """Return the WebMercatorQuad tile holding lon/lat."""
    n = 2**zoom
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return zoom, x, y


@pytest.fixture(scope="module")
def tile_data(db_url: str, live_server: Any) -> Iterator[dict[str, Any]]:
    """Two levels of localities near 102.5E 40.5S, two runs; tile geometry refreshed."""
    with psycopg.connect(_sql(db_url)) as conn:
        conn.execute(
            "INSERT INTO localities (code, name, level, parent_code, population, names, geom) "
            "VALUES "
            "('TSV1', 'Region', 1, NULL, 900, '{}', "
            " ST_Multi(ST_MakeEnvelope(102, -41, 103, -40, 4326)))")
        conn.execute(
            "INSERT INTO localities (code, name, level, parent_code, population, names, geom) "
            "VALUES "
            "('TSV101', 'Big village', 2, 'TSV1', 800, '{}', "
            " ST_Multi(ST_Buffer(ST_Point(102.3, -40.5, 4326), 0.2, 64))),"
            "('TSV102', 'Tiny hamlet', 2, 'TSV1', 3, '{}', "
            " ST_Multi(ST_MakeEnvelope(102.6, -40.9, 102.9, -40.1, 4326)))")
        method = conn.execute(
            "INSERT INTO methodologies (name, version, document) VALUES ('ts-tiles', 1, '{}') "
            "RETURNING id").fetchone()[0]
        runs = []
        for composite, age in ((3.0, "2 hours"), (8.25, "1 hour")):
            run = conn.execute(
                "INSERT INTO score_runs (methodology_id, status, data_versions, parameters, "
                "summary, completed_at) VALUES (%s, 'succeeded', '{}', '{}', '{}', "
                "now() - CAST(%s AS interval)) RETURNING id", [method, age]).fetchone()[0]
            conn.execute(
                "INSERT INTO score_results (run_id, locality_id, composite, pillars, dimensions, "
                "components, details, stressed_dimensions, compounded, hotspot, rank) "
                "SELECT %s, id, %s, '{\"hazard_exposure\": 6.5, \"vulnerability\": 4.0, "
                "\"lack_of_coping_capacity\": \"n/a\"}', '{}', '{}', '{}', 2, false, "
                "'not_significant', 4 FROM localities WHERE code LIKE 'TSV%%'", [run, composite])
            runs.append(run)
        running = conn.execute(
            "INSERT INTO score_runs (methodology_id, status, data_versions, parameters, summary) "
            "VALUES (%s, 'running', '{}', '{}', '{}') RETURNING id", [method]).fetchone()[0]
        conn.commit()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        refresh_tile_geometry(conn)
    analyst = create_key(engine, "ts-tiles-analyst", "analyst").secret
    engine.dispose()
    service = getattr(live_server.app.state, "tile_service", None)
    if service is not None:
        service.runs.forget()  # our run is now the latest; don't wait for the TTL
    yield {"old_run": runs[0], "new_run": runs[1], "running": running, "analyst": analyst}
    with psycopg.connect(_sql(db_url)) as conn:
        conn.execute("DELETE FROM score_runs WHERE methodology_id = %s", [method])
        conn.execute("DELETE FROM methodologies WHERE id = %s", [method])
        conn.execute("DELETE FROM localities WHERE code LIKE 'TSV1_%%'")
        conn.execute("DELETE FROM localities WHERE code = 'TSV1'")
        conn.execute("DELETE FROM api_keys WHERE name = 'ts-tiles-analyst'")
        conn.commit()


def _decode(body: bytes) -> dict[str, dict[str, Any]]:
    layers = mapbox_vector_tile.decode(body)
    return {f["properties"]["code"]: f["properties"] for f in layers["localities"]["features"]}


def _tile(http: httpx.Client, zoom: int, **params: Any) -> httpx.Response:
    z, x, y = tile_of(102.3, -40.5, zoom)
    return http.get(f"/tiles/localities/{z}/{x}/{y}.mvt", params=params)


@pytest.mark.parametrize("zoom", [band.min_zoom for band in BANDS][1:] + [3, 16])
def test_tile_carries_code_name_and_latest_scores(
    http: httpx.Client, tile_data: dict, zoom: int
) -> None:
    response = _tile(http, zoom)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert response.headers["x-score-run"] == str(tile_data["new_run"])
    features = _decode(response.content)
    village = features["TSV101"]
    assert village["name"] == "Big village" and village["level"] == 2
    assert village["composite"] == 8.25 and village["hazard_exposure"] == 6.5
    assert "lack_of_coping_capacity" not in village  # "n/a" in the run is left out, not 0
    assert village["stressed_dimensions"] == 2 and village["compounded"] is False
    assert village["hotspot"] == "not_significant" and village["rank"] == 4


def test_run_and_level_parameters(http: httpx.Client, tile_data: dict) -> None:
    old = _tile(http, 9, run=str(tile_data["old_run"]))
    assert _decode(old.content)["TSV101"]["composite"] == 3.0
    assert "immutable" not in old.headers["cache-control"]
    assert "max-age=86400" in old.headers["cache-control"]
    assert "max-age=60" in _tile(http, 9).headers["cache-control"]
    regions = _decode(_tile(http, 9, level=1).content)
    assert set(regions) >= {"TSV1"} and "TSV101" not in regions
    for run in ("999999", "abc", "1;DROP TABLE localities", str(tile_data["running"])):
        response = _tile(http, 9, run=run)
        assert response.status_code == 404, run
        assert response.json()["code"] == "not_found"


def test_empty_tile_is_200_and_empty(http: httpx.Client, tile_data: dict) -> None:
    response = http.get("/tiles/localities/14/0/0.mvt")
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize("path", [
    "-1/0/0", "0/-1/0", "1/0/2", "1/2/0", "31/0/0", "1.5/0/0", "a/0/0", "0/0/0x1",
    "3/8/1", "99999999999/0/0",
])
def test_bad_tile_addresses_are_400(http: httpx.Client, path: str) -> None:
    response = http.get(f"/tiles/localities/{path}.mvt")
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_tile"


def test_etag_and_conditional_requests(http: httpx.Client, tile_data: dict) -> None:
    first = _tile(http, 10, run=str(tile_data["new_run"]))
    etag = first.headers["etag"]
    again = _tile(http, 10, run=str(tile_data["new_run"]))
    assert again.headers["etag"] == etag and again.content == first.content
    z, x, y = tile_of(102.3, -40.5, 10)
    not_modified = http.get(f"/tiles/localities/{z}/{x}/{y}.mvt",
                            params={"run": tile_data["new_run"]},
                            headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    changed = http.get(f"/tiles/localities/{z}/{x}/{y}.mvt", params={"run": tile_data["new_run"]},
                       headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200


def test_cached_analyst_tile_never_reaches_the_public(http: httpx.Client, tile_data: dict) -> None:
    headers = {"X-API-Key": tile_data["analyst"]}
    z, x, y = tile_of(102.75, -40.5, 11)
    url = f"/tiles/localities/{z}/{x}/{y}.mvt"
    analyst = http.get(url, headers=headers)
    assert analyst.status_code == 200
    assert analyst.headers["cache-control"].startswith("private")
    assert _decode(analyst.content)["TSV102"]["population"] == 3
    public = http.get(url)  # same tile, same run, now cached for the analyst
    hamlet = _decode(public.content)["TSV102"]
    assert "population" not in hamlet and hamlet["population_withheld"] is True
    assert public.headers["etag"] != analyst.headers["etag"]
    assert _decode(http.get(url, headers=headers).content)["TSV102"]["population"] == 3
    assert http.get(url, headers={"X-API-Key": "ra_nope_nope"}).status_code == 401


def test_tilejson(http: httpx.Client, tile_data: dict) -> None:
    document = http.get("/tiles/localities/tilejson.json", params={"level": 2}).json()
    assert document["tilejson"] == "3.0.0"
    assert document["tiles"][0].endswith(
        f"/tiles/localities/{{z}}/{{x}}/{{y}}.mvt?run={tile_data['new_run']}&level=2")
    assert document["vector_layers"][0]["id"] == "localities"
    assert "composite" in document["vector_layers"][0]["fields"]
    assert http.get("/tiles/localities/tilejson.json", params={"run": "0"}).status_code == 404


def test_refresh_of_some_localities(db_url: str, http: httpx.Client, tile_data: dict) -> None:
    with psycopg.connect(_sql(db_url)) as conn:
        conn.execute("UPDATE localities SET name = 'Renamed' WHERE code = 'TSV102'")
        ids = [row[0] for row in conn.execute("SELECT id FROM localities WHERE code = 'TSV102'")]
        conn.commit()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        assert refresh_tile_geometry(conn, ids) == 1
    engine.dispose()
    z, x, y = tile_of(102.75, -40.5, 11)
    assert _decode(http.get(f"/tiles/localities/{z}/{x}/{y}.mvt").content)["TSV102"]["name"] \
        == "Renamed"
