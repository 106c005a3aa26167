"""The locality and risk API over the scored demo, through real HTTP."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import psycopg
import pyogrio
import pytest

from geo.keys import create_key
from geo.settings import Settings


def _key(settings: Settings, role: str) -> dict[str, str]:
    from geo.db import build_engine

    engine = build_engine(settings.database.url or "", settings)
    try:
        return {"Authorization": f"Bearer {create_key(engine, f'test {role}', role).secret}"}
    finally:
        engine.dispose()


@pytest.fixture()
def top(demo_http: httpx.Client) -> dict:
    return demo_http.get("/api/v1/rankings", params={"limit": 5}).json()["items"][0]


def test_locality_list_filters(demo_http: httpx.Client) -> None:
    districts = demo_http.get("/api/v1/localities", params={"level": 2}).json()
    assert districts["total"] == 8 and all(i["level"] == 2 for i in districts["items"])
    code = districts["items"][0]["code"]
    children = demo_http.get("/api/v1/localities", params={"parent": code, "limit": 5}).json()
    assert children["total"] > 5 and len(children["items"]) == 5
    assert all(i["parent_code"] == code for i in children["items"])
    by_prefix = demo_http.get("/api/v1/localities", params={"code_prefix": code}).json()
    assert by_prefix["total"] == children["total"] + 1
    arabic = districts["items"][0]["names"]["ar"]
    found = demo_http.get("/api/v1/localities", params={"q": arabic}).json()
    assert code in [i["code"] for i in found["items"]]
    minx, miny, maxx, maxy = districts["items"][0]["bbox"]
    boxed = demo_http.get("/api/v1/localities",
                          params={"bbox": f"{minx},{miny},{maxx},{maxy}", "level": 2}).json()
    assert code in [i["code"] for i in boxed["items"]]


@pytest.mark.parametrize("params", [
    {"limit": 5000}, {"level": "two"}, {"bbox": "1,2,3"}, {"bbox": "0,100,1,101"},
    {"offset": -1},
])
def test_bad_list_parameters_are_422(demo_http: httpx.Client, params: dict) -> None:
    response = demo_http.get("/api/v1/localities", params=params)
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"code", "message", "details"} and body["details"]


def test_antimeridian_bbox_is_handled(demo_http: httpx.Client) -> None:
    response = demo_http.get("/api/v1/localities", params={"bbox": "170,-10,-170,10"})
    assert response.status_code == 200 and response.json()["total"] == 0


def test_risk_profile_matches_the_stored_run(demo_settings: Settings, demo_http: httpx.Client,
                                             top: dict) -> None:
    profile = demo_http.get(f"/api/v1/localities/{top['code']}/risk").json()
    url = (demo_settings.database.url or "").replace("+psycopg", "")
    with psycopg.connect(url) as conn:
        composite, pillars, rank = conn.execute(
            "SELECT r.composite, r.pillars, r.rank FROM score_results r JOIN localities l "
            "ON l.id = r.locality_id WHERE l.code = %s AND r.run_id = %s",
            (top["code"], profile["run"]["id"])).fetchone()
    assert profile["composite"] == pytest.approx(composite)
    assert profile["pillars"] == pillars and profile["rank"]["value"] == rank
    assert profile["run"]["methodology"]["name"]
    assert profile["rank"]["low"] <= profile["rank"]["value"] <= profile["rank"]["high"]
    for component in profile["components"].values():
        assert {"raw", "normalised", "unit", "source"} <= set(component)
    assert set(profile["top_drivers"]) <= set(profile["components"])
    assert profile["hazards"] and profile["access"] and profile["trend"]


def test_small_subgroup_cells_withheld_below_analyst(demo_settings: Settings,
                                                     demo_http: httpx.Client) -> None:
    ranking = demo_http.get("/api/v1/rankings", params={"limit": 400}).json()["items"]
    analyst = _key(demo_settings, "analyst")
    for item in ranking:
        public = demo_http.get(f"/api/v1/localities/{item['code']}/risk").json()
        withheld = [c for c in public["subgroups"] if c["withheld"]]
        if withheld:
            break
    else:
        pytest.fail("the demo has small subgroup cells; none came out withheld")
    assert all(c["value"] is None and c["gap_locality"] is None for c in withheld)
    assert not public["subgroups_visible"]
    full = demo_http.get(f"/api/v1/localities/{item['code']}/risk", headers=analyst).json()
    assert full["subgroups_visible"]
    shown = [c for c in full["subgroups"] if c["withheld"]]
    assert shown and all(c["value"] is not None for c in shown)
    # The cached public answer never reaches the analyst, nor the other way round.
    assert demo_http.get(f"/api/v1/localities/{item['code']}/risk").json() == public


def test_subgroup_endpoint_needs_analyst(demo_settings: Settings, demo_http: httpx.Client,
                                         top: dict) -> None:
    path = f"/api/v1/localities/{top['code']}/subgroups"
    assert demo_http.get(path).status_code == 401
    assert demo_http.get(path, headers=_key(demo_settings, "public")).status_code == 403
    assert demo_http.get(path, headers={"Authorization": "Bearer ra_nope_nope"}).status_code == 401
    response = demo_http.get(path, headers=_key(demo_settings, "analyst"))
    assert response.status_code == 200 and response.json()["subgroups"]


def test_etag_and_cache_control(demo_http: httpx.Client, top: dict) -> None:
    first = demo_http.get(f"/api/v1/localities/{top['code']}/risk")
    etag = first.headers["etag"]
    assert "must-revalidate" in first.headers["cache-control"]
    again = demo_http.get(f"/api/v1/localities/{top['code']}/risk",
                          headers={"If-None-Match": etag})
    assert again.status_code == 304 and not again.content
    run_id = first.json()["run"]["id"]
    pinned = demo_http.get(f"/api/v1/localities/{top['code']}/risk", params={"run": run_id})
    assert "immutable" in pinned.headers["cache-control"]


@pytest.mark.parametrize("path", [
    "/api/v1/localities/NOPE/risk", "/api/v1/localities/NOPE",
    "/api/v1/localities/XY01/risk?run=99999", "/api/v1/localities/XY01/risk?run=latest;drop",
    "/api/v1/localities/'%20OR%201=1--/risk",
])
def test_unknown_things_are_404_without_internals(demo_http: httpx.Client, path: str) -> None:
    response = demo_http.get(path)
    assert response.status_code == 404
    text = response.text.lower()
    assert "select" not in text and "traceback" not in text and "/tmp" not in text


def test_sql_looking_values_are_inert(demo_http: httpx.Client) -> None:
    for q in ("' OR 1=1 --", "%", "_", "\\"):
        response = demo_http.get("/api/v1/localities", params={"q": q})
        assert response.status_code == 200
        assert response.json()["total"] in (0, 409) if q in ("%", "_") else True
    assert demo_http.get("/api/v1/localities", params={"q": "' OR 1=1 --"}).json()["total"] == 0
    assert demo_http.get("/api/v1/localities", params={"q": "%"}).json()["total"] == 0


def test_batch_and_rankings(demo_http: httpx.Client, top: dict) -> None:
    batch = demo_http.get("/api/v1/risk", params={"codes": f"{top['code']},XY0101,NOPE"}).json()
    assert {i["code"] for i in batch["items"]} == {top["code"], "XY0101"}
    assert demo_http.get("/api/v1/risk").status_code == 422
    within = demo_http.get("/api/v1/rankings",
                           params={"parent": top["parent_code"], "limit": 3}).json()["items"]
    assert within[0]["code"] == top["code"] and len(within) == 3
    ranks = [i["rank"] for i in demo_http.get("/api/v1/rankings",
                                              params={"limit": 50}).json()["items"]]
    assert ranks == sorted(ranks) and ranks[0] == 1
    only = demo_http.get("/api/v1/rankings", params={"compounded_only": True, "limit": 500})
    assert all(i["compounded"] for i in only.json()["items"])


def test_exports_csv_geojson_geopackage(demo_http: httpx.Client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = demo_http.get("/api/v1/rankings.csv", params={"limit": 25}).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "code" and rows[1][0] == "#loc+code" and len(rows) == 27
    collection = json.loads(demo_http.get("/api/v1/rankings.geojson", params={"limit": 25}).text)
    assert len(collection["features"]) == 25
    assert collection["features"][0]["geometry"]["type"] == "MultiPolygon"
    gpkg = tmp_path / "ranking.gpkg"
    gpkg.write_bytes(demo_http.get("/api/v1/rankings.gpkg", params={"limit": 1500}).content)
    frame = pyogrio.read_dataframe(gpkg)
    assert len(frame) == 400 and frame.crs.to_epsg() == 4326
    assert frame.iloc[0]["code"] == collection["features"][0]["id"]
    assert demo_http.get("/api/v1/rankings.xlsx").status_code in (404, 422)


def test_layers_list_versions(demo_http: httpx.Client) -> None:
    layers = demo_http.get("/api/v1/layers").json()
    roles = sorted(layer["role"] for layer in layers)
    assert roles == ["hazard", "hazard", "hazard", "population"]
    assert all(layer["versions"][0]["version"] >= 1 for layer in layers)


def test_repeat_profile_lookups_are_served_gzipped_and_identical(demo_http: httpx.Client,
                                                                 top: dict) -> None:
    path = f"/api/v1/localities/{top['code']}/risk"
    plain = demo_http.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200 and "content-encoding" not in plain.headers
    zipped = demo_http.get(path, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(plain.content) / 2
    assert zipped.json() == plain.json()
    assert "Accept-Encoding" in zipped.headers["vary"]


def test_new_priorities_reach_a_cached_profile(demo_settings: Settings, demo_http: httpx.Client,
                                               tmp_path) -> None:  # type: ignore[no-untyped-def]
    ranking = demo_http.get("/api/v1/rankings", params={"limit": 400}).json()["items"]
    code = next(item["code"] for item in ranking
                if not demo_http.get(f"/api/v1/localities/{item['code']}/risk")
                .json()["community_priorities"])
    before = demo_http.get(f"/api/v1/localities/{code}/risk").json()  # now cached
    assert before["community_priorities"] == []
    forum = tmp_path / "forum.csv"
    forum.write_text(f"locality_code,forum_date,needs\n{code},2025-03-01,water; clinic\n")
    uploader = _key(demo_settings, "uploader")
    accepted = demo_http.post("/api/v1/uploads/priorities", headers=uploader,
                              files={"file": ("forum.csv", forum.read_bytes(), "text/csv")})
    assert accepted.status_code == 202, accepted.text
    job_url = f"/api/v1/jobs/{accepted.json()['job_id']}"
    deadline = time.monotonic() + 60
    while (job := demo_http.get(job_url).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["status"] == "succeeded", job
    after = demo_http.get(f"/api/v1/localities/{code}/risk").json()
    assert [p["need"] for p in after["community_priorities"]] == ["water", "clinic"]


def test_cached_lookups_answer_like_the_route(demo_settings: Settings, demo_http: httpx.Client,
                                              top: dict) -> None:
    # With a key (even a public one) a lookup always goes through the route, which fills the
    # cache; without one, a cached profile is answered before routing. Same representation.
    public_key = _key(demo_settings, "public")
    path = f"/api/v1/localities/{top['code']}/risk"
    run_id = demo_http.get(path, headers=public_key).json()["run"]["id"]
    for params in ({}, {"run": run_id}):
        routed = demo_http.get(path, params=params, headers=public_key)
        cached = demo_http.get(path, params=params)
        assert routed.status_code == cached.status_code == 200
        assert routed.content == cached.content
        for header in ("etag", "cache-control", "vary", "content-type"):
            assert routed.headers[header] == cached.headers[header], header
        revalidated = demo_http.get(path, params=params,
                                    headers={"If-None-Match": cached.headers["etag"]})
        assert revalidated.status_code == 304
    # other parameters and bad keys always reach the route, which validates them
    assert demo_http.get(path, params={"run": run_id, "extra": "x"}).status_code == 200
    assert demo_http.get(path, params={"run": "x" * 20}).status_code == 422
    bad_key = demo_http.get(path, headers={"Authorization": "Bearer ra_nope_nope"})
    assert bad_key.status_code == 401


@pytest.mark.parametrize(("path", "field"), [
    ("/tiles/hazards/flood/legend?version=62609208483", "version"),
    ("/api/v1/localities/" + "X" * 65 + "/risk", "code"),
])
def test_out_of_range_parameters_are_422_naming_the_field(demo_http: httpx.Client, path: str,
                                                         field: str) -> None:
    response = demo_http.get(path)
    assert response.status_code == 422
    assert any(d["field"].endswith(field) for d in response.json()["details"])


IDENTITY = {"indicator", "subgroup", "period", "baseline_period", "followup_period",
            "attributes", "intersection", "method", "withheld", "withheld_reason"}


def _families(cells: list[dict]) -> dict[tuple, list[dict]]:
    families: dict[tuple, list[dict]] = {}
    for c in cells:
        pairs = c["subgroup"].split(";")
        for index, pair in enumerate(pairs):
            parent = ";".join(pairs[:index] + pairs[index + 1:]) or "all"
            families.setdefault((c.get("indicator"), parent, pair.split("=")[0]), []).append(c)
    return families


def test_no_new_subgroup_field_leaks_a_small_cell(demo_settings: Settings,
                                                  demo_http: httpx.Client) -> None:
    """Public profiles of the surveyed villages: withheld cells show nothing but who they are,
    and no family (a total and the subgroups that split it) has a lone withheld member that
    the total minus the visible others would give back."""
    villages = demo_http.get("/api/v1/localities", params={"level": 3, "limit": 1000}).json()
    checked = 0
    for item in villages["items"]:
        profile = demo_http.get(f"/api/v1/localities/{item['code']}/risk").json()
        md = profile["multidimensional"] or {}
        lists = [profile["subgroups"], profile["gap_trends"], profile["compounded_groups"],
                 md.get("groups", [])]
        for cells in lists:
            for cell in cells:
                if cell["withheld"]:
                    assert {k for k, v in cell.items() if v is not None} <= IDENTITY, cell
            by_subgroup = {(c.get("indicator"), c["subgroup"]): c for c in cells}
            for (indicator, parent, _), members in _families(cells).items():
                total = by_subgroup.get((indicator, parent))
                if parent != "all" and (total is None or total["withheld"]):
                    continue  # nothing visible to subtract from
                hidden = [c for c in members if c["withheld"]]
                assert len(hidden) != 1 or len(members) == 1, members
        if md.get("method") == "alkire_foster":
            checked += 1
    assert checked >= 10


def test_compounded_groups_endpoint_on_the_demo(demo_settings: Settings,
                                                demo_http: httpx.Client) -> None:
    path = "/api/v1/subgroups/compounded"
    assert demo_http.get(path).status_code == 401
    assert demo_http.get(path, headers=_key(demo_settings, "public")).status_code == 403
    body = demo_http.get(path, params={"level": 3}, headers=_key(demo_settings, "analyst"))
    assert body.status_code == 200
    items = body.json()["items"]
    methods = {i["method"] for i in items}
    assert "alkire_foster" in methods
    af = [i for i in items if i["method"] == "alkire_foster"]
    assert af == sorted(af, key=lambda i: -(i["M0"] or 0))
    with_interval = [i for i in af if i["H_ci_low"] is not None]
    assert with_interval and all(i["H_ci_low"] <= i["H"] <= i["H_ci_high"] for i in with_interval)
    district = demo_http.get(path, params={"level": 2}, headers=_key(demo_settings, "analyst"))
    assert {i["level"] for i in district.json()["items"]} <= {2}


def test_export_has_hxl_tagged_subgroup_columns(demo_http: httpx.Client) -> None:
    text = demo_http.get("/api/v1/rankings.csv", params={"limit": 400, "level": 3}).text
    rows = list(csv.reader(io.StringIO(text)))
    header, tags = rows[0], rows[1]
    for column, tag in (("mpi_m0", "#indicator+mpi+m0"),
                        ("mpi_h_ci_low", "#indicator+pct+mpi+headcount+ci_low"),
                        ("groups_behind", "#indicator+num+groups_behind")):
        assert tags[header.index(column)] == tag
    measured = [r for r in rows[2:] if r[header.index("mpi_method")] == "alkire_foster"]
    assert measured
    for row in measured:
        m0, low, high = (row[header.index(c)] for c in ("mpi_m0", "mpi_m0_ci_low",
                                                         "mpi_m0_ci_high"))
        if m0:
            assert float(low) <= float(m0) <= float(high)
