"""A score run over the demo produces every figure, stored immutably and addressable."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from geo.keys import create_key
from geo.runs.lifecycle import run_scores
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


# --- issue 9: every level right, missing is not zero, comparable over time ---------------


def test_conflict_counts_at_every_level(demo_settings: Settings, demo_run: dict) -> None:
    # Defect 1: conflict was 0.00 for all 400 villages and all 8 districts.
    rows = _query(demo_settings,
                  "SELECT l.level, l.code, l.parent_code, "
                  "(r.details->'conflict'->>'events')::float, "
                  "(r.dimensions->'conflict_violence'->>'score')::float FROM score_results r "
                  "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = %s",
                  (demo_run["run_id"],))
    events = {code: n for _, code, _, n, _ in rows}
    for level in (2, 3):
        scores = [s for lvl, _, _, _, s in rows if lvl == level]
        assert all(s is not None for s in scores)
        assert max(scores) - min(scores) > 2, f"level {level}: conflict does not vary"
    # villages tile their districts, which tile the governorate: the counts add up
    for parent_level in (1, 2):
        for _, code, _, n, _ in (r for r in rows if r[0] == parent_level):
            children = [events[c] for lvl, c, p, _, _ in rows if p == code]
            assert n == sum(children) > 0, code


def test_the_one_unit_level_is_not_rescaled_alone(demo_settings: Settings,
                                                  demo_run: dict) -> None:
    # Defect 2: the governorate (the only level-1 unit) scored 0.0 in every dimension.
    (dimensions,), = _query(demo_settings,
                            "SELECT r.dimensions FROM score_results r JOIN localities l "
                            "ON l.id = r.locality_id WHERE r.run_id = %s AND l.level = 1",
                            (demo_run["run_id"],))
    scores = [d["score"] for d in dimensions.values()]
    assert all(s is not None for s in scores) and sum(s > 0.5 for s in scores) >= 6


def _by_hand(raw: float, component: dict) -> float:
    low, high = component["goalposts"]
    if component.get("transform") == "log":
        raw, low, high = (math.log1p(v) for v in (raw, low, high))
    scaled = (min(max(raw, low), high) - low) / (high - low) * 10
    return 10 - scaled if component["polarity"] == "higher_is_better" else scaled


def test_top_locality_explained_by_hand(demo_settings: Settings, demo_run: dict) -> None:
    # The demo's furthest-behind village, re-derived from its raw inputs with the default
    # methodology's documented goalposts and INFORM aggregation (offset 1).
    (code, name, composite, components, pillars), = _query(
        demo_settings, "SELECT l.code, l.name, r.composite, r.components, r.pillars "
        "FROM score_results r JOIN localities l ON l.id = r.locality_id "
        "WHERE r.run_id = %s AND l.level = 3 AND r.rank = 1", (demo_run["run_id"],))
    document = yaml.safe_load(Path("geo/analysis/default_methodology.yaml").read_text())
    dims = {d["id"]: d for d in document["dimensions"]}
    by_dimension: dict[str, list[tuple[float, float]]] = {}
    for spec in document["components"]:
        stored = components[spec["id"]]
        if stored["raw"] is None:
            continue
        value = _by_hand(stored["raw"], spec)
        assert stored["normalised"] == pytest.approx(value, abs=1e-5), spec["id"]
        by_dimension.setdefault(spec["dimension"], []).append((value, spec["weight"]))
    pillar_scores: dict[str, list[float]] = {}
    for dim, parts in by_dimension.items():
        score = sum(v * w for v, w in parts) / sum(w for _, w in parts)
        pillar_scores.setdefault(dims[dim]["pillar"], []).append(score)
    by_pillar = {p: sum(s) / len(s) for p, s in pillar_scores.items()}
    assert by_pillar == pytest.approx(pillars, abs=1e-5)
    expected = math.prod(v + 1 for v in by_pillar.values()) ** (1 / 3) - 1
    assert composite == pytest.approx(expected, abs=1e-5), (code, name)


def test_compare_two_runs(demo_settings: Settings, demo_run: dict,
                          demo_http: httpx.Client) -> None:
    from geo.db import build_engine
    from geo.runs.lifecycle import execute_score_run, start_score_run
    from geo.runs.methodologies import ensure_methodology

    engine = build_engine(demo_settings.database.url or "", demo_settings)
    try:
        later = run_scores(engine, demo_settings, parameters={"window_months": 6})["run_id"]
        document = yaml.safe_load(Path("geo/analysis/default_methodology.yaml").read_text())
        document["name"] = "relative-poverty"
        poverty = next(c for c in document["components"] if c["id"] == "poverty")
        poverty.update(scale="relative")
        poverty.pop("goalposts")
        run_id, job_id = start_score_run(engine, ensure_methodology(engine, document))
        relative = execute_score_run(engine, demo_settings, run_id, job_id)["run_id"]
    finally:
        engine.dispose()
    earlier = demo_run["run_id"]
    body = demo_http.get(f"/api/v1/runs/{earlier}/compare/{later}", params={"level": 3}).json()
    assert body["comparable"] is True and body["caveats"] == []
    items = {item["code"]: item for item in body["items"]}
    assert len(items) == 400
    stored = dict(_query(demo_settings, "SELECT l.code, r.composite FROM score_results r "
                                        "JOIN localities l ON l.id = r.locality_id WHERE "
                                        "r.run_id = %s AND l.level = 3", (later,)))
    for code, item in items.items():
        assert item["composite_after"] == pytest.approx(stored[code], abs=1e-6)
        assert item["composite_change"] == pytest.approx(
            item["composite_after"] - item["composite_before"], abs=3e-6)
        assert item["rank_change"] == item["rank_after"] - item["rank_before"]
        entered = item["compounded_change"] == "entered"
        assert entered == (not item["compounded_before"] and item["compounded_after"])
    assert body["summary"]["entered_compounded"] == sorted(
        c for c, i in items.items() if i["compounded_change"] == "entered")
    # a shorter conflict window changes conflict, and conflict only
    changed = [i for i in items.values() if i["dimensions_change"]["conflict_violence"]]
    assert changed and all(abs(i["dimensions_change"]["economic_deprivation"] or 0) < 1e-9
                           for i in items.values())
    csv_text = demo_http.get(f"/api/v1/runs/{earlier}/compare/{later}.csv",
                             params={"level": 3}).text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("code,name,level,parent_code,composite_before")
    assert len(lines) == 401
    geo = demo_http.get(f"/api/v1/runs/{earlier}/compare/{later}.geojson",
                        params={"level": 2}).json()
    assert len(geo["features"]) == 8 and geo["features"][0]["geometry"]["type"]
    # runs with different goalposts say so
    other = demo_http.get(f"/api/v1/runs/{earlier}/compare/{relative}").json()
    assert other["comparable"] is False
    assert any("poverty" in caveat for caveat in other["caveats"])
    exported = demo_http.get(f"/api/v1/runs/{earlier}/compare/{relative}.csv")
    assert exported.headers["x-comparable"] == "false"
    assert all(line.endswith(",false") for line in exported.text.strip().splitlines()[1:])
    assert demo_http.get(f"/api/v1/runs/{earlier}/compare/999999").status_code == 404
    assert demo_http.get(f"/api/v1/runs/{earlier}/compare/{later}.xlsx").status_code in (404,
                                                                                        422)


def test_every_dimension_map_varies_across_villages_and_districts(demo_settings: Settings,
                                                                  demo_run: dict) -> None:
    # The map of each dimension must vary where the data varies (conflict included).
    rows = _query(demo_settings,
                  "SELECT l.level, d.key, stddev_pop((d.value->>'score')::float), "
                  "count(d.value->>'score') FROM score_results r JOIN localities l "
                  "ON l.id = r.locality_id, jsonb_each(r.dimensions) d WHERE r.run_id = %s "
                  "AND l.level > 1 GROUP BY l.level, d.key", (demo_run["run_id"],))
    assert len(rows) == 2 * 8
    for level, dimension, spread, count in rows:
        assert count == (8 if level == 2 else 400), (level, dimension)
        assert spread > 0.3, (level, dimension, spread)
