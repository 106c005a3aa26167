"""A score run over the demo produces every figure, stored immutably and addressable."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from geo.keys import create_key
from geo.settings import Settings


def _query(settings: Settings, sql: str, params: tuple = ()) -> list[tuple]:
    url = (settings.database.url or "").replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def test_every_locality_scored_at_every_level(demo_settings: Settings, demo_run: dict) -> None:
    run_id = demo_run["run_id"]
    rows = _query(demo_settings,
                  "SELECT l.level, count(*), count(r.composite) FROM localities l "
                  "JOIN score_results r ON r.locality_id = l.id AND r.run_id = %s "
                  "GROUP BY l.level ORDER BY l.level", (run_id,))
    total = _query(demo_settings, "SELECT count(*) FROM localities")[0][0]
    assert sum(count for _, count, _ in rows) == total
    for level, count, scored in rows:
        assert scored == count, f"level {level}: {count - scored} localities without a composite"


def test_figures_are_in_range_and_consistent(demo_settings: Settings, demo_run: dict) -> None:
    rows = _query(demo_settings,
                  "SELECT composite, completeness, stressed_dimensions, compounded, pillars, "
                  "dimensions, rank, rank_low, rank_high, hotspot, quadrant, details "
                  "FROM score_results r JOIN localities l ON l.id = r.locality_id "
                  "WHERE run_id = %s AND l.level = 3", (demo_run["run_id"],))
    ranks = sorted(row[6] for row in rows)
    assert ranks == list(range(1, len(rows) + 1))
    for (composite, completeness, stressed, compounded, pillars, dimensions, rank, low, high,
         hotspot, quadrant, details) in rows:
        assert 0 <= composite <= 10 and 0 < completeness <= 1
        assert set(pillars) == {"hazard_exposure", "vulnerability", "lack_of_coping_capacity"}
        assert stressed == sum(1 for d in dimensions.values() if d["stressed"])
        assert compounded == (stressed >= 3)
        assert low <= rank <= high or low <= high
        assert hotspot in {"hot_99", "hot_95", "hot_90", "not_significant", "cold_90",
                           "cold_95", "cold_99"}
        assert quadrant.endswith("_vulnerability")
        assert details["hazards"] and details["conflict"] and details["access"]
        assert details["top_drivers"]


def test_people_exposed_by_subgroup(demo_settings: Settings, demo_run: dict) -> None:
    rows = _query(demo_settings,
                  "SELECT details->'hazards' FROM score_results r JOIN localities l "
                  "ON l.id = r.locality_id WHERE run_id = %s AND l.level = 3",
                  (demo_run["run_id"],))
    flooded = [h for (hazards,) in rows for h in hazards.values()
               if (h.get("people_exposed") or 0) > 100]
    assert flooded, "the demo river must flood some villages"
    women = [h["people_exposed_by_subgroup"]["sex=female"] for h in flooded
             if "sex=female" in h.get("people_exposed_by_subgroup", {})]
    assert women and all(0 < w < h["people_exposed"] for w, h in zip(women, flooded, strict=False))


def test_parent_hazard_level_is_worst_child(demo_settings: Settings, demo_run: dict) -> None:
    order = {"very_low": 0, "low": 1, "medium": 2, "high": 3}
    rows = _query(demo_settings,
                  "SELECT p.code, rp.details->'hazards', array_agg(rc.details->'hazards') "
                  "FROM localities p JOIN localities c ON c.parent_code = p.code "
                  "JOIN score_results rp ON rp.locality_id = p.id AND rp.run_id = %s "
                  "JOIN score_results rc ON rc.locality_id = c.id AND rc.run_id = %s "
                  "WHERE p.level = 2 GROUP BY p.code, rp.details",
                  (demo_run["run_id"], demo_run["run_id"]))
    for code, parent, children in rows:
        for layer, entry in parent.items():
            worst = max(order[c[layer]["level"]] for c in children)
            assert order[entry["level"]] == worst, (code, layer)


def test_subgroup_cells_marked_withheld(demo_settings: Settings, demo_run: dict) -> None:
    rows = _query(demo_settings,
                  "SELECT jsonb_array_elements(details->'subgroups') FROM score_results "
                  "WHERE run_id = %s", (demo_run["run_id"],))
    cells = [cell for (cell,) in rows]
    withheld = [c for c in cells if c["withheld"]]
    assert withheld and all(c["sample_size"] is None or c["sample_size"] < 10 for c in withheld)
    assert any(c["intersection"] for c in cells)


def test_trend_between_baseline_and_follow_up(demo_settings: Settings, demo_run: dict) -> None:
    rows = _query(demo_settings,
                  "SELECT details->'trend'->'poverty_rate' FROM score_results WHERE run_id = %s "
                  "AND details ? 'trend' LIMIT 20", (demo_run["run_id"],))
    for (trend,) in rows:
        assert trend["baseline_period"] == "2024" and trend["followup_period"] == "2026"
        assert trend["change"] == pytest.approx(trend["followup"] - trend["baseline"], abs=1e-5)


def test_run_records_versions_and_latest(demo_settings: Settings, demo_run: dict,
                                         demo_http: httpx.Client) -> None:
    latest = demo_http.get("/api/v1/runs/latest").json()
    assert latest["id"] == demo_run["run_id"] and latest["status"] == "succeeded"
    assert set(latest["data_versions"]["raster_versions"]) >= {"population"}
    assert demo_http.get("/api/v1/runs/999999").status_code == 404
    assert demo_http.get("/api/v1/runs/drop table").status_code == 404
    methodology = demo_http.get(f"/api/v1/methodologies/{latest['methodology_id']}").json()
    assert methodology["document"]["k"] >= 1


def test_post_run_needs_uploader_and_runs_as_a_job(demo_settings: Settings, demo_run: dict,
                                                   demo_http: httpx.Client) -> None:
    from geo.db import build_engine

    assert demo_http.post("/api/v1/runs", json={}).status_code == 401
    engine = build_engine(demo_settings.database.url or "", demo_settings)
    try:
        key = create_key(engine, "test runs", "uploader").secret
    finally:
        engine.dispose()
    bad = demo_http.post("/api/v1/runs", json={"window_months": 0},
                         headers={"Authorization": f"Bearer {key}"})
    assert bad.status_code == 422 and bad.json()["details"][0]["field"].endswith("window_months")
    before = _query(demo_settings, "SELECT composite FROM score_results WHERE run_id = %s "
                                   "ORDER BY locality_id", (demo_run["run_id"],))
    started = demo_http.post("/api/v1/runs", json={"window_months": 6},
                             headers={"Authorization": f"Bearer {key}"})
    assert started.status_code == 202, started.text
    import time

    deadline = time.monotonic() + 300
    while True:
        job = demo_http.get(started.json()["status_url"]).json()
        if job["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert job["status"] == "succeeded", job
    new_run = started.json()["run_id"]
    latest = demo_http.get("/api/v1/runs/latest").json()
    assert latest["id"] == new_run
    # Boundaries and rasters did not change: exposure came from the first run's tables, and
    # equals what that run computed.
    assert latest["summary"]["exposure_layers_reused"] >= 3  # the demo's three hazards
    exposure = ("SELECT l.code, r.details->'hazards' FROM score_results r JOIN localities l "
                "ON l.id = r.locality_id WHERE r.run_id = %s ORDER BY l.code")
    first = dict(_query(demo_settings, exposure, (demo_run["run_id"],)))
    second = dict(_query(demo_settings, exposure, (new_run,)))
    assert first.keys() == second.keys() and any(first.values())
    for code, hazards in first.items():
        assert {name: second[code][name] for name in hazards} == hazards
    # The earlier run is immutable: its results are exactly as they were.
    after = _query(demo_settings, "SELECT composite FROM score_results WHERE run_id = %s "
                                  "ORDER BY locality_id", (demo_run["run_id"],))
    assert after == before
