"""The demo region goes in through the ingestion paths with the documented counts."""

from __future__ import annotations

import psycopg
import pytest

from geo.demo.generate import COUNT_RANGES
from geo.settings import Settings


def _query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    url = (settings.database.url or "").replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params or None).fetchall()


def test_documented_counts(demo_settings: Settings) -> None:
    levels = dict(_query(demo_settings, "SELECT level, count(*) FROM localities GROUP BY level"))
    assert levels[1] == 1
    assert COUNT_RANGES["districts"][0] <= levels[2] <= COUNT_RANGES["districts"][1]
    assert COUNT_RANGES["villages"][0] <= levels[3] <= COUNT_RANGES["villages"][1]
    (events,), = _query(demo_settings, "SELECT count(*) FROM events")
    assert COUNT_RANGES["events"][0] <= events <= COUNT_RANGES["events"][1]
    (institutions,), = _query(demo_settings, "SELECT count(*) FROM institutions")
    assert COUNT_RANGES["institutions"][0] <= institutions <= COUNT_RANGES["institutions"][1]
    types = _query(demo_settings, "SELECT count(DISTINCT type) FROM institutions")[0][0]
    assert types >= 8
    rasters = dict(_query(demo_settings, "SELECT role, count(*) FROM raster_layers GROUP BY role"))
    assert rasters == {"hazard": 3, "population": 1}
    periods = _query(demo_settings, "SELECT DISTINCT period FROM observations ORDER BY 1")
    assert [p for (p,) in periods] == ["2024", "2026"]
    small = _query(demo_settings, "SELECT count(*) FROM observations WHERE sample_size < 10")
    assert small[0][0] > 0, "some subgroup cells must be small enough to withhold"
    priorities = _query(demo_settings,
                        "SELECT count(DISTINCT locality_id) FROM community_priorities")
    assert 15 <= priorities[0][0] <= 25


def test_every_upload_was_a_succeeded_job(demo_settings: Settings) -> None:
    jobs = dict(_query(demo_settings, "SELECT status, count(*) FROM jobs "
                                      "WHERE kind LIKE 'ingest:%' GROUP BY status"))
    assert jobs == {"succeeded": 14}
    (datasets,), = _query(demo_settings, "SELECT count(*) FROM datasets")
    assert datasets == 14


def test_geometries_valid_and_in_4326(demo_settings: Settings) -> None:
    rows = _query(demo_settings,
                  "SELECT count(*) FILTER (WHERE NOT ST_IsValid(geom)), "
                  "count(*) FILTER (WHERE ST_SRID(geom) <> 4326), "
                  "count(*) FILTER (WHERE GeometryType(geom) <> 'MULTIPOLYGON') FROM localities")
    assert rows[0] == (0, 0, 0)
    (orphans,), = _query(demo_settings,
                         "SELECT count(*) FROM localities WHERE level > 1 AND parent_code IS NULL")
    assert orphans == 0


def test_tile_outlines_built_at_ingest(demo_settings: Settings) -> None:
    rows = _query(demo_settings, "SELECT (SELECT count(*) FROM locality_tile_geometry), "
                                 "(SELECT count(*) FROM localities)")
    assert rows[0][0] == rows[0][1]


def test_villages_tile_their_districts(demo_settings: Settings) -> None:
    rows = _query(demo_settings,
                  "SELECT d.code, ST_Area(d.geom::geography), "
                  "ST_Area(ST_Union(v.geom)::geography) FROM localities d "
                  "JOIN localities v ON v.parent_code = d.code WHERE d.level = 2 "
                  "GROUP BY d.code, d.geom")
    for code, district_area, villages_area in rows:
        assert villages_area == pytest.approx(district_area, rel=1e-4), code


def test_arabic_names_kept(demo_settings: Settings) -> None:
    names = _query(demo_settings, "SELECT names->>'ar' FROM localities WHERE level = 3 LIMIT 5")
    assert all(name and any("\u0600" <= ch <= "\u06ff" for ch in name) for (name,) in names)


def test_second_load_is_a_no_op(demo_settings: Settings) -> None:
    from geo.db import build_engine
    from geo.demo.load import load_demo

    before = _query(demo_settings, "SELECT count(*) FROM localities")[0][0]
    engine = build_engine(demo_settings.database.url or "", demo_settings)
    try:
        assert load_demo(engine, demo_settings).already_loaded
    finally:
        engine.dispose()
    assert _query(demo_settings, "SELECT count(*) FROM localities")[0][0] == before


def test_healthz_reports_the_demo(demo_http) -> None:  # type: ignore[no-untyped-def]
    body = demo_http.get("/healthz").json()
    assert body["database"]["status"] == "up"
    assert body["database"]["localities_by_level"]["3"] >= 350


def test_household_microdata_loaded_and_measured_at_every_level(demo_settings: Settings,
                                                                 demo_run: dict) -> None:
    (people, villages), = _query(demo_settings, "SELECT count(*), count(DISTINCT locality_id) "
                                                "FROM household_records")
    assert people > 5000 and 10 <= villages <= 40
    rows = _query(demo_settings,
                  "SELECT l.level, count(*) FROM score_results r JOIN localities l ON "
                  "l.id = r.locality_id WHERE r.run_id = %s AND r.details -> "
                  "'multidimensional' ->> 'method' = 'alkire_foster' GROUP BY 1 ORDER BY 1",
                  (demo_run["run_id"],))
    levels = dict(rows)
    assert levels[1] == 1 and levels[2] >= 1 and levels[3] == villages
