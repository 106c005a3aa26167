"""A planner opens a surveyed village: who is behind (with intervals), who is deprived in
several dimensions at once (Alkire-Foster), and whether gaps narrowed beyond noise — in the
map's panel and in the printable profile, checked against the API's numbers."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import PageLog, open_map


def _api(base_url: str, path: str, **params: Any) -> Any:
    response = httpx.get(base_url + path, params=params, timeout=60)
    response.raise_for_status()
    return response.json()


def _fmt(value: float, decimals: int) -> str:
    return f"{value:,.{decimals}f}"


def _surveyed_village(base_url: str) -> tuple[str, dict[str, Any]]:
    """Return a village with household microdata, a group behind and a gap that narrowed."""
    villages = _api(base_url, "/api/v1/localities", level=3, limit=1000)["items"]
    for item in villages:
        profile = _api(base_url, f"/api/v1/localities/{item['code']}/risk")
        md = profile.get("multidimensional") or {}
        behind = [c for c in profile["subgroups"] if c["status"] == "behind"]
        narrowed = [t for t in profile["gap_trends"] if t["gap_status"] == "gap narrowed"]
        if md.get("method") == "alkire_foster" and not md["all"]["withheld"] and behind \
                and narrowed:
            return item["code"], profile
    raise AssertionError("the demo has no surveyed village with a gap behind and one narrowed")


def test_a_planner_sees_who_is_behind_beyond_noise(
    page: tuple[Any, PageLog], demo_site: str, screenshot: Any,
) -> None:
    tab, log = page
    code, profile = _surveyed_village(demo_site)
    open_map(tab, demo_site, f"?code={code}")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{code}']")
    tab.wait_for_selector("#ra-panel:not([aria-busy])")
    behind_table = tab.inner_text("#ra-panel .ra-behind")
    top = max((c for c in profile["subgroups"] if c["status"] == "behind"),
              key=lambda c: c["gap_locality"])
    # the value with its 95 % interval, exactly as the API gives it
    assert (f"{_fmt(top['value'], 1)} ({_fmt(top['ci_low'], 1)}–{_fmt(top['ci_high'], 1)})"
            in behind_table)
    assert top["subgroup"].replace(";", "; ") in behind_table
    # unreliable cells are never listed as behind
    assert "unreliable" not in behind_table
    md = profile["multidimensional"]["all"]
    assert float(tab.get_attribute("[data-field='md-M0']", "data-value")) == md["M0"]
    assert _fmt(md["M0"], 3) in tab.inner_text("[data-field='md-M0']")
    groups = tab.inner_text("#ra-panel .ra-md-groups")
    assert "Alkire–Foster" in tab.inner_text("#ra-panel")
    visible_groups = [g for g in profile["multidimensional"]["groups"] if not g["withheld"]]
    assert any(g["subgroup"].replace(";", "; ") in groups for g in visible_groups)
    gaps = tab.inner_text("#ra-panel .ra-gap-trends")
    assert "gap narrowed" in gaps
    assert "no clear change" in tab.inner_text("#ra-panel .ra-trend") or "improved" in (
        tab.inner_text("#ra-panel .ra-trend"))
    for section, name in (("#ra-h-sub", "behind"), ("#ra-h-md", "alkire-foster"),
                          ("#ra-h-gaps", "gaps")):
        tab.locator(section).scroll_into_view_if_needed()
        screenshot(tab, f"subgroup-panel-{name}")
    assert log.console_errors == [] and log.page_errors == []
    tab.goto(f"{demo_site}/print/{code}")
    tab.wait_for_selector(f"#ra-panel-title[data-code='{code}']")
    printed = tab.inner_text("#ra-profile")
    for heading in ("Who is behind here, beyond noise", "Deprived in several dimensions at once",
                    "Are the gaps narrowing?", "People exposed, by group"):
        assert heading in printed
    tab.emulate_media(media="print")
    screenshot(tab, "subgroup-print-profile", full_page=True)
