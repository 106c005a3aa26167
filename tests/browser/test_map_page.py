"""The map page in a real headless Chromium, over the scored demo region."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
from rasterio.io import MemoryFile

from tests.browser.conftest import PageLog, open_map

pytestmark = pytest.mark.browser


def _pixels(png: bytes) -> np.ndarray:
    """Return an (h, w, 3) uint8 array of a PNG screenshot."""
    with MemoryFile(png) as memory, memory.open() as image:
        return np.moveaxis(image.read()[:3], 0, -1)


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    value = colour.lstrip("#")[:6]
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _api(base_url: str, path: str, **params: Any) -> Any:
    response = httpx.get(base_url + path, params=params, timeout=60)
    response.raise_for_status()
    return response.json()


def _click_locality(page: Any, base_url: str, code: str) -> None:
    """Bring the locality into view and click a point inside it on the map."""
    item = _api(base_url, f"/api/v1/localities/{code}")
    minx, miny, maxx, maxy = item["bbox"]
    page.evaluate("b => riskatlas.map.fitBounds([[b[1], b[0]], [b[3], b[2]]], {animate: false})",
                  [minx, miny, maxx, maxy])
    page.wait_for_timeout(300)
    page.wait_for_selector("#ra-loading", state="hidden")
    lon, lat = item["centroid"]
    point = page.evaluate("ll => riskatlas.map.latLngToContainerPoint(ll)", [lat, lon])
    box = page.locator("#map_riskatlas").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])


def test_map_loads_without_errors_or_external_requests(
    page: tuple[Any, PageLog], demo_site: str, screenshot: Any,
) -> None:
    tab, log = page
    open_map(tab, demo_site)
    tab.wait_for_load_state("networkidle")
    screenshot(tab, "map-loaded")
    assert log.console_errors == [] and log.page_errors == [], (log.console_errors, log.page_errors)
    assert log.external(demo_site) == []
    assert any("/static/vendor/leaflet-1.9.4/leaflet.js" in url for url in log.requests)
    assert any(".mvt" in url for url in log.requests), "the choropleth comes from vector tiles"
    html = httpx.get(demo_site + "/").text
    assert "cdn." not in html and "unpkg" not in html and "https://" not in html.split("<body")[0]
    # The legend states the score, its classes and the run date.
    legend = tab.inner_text("#ra-legend")
    run = _api(demo_site, "/api/v1/runs/latest")
    assert "Composite" in legend and run["completed_at"][:10] in legend
    assert len(tab.query_selector_all("#ra-legend li[data-colour]")) == 5


def test_choropleth_pixels_use_the_legend_colours(
    page: tuple[Any, PageLog], demo_site: str, screenshot: Any,
) -> None:
    tab, _ = page
    open_map(tab, demo_site)
    tab.wait_for_load_state("networkidle")
    colours = [node.get_attribute("data-colour")
               for node in tab.query_selector_all("#ra-legend li[data-colour]")]
    pixels = _pixels(screenshot(tab.locator("#map_riskatlas"), "choropleth").read_bytes())
    assert pixels.std() > 10, "the map is blank"
    flat = pixels.reshape(-1, 3).astype(int)
    found = {}
    for colour in colours:
        rgb = np.array(_hex_to_rgb(colour))
        found[colour] = int((np.abs(flat - rgb).max(axis=1) <= 2).sum())
    # Every class of a quantile map holds 80 villages: each colour covers visible area.
    assert all(count > 200 for count in found.values()), found


def test_clicking_a_locality_shows_the_api_numbers(
    page: tuple[Any, PageLog], demo_site: str, screenshot: Any,
) -> None:
    tab, log = page
    top = _api(demo_site, "/api/v1/rankings", limit=1)["items"][0]
    code = top["code"]
    profile = _api(demo_site, f"/api/v1/localities/{code}/risk")
    open_map(tab, demo_site)
    _click_locality(tab, demo_site, code)
    tab.wait_for_selector(f"#ra-panel-title[data-code='{code}']")
    tab.wait_for_selector("#ra-panel:not([aria-busy])")

    def shown(field: str) -> str:
        return tab.get_attribute(f"#ra-panel [data-field='{field}']", "data-value")

    assert float(shown("composite")) == pytest.approx(profile["composite"])
    assert f"{profile['composite']:.2f}" in tab.inner_text("#ra-panel [data-field='composite']")
    assert int(shown("rank")) == profile["rank"]["value"]
    rank_text = tab.inner_text("#ra-panel [data-field='rank']")
    assert f"{profile['rank']['low']}–{profile['rank']['high']}" in rank_text
    assert int(shown("stressed_dimensions")) == profile["stressed_dimensions"]
    for pillar, value in profile["pillars"].items():
        assert float(shown(f"pillar:{pillar}")) == pytest.approx(value)
    for dimension, body in profile["dimensions"].items():
        assert float(shown(f"dimension:{dimension}")) == pytest.approx(body["score"])
    panel = tab.inner_text("#ra-panel")
    assert profile["locality"]["name"] in panel
    for layer in profile["hazards"]:
        assert layer in panel
    for driver in profile["top_drivers"]:
        assert driver.replace("_", " ").lower() in panel.lower()
    # Withheld subgroup cells read "withheld", never 0.
    if any(cell["withheld"] for cell in profile["subgroups"]):
        assert "withheld" in panel
    # The selected locality is outlined in black above everything else on the map.
    tab.wait_for_timeout(600)  # the pan that brings the whole locality beside the panel
    map_pixels = _pixels(screenshot(tab.locator("#map_riskatlas"), "locality-selected")
                         .read_bytes())
    assert int((map_pixels.max(axis=2) < 40).sum()) > 1500, "no selection outline"
    screenshot(tab, "locality-panel")
    assert log.console_errors == [] and log.page_errors == []
    # The printable profile shows the same numbers.
    tab.goto(f"{demo_site}/print/{code}")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{code}']")
    assert float(tab.get_attribute("[data-field='composite']", "data-value")) == pytest.approx(
        profile["composite"])
    tab.emulate_media(media="print")
    screenshot(tab, "print-profile", full_page=True)


def test_search_flies_to_a_locality(page: tuple[Any, PageLog], demo_site: str) -> None:
    tab, _ = page
    target = _api(demo_site, "/api/v1/localities", level=3, limit=1, offset=123)["items"][0]
    open_map(tab, demo_site)
    zoom_before = tab.evaluate("riskatlas.map.getZoom()")
    tab.fill("#ra-search-input", target["name"][:-1])
    tab.wait_for_selector(f"#ra-search-results button[data-code='{target['code']}']")
    # Keyboard only: arrow into the results, Enter on the match.
    tab.focus("#ra-search-input")
    tab.keyboard.press("ArrowDown")
    while tab.evaluate("document.activeElement.dataset.code") != target["code"]:
        tab.keyboard.press("ArrowDown")
    tab.keyboard.press("Enter")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{target['code']}']")
    minx, miny, maxx, maxy = target["bbox"]
    tab.wait_for_function(
        "b => { const c = riskatlas.map.getCenter();"
        " return c.lng > b[0] && c.lng < b[2] && c.lat > b[1] && c.lat < b[3]; }",
        arg=[minx, miny, maxx, maxy], timeout=10_000)
    assert tab.evaluate("riskatlas.map.getZoom()") > zoom_before
    assert f"code={target['code']}" in tab.url
    tab.keyboard.press("Escape")
    tab.wait_for_selector("#ra-panel", state="hidden")
    # By code, with Enter in the search box: the first match opens.
    parent = target["parent_code"]
    tab.fill("#ra-search-input", parent)
    tab.press("#ra-search-input", "Enter")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{parent}']")


def test_furthest_behind_list_flies_and_exports(page: tuple[Any, PageLog], demo_site: str) -> None:
    tab, _ = page
    districts = _api(demo_site, "/api/v1/localities", level=2, limit=1)["items"]
    parent = districts[0]["code"]
    expected = _api(demo_site, "/api/v1/rankings", level=3, parent=parent, limit=10)["items"]
    open_map(tab, demo_site)
    tab.select_option("#ra-rank-parent", parent)
    tab.select_option("#ra-rank-n", "10")
    tab.wait_for_function(
        "n => document.querySelectorAll('#ra-ranking li button').length === n",
        arg=len(expected))
    codes = [b.get_attribute("data-code") for b in tab.query_selector_all("#ra-ranking button")]
    assert codes == [item["code"] for item in expected]
    href = tab.get_attribute("#ra-rank-csv", "href")
    assert "rankings.csv" in href and f"parent={parent}" in href and "limit=10" in href
    exported = httpx.get(demo_site + href, timeout=60)
    assert exported.status_code == 200 and exported.text.splitlines()[1].startswith("#")
    assert len(exported.text.splitlines()) == 2 + len(expected)
    tab.click(f"#ra-ranking button[data-code='{expected[1]['code']}']")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{expected[1]['code']}']")


def test_period_change_map_and_stress_filter(page: tuple[Any, PageLog], demo_site: str) -> None:
    tab, log = page
    open_map(tab, demo_site, "?indicator=stunting&period=change")
    legend = tab.inner_text("#ra-legend")
    assert "Stunting" in legend and "change" in legend
    tab.check("input[name='ra-period'][value='baseline']")
    tab.wait_for_function("document.querySelector('#ra-legend').innerText.includes('baseline')")
    # Compounded-stress filter: the legend says what is greyed out.
    tab.fill("#ra-min-stressed", "3")
    tab.dispatch_event("#ra-min-stressed", "input")
    assert "fewer than 3" in tab.inner_text("#ra-legend")
    tab.select_option("#ra-score", "stressed_dimensions")
    tab.wait_for_function("document.querySelector('#ra-legend').innerText.includes('Stressed')")
    assert log.page_errors == []


def test_a_failing_or_slow_api_shows_words_not_blanks(
    page: tuple[Any, PageLog], demo_site: str, screenshot: Any,
) -> None:
    tab, _ = page
    body = json.dumps({"code": "database_unavailable", "message": "the database is not reachable",
                       "details": []})
    tab.route("**/api/v1/map/classes*", lambda route: route.fulfill(
        status=503, body=body, content_type="application/json"))

    def slow_risk(route: Any) -> None:
        tab.wait_for_timeout(1500)
        route.continue_()

    tab.route("**/api/v1/localities/*/risk*", slow_risk)
    tab.goto(demo_site + "/")
    tab.wait_for_selector("#ra-legend .ra-error")
    assert "database is not reachable" in tab.inner_text("#ra-legend")
    assert "503" in tab.inner_text("#ra-status")
    assert "only outlines" in tab.inner_text("#ra-map-alert")
    code = _api(demo_site, "/api/v1/rankings", limit=1)["items"][0]["code"]
    tab.wait_for_selector(f"#ra-ranking button[data-code='{code}']")
    tab.click(f"#ra-ranking button[data-code='{code}']")
    assert "Loading the profile" in tab.inner_text("#ra-panel")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{code}']")
    screenshot(tab, "api-error")


@pytest.mark.parametrize("params", [
    {"score": "composite", "method": "natural_breaks", "k": 4, "level": 3},
    {"score": "vulnerability", "method": "quantiles", "k": 5, "palette": "viridis"},
    {"score": "dimension:health_access", "method": "fisher_jenks", "k": 5, "level": 3},
    {"score": "trend:stunting:change", "level": 3},
    {"score": "stressed_dimensions", "level": 3},
])
def test_class_breaks_endpoint(demo_site: str, params: dict) -> None:
    body = _api(demo_site, "/api/v1/map/classes", **params)
    breaks, colours, counts = body["breaks"], body["colours"], body["counts"]
    assert breaks == sorted(breaks) and len(colours) == len(breaks) - 1 == len(counts)
    assert sum(counts) == body["count"] and body["run"]["completed_at"]
    assert (body["values"] is None) == (params["score"] in (
        "composite", "vulnerability", "stressed_dimensions"))
    if params["score"].startswith("trend:"):
        assert breaks[0] < 0 < breaks[-1] and 0.0 in breaks


@pytest.mark.parametrize("params", [
    {"score": "composite; DROP TABLE x"}, {"score": "trend:stunting:later"},
    {"method": "magic"}, {"palette": "rainbow"}, {"k": 1},
])
def test_class_breaks_refuses_bad_parameters(demo_site: str, params: dict) -> None:
    response = httpx.get(demo_site + "/api/v1/map/classes", params=params, timeout=60)
    assert response.status_code == 422, response.text
    assert set(response.json()) == {"code", "message", "details"}


def test_map_options_name_what_can_be_shown(demo_site: str) -> None:
    body = _api(demo_site, "/api/v1/map/options")
    ids = [score["id"] for score in body["scores"]]
    assert ids[:5] == ["composite", "hazard_exposure", "vulnerability",
                       "lack_of_coping_capacity", "stressed_dimensions"]
    assert "dimension:health_access" in ids
    assert body["levels"] == sorted(body["levels"]) and len(body["levels"]) >= 2
    assert "stunting" in body["indicators"]
    assert body["periods"] == {"baseline": ["2024"], "followup": ["2026"]}
    # Derived from an immutable run: cacheable for good when the run is named.
    named = httpx.get(demo_site + "/api/v1/map/options", params={"run": body["run"]["id"]})
    assert "immutable" in named.headers["cache-control"]
    assert named.json() == body


def test_printable_profile_of_a_district(page: tuple[Any, PageLog], demo_site: str) -> None:
    tab, log = page
    district = _api(demo_site, "/api/v1/localities", level=2, limit=1)["items"][0]
    profile = _api(demo_site, f"/api/v1/localities/{district['code']}/risk")
    tab.goto(f"{demo_site}/print/{district['code']}")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{district['code']}']")
    assert float(tab.get_attribute("[data-field='composite']", "data-value")) == pytest.approx(
        profile["composite"])
    assert district["name"] in tab.title()
    # Printing hides the page's own buttons and navigation.
    tab.emulate_media(media="print")
    assert not tab.is_visible("#ra-print-button") and not tab.is_visible(".ra-bar")
    assert log.console_errors == [] and log.external(demo_site) == []
