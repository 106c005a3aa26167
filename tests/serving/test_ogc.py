"""OGC API - Features over real HTTP: paging, bbox, disclosure rules, and GDAL's OAPIF driver."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine

from geo.keys import create_key

CODES = ["TSO1", "TSO101", "TSO102", "TSOE", "TSOW"]
AREA = "100,-41,101,-40"


def _sql(db_url: str) -> str:
    return db_url.replace("+psycopg", "")


@pytest.fixture(scope="module")
def ogc_data(db_url: str, live_server: Any) -> Iterator[dict[str, Any]]:
    """Localities (one with a tiny population), a run, institutions (one sensitive), events."""
    with psycopg.connect(_sql(db_url)) as conn:
        conn.execute(
            "INSERT INTO localities (code, name, level, parent_code, population, names, geom) "
            "VALUES "
            "('TSO1', 'Parent', 1, NULL, 5000, '{}', "
            " ST_Multi(ST_MakeEnvelope(100, -41, 101, -40, 4326))),"
            "('TSO101', 'West child', 2, 'TSO1', 4000, '{}', "
            " ST_Multi(ST_MakeEnvelope(100, -41, 100.5, -40, 4326))),"
            "('TSO102', 'East child', 2, 'TSO1', 4, '{}', "
            " ST_Multi(ST_MakeEnvelope(100.5, -41, 101, -40, 4326))),"
            "('TSOE', 'Date line east', 2, NULL, 50, '{}', "
            " ST_Multi(ST_MakeEnvelope(179.5, -41, 180, -40, 4326))),"
            "('TSOW', 'Date line west', 2, NULL, 50, '{}', "
            " ST_Multi(ST_MakeEnvelope(-180, -41, -179.5, -40, 4326)))"
        )
        method = conn.execute(
            "INSERT INTO methodologies (name, version, document) VALUES ('ts-ogc', 1, '{}') "
            "RETURNING id").fetchone()[0]
        run = conn.execute(
            "INSERT INTO score_runs (methodology_id, status, data_versions, parameters, summary, "
            "completed_at) VALUES (%s, 'succeeded', '{}', '{}', '{}', now()) RETURNING id",
            [method]).fetchone()[0]
        conn.execute(
            "INSERT INTO score_results (run_id, locality_id, composite, pillars, dimensions, "
            "components, details, stressed_dimensions, compounded, hotspot, rank) "
            "SELECT %s, id, 7.5, '{\"hazard_exposure\": 6.1, \"vulnerability\": 4.2, "
            "\"lack_of_coping_capacity\": 7.0}', '{}', '{}', '{}', 3, true, 'hot_95', 1 "
            "FROM localities WHERE code = 'TSO101'", [run])
        institutions = conn.execute(
            "INSERT INTO institutions (type, name, capacity, sensitive, attributes, geom) VALUES "
            "('health_centre', 'TS clinic', 10, false, '{}', ST_Point(100.9, -40.9, 4326)), "
            "('shelter', 'TS secret shelter', 20, true, '{\"address\": \"x\"}', "
            " ST_Point(100.01, -40.99, 4326)) RETURNING id").fetchall()
        layer = conn.execute(
            "INSERT INTO event_layers (name, kind) VALUES ('ts-ogc-events', 'conflict') "
            "RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO events (layer_id, event_date, event_type, actor, fatalities, attributes, "
            "geom) VALUES (%s, '2024-01-10', 'battle', 'A', 2, '{}', ST_Point(100.2, -40.2, 4326)),"
            "(%s, '2024-03-10', 'riot', 'B', 0, '{}', ST_Point(100.3, -40.3, 4326))",
            [layer, layer])
        conn.commit()
    engine = create_engine(db_url)
    analyst = create_key(engine, "ts-ogc-analyst", "analyst").secret
    engine.dispose()
    yield {"run": run, "analyst": analyst, "clinic": institutions[0][0],
           "shelter": institutions[1][0]}
    with psycopg.connect(_sql(db_url)) as conn:
        conn.execute("DELETE FROM score_runs WHERE id = %s", [run])
        conn.execute("DELETE FROM methodologies WHERE id = %s", [method])
        conn.execute("DELETE FROM institutions WHERE name LIKE 'TS %%'")
        conn.execute("DELETE FROM event_layers WHERE id = %s", [layer])
        conn.execute("DELETE FROM localities WHERE code LIKE 'TSO%%' AND parent_code IS NOT NULL")
        conn.execute("DELETE FROM localities WHERE code LIKE 'TSO%%'")
        conn.execute("DELETE FROM api_keys WHERE name = 'ts-ogc-analyst'")
        conn.commit()


def _items(http: httpx.Client, collection: str, **params: Any) -> dict[str, Any]:
    response = http.get(f"/ogc/collections/{collection}/items", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    return response.json()


def _by_code(page: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {feature["id"]: feature for feature in page["features"]}


def test_landing_conformance_and_collections(http: httpx.Client, ogc_data: dict) -> None:
    landing = http.get("/ogc").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conformance = http.get("/ogc/conformance").json()["conformsTo"]
    assert any(c.endswith("/conf/geojson") for c in conformance)
    collections = http.get("/ogc/collections").json()["collections"]
    assert {c["id"] for c in collections} == {"localities", "institutions", "events"}
    one = http.get("/ogc/collections/localities").json()
    west, south, east, north = one["extent"]["spatial"]["bbox"][0]
    assert west <= 100 and south <= -41 and east >= 101 and north >= -40
    assert any(link["rel"] == "items" for link in one["links"])


def test_paging_follows_next_links_to_every_feature(http: httpx.Client, ogc_data: dict) -> None:
    page = _items(http, "localities", bbox=AREA, limit=1)
    assert page["numberMatched"] == 3 and page["numberReturned"] == 1
    seen = [page["features"][0]["id"]]
    while True:
        following = [link for link in page["links"] if link["rel"] == "next"]
        if not following:
            break
        page = httpx.get(following[0]["href"]).json()
        seen += [feature["id"] for feature in page["features"]]
        assert any(link["rel"] == "prev" for link in page["links"])
    assert sorted(seen) == ["TSO1", "TSO101", "TSO102"]


def test_localities_carry_latest_scores_and_withhold_small_counts(
    http: httpx.Client, ogc_data: dict
) -> None:
    public = _by_code(_items(http, "localities", bbox=AREA))
    scored = public["TSO101"]["properties"]
    assert scored["run"] == ogc_data["run"]
    assert scored["composite"] == 7.5 and scored["hazard_exposure"] == 6.1
    assert scored["stressed_dimensions"] == 3 and scored["compounded"] is True
    assert scored["hotspot"] == "hot_95"
    assert public["TSO1"]["properties"]["composite"] is None  # no result: null, not 0
    tiny = public["TSO102"]["properties"]
    assert tiny["population"] is None and tiny["population_withheld"] is True
    headers = {"X-API-Key": ogc_data["analyst"]}
    analyst = http.get("/ogc/collections/localities/items/TSO102", headers=headers).json()
    assert analyst["properties"]["population"] == 4
    assert analyst["properties"]["population_withheld"] is False


def test_single_item_and_404s(http: httpx.Client, ogc_data: dict) -> None:
    item = http.get("/ogc/collections/localities/items/TSO101")
    assert item.status_code == 200
    assert item.headers["content-type"].startswith("application/geo+json")
    assert item.json()["geometry"]["type"] == "MultiPolygon"
    for path in ("/ogc/collections/nope", "/ogc/collections/nope/items",
                 "/ogc/collections/localities/items/NOPE",
                 "/ogc/collections/institutions/items/abc",
                 "/ogc/collections/events/items/99999999999"):
        response = http.get(path)
        assert response.status_code == 404, path
        assert set(response.json()) == {"code", "message", "details"}


def test_bbox_across_the_antimeridian(http: httpx.Client, ogc_data: dict) -> None:
    codes = set(_by_code(_items(http, "localities", bbox="179,-41,-179,-40")))
    assert {"TSOE", "TSOW"} <= codes
    assert not codes & {"TSO1", "TSO101"}


@pytest.mark.parametrize("bbox", [
    "1,2,3", "a,b,c,d", "0,10,1,5", "nan,0,1,1", "0,0,200,1", "1,2,3,4,5", "",
])
def test_malformed_bbox_is_refused_in_the_error_shape(http: httpx.Client, bbox: str) -> None:
    response = http.get("/ogc/collections/localities/items", params={"bbox": bbox})
    if bbox == "":
        assert response.status_code == 200  # an empty bbox is no filter
        return
    assert response.status_code in (400, 422)
    assert response.json()["code"] == "invalid_input"


def test_limit_over_maximum_is_clamped(http: httpx.Client, ogc_data: dict) -> None:
    page = _items(http, "localities", bbox=AREA, limit=10_000_000)
    assert page["numberReturned"] == 3
    assert "limit=1000" in page["links"][0]["href"]
    for bad in ("0", "-1", "x"):
        assert http.get("/ogc/collections/localities/items", params={"limit": bad}).status_code \
            == 422


def test_sensitive_institution_is_generalised_below_analyst(
    http: httpx.Client, ogc_data: dict
) -> None:
    shelter = f"/ogc/collections/institutions/items/{ogc_data['shelter']}"
    public = http.get(shelter).json()
    assert public["properties"]["generalised"] is True
    assert public["properties"]["name"] is None and public["properties"]["attributes"] is None
    lon, lat = public["geometry"]["coordinates"]
    assert (round(lon, 6), round(lat, 6)) != (100.01, -40.99)
    assert 100 <= lon <= 100.5 and -41 <= lat <= -40  # inside the finest containing locality
    # a bbox around the exact spot must not find it for the public ...
    exact = "100.0,-41,100.02,-40.98"
    assert ogc_data["shelter"] not in _by_code(_items(http, "institutions", bbox=exact))
    # ... but the analyst sees the real record
    headers = {"X-API-Key": ogc_data["analyst"]}
    real = http.get(shelter, headers=headers).json()
    assert real["properties"]["name"] == "TS secret shelter"
    assert real["geometry"]["coordinates"] == [100.01, -40.99]
    clinic = http.get(f"/ogc/collections/institutions/items/{ogc_data['clinic']}").json()
    assert clinic["properties"]["name"] == "TS clinic"


def test_events_filter_by_datetime(http: httpx.Client, ogc_data: dict) -> None:
    page = _items(http, "events", bbox=AREA, datetime="2024-02-01/..")
    assert [f["properties"]["event_type"] for f in page["features"]] == ["riot"]
    page = _items(http, "events", bbox=AREA, datetime="2024-01-10")
    assert [f["properties"]["event_type"] for f in page["features"]] == ["battle"]
    bad = http.get("/ogc/collections/events/items", params={"datetime": "yesterday"})
    assert bad.status_code == 422


@pytest.mark.skipif(shutil.which("ogrinfo") is None, reason="GDAL's ogrinfo is not installed")
def test_gdal_oapif_driver_reads_localities(
    live_server: Any, db_url: str, ogc_data: dict
) -> None:
    result = subprocess.run(
        ["ogrinfo", "-ro", "-so", f"OAPIF:{live_server.base_url}/ogc", "localities"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Feature Count: (\d+)", result.stdout)
    assert match, result.stdout
    with psycopg.connect(_sql(db_url)) as conn:
        expected = conn.execute("SELECT count(*) FROM localities").fetchone()[0]
    assert int(match.group(1)) == expected
    assert "composite" in result.stdout and "hotspot" in result.stdout
