"""Small-count and complementary suppression of every subgroup field (pure, no database).

Below analyst a cell from fewer than k_min people shows no value, interval, gap, rank, status
or count, and no visible combination (a total minus the other members of its family) gives it
back. Each check builds the cells as a run stores them.
"""

from __future__ import annotations

from typing import Any

from geo.read.disclosure import IDENTITY_FIELDS, suppress_cells
from geo.read.subgroups import subgroup_sections, subgroup_summary

K_MIN = 10


def cell(subgroup: str, n: int | None, value: float = 40.0, **extra: Any) -> dict[str, Any]:
    return {"indicator": "poverty", "period": "2026", "subgroup": subgroup, "value": value,
            "sample_size": n, "standard_error": 2.0, "ci_low": value - 4, "ci_high": value + 4,
            "reliability": "caution", "locality_value": 30.0, "national_value": 28.0,
            "gap_locality": value - 30, "gap_locality_ci_low": value - 36,
            "gap_locality_ci_high": value - 24, "gap_national": value - 28,
            "gap_national_ci_low": 1.0, "gap_national_ci_high": 2.0, "status": "behind",
            "behind_national": True, "rank": 1, "rank_in_locality": 1,
            "attributes": subgroup.count(";") + 1, "intersection": ";" in subgroup,
            "withheld": False, "some_future_field": 1.23, **extra}


def by_subgroup(cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["subgroup"]: c for c in cells}


def test_a_withheld_cell_keeps_only_its_identity() -> None:
    shown = suppress_cells([cell("disability=yes", 6)], "public", K_MIN)[0]
    assert shown["withheld"] and shown["withheld_reason"] == "small"
    leaked = {k: v for k, v in shown.items() if v is not None and k not in IDENTITY_FIELDS}
    assert leaked == {}
    # no interval and no gap on a withheld cell, and nothing a new field could carry
    for field in ("ci_low", "ci_high", "standard_error", "gap_locality_ci_low",
                  "gap_national_ci_high", "reliability", "status", "rank", "sample_size",
                  "some_future_field"):
        assert shown[field] is None


def test_unknown_sample_size_is_withheld() -> None:
    assert suppress_cells([cell("sex=female", None)], "public", K_MIN)[0]["value"] is None


def test_complementary_suppression_of_a_two_way_split() -> None:
    # all = 30 % of 55; women 50 (visible alone), men 5: all*55 - women*50 = men*5
    cells = [cell("sex=female", 50, 29.0), cell("sex=male", 5, 40.0)]
    public = by_subgroup(suppress_cells(cells, "public", K_MIN))
    assert public["sex=male"]["value"] is None
    assert public["sex=female"]["value"] is None
    assert public["sex=female"]["withheld_reason"] == "complementary"
    analyst = by_subgroup(suppress_cells(cells, "analyst", K_MIN))
    assert analyst["sex=female"]["value"] == 29.0 and analyst["sex=male"]["value"] == 40.0
    assert analyst["sex=female"]["withheld"] and analyst["sex=male"]["withheld"]


def test_complementary_suppression_inside_an_intersection_family() -> None:
    cells = [cell("disability=yes", 40, 50.0), cell("disability=yes;sex=female", 6, 70.0),
             cell("disability=yes;sex=male", 34, 46.5), cell("sex=female", 200, 33.0),
             cell("sex=male", 190, 27.0)]
    public = by_subgroup(suppress_cells(cells, "public", K_MIN))
    assert public["disability=yes;sex=female"]["value"] is None
    assert public["disability=yes;sex=male"]["value"] is None  # else 40*50 - 34*46.5 = 6*70
    assert public["disability=yes"]["value"] == 50.0
    assert public["sex=female"]["value"] == 33.0


def test_no_visible_difference_gives_back_a_withheld_cell() -> None:
    cells = [cell("sex=female", 12), cell("sex=male", 9), cell("age=15-24", 4),
             cell("age=25-64", 30), cell("age=65+", 15), cell("disability=yes", 3),
             cell("disability=yes;sex=female", 2), cell("disability=yes;sex=male", 1)]
    public = suppress_cells(cells, "public", K_MIN)
    families: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in public:
        pairs = c["subgroup"].split(";")
        for index, pair in enumerate(pairs):
            parent = ";".join(pairs[:index] + pairs[index + 1:]) or "all"
            families.setdefault((parent, pair.split("=")[0]), []).append(c)
    by_subgroup = {c["subgroup"]: c for c in public}
    for (parent, _), members in families.items():
        if parent != "all" and by_subgroup[parent]["withheld"]:
            continue  # a withheld total gives nothing to subtract from
        hidden = [c for c in members if c["withheld"]]
        assert len(hidden) != 1 or len(members) == 1


def test_gap_trends_and_compounded_entries_follow_the_cell() -> None:
    details = {
        "subgroups": [cell("sex=female", 50, 29.0), cell("sex=male", 5, 40.0)],
        "gap_trends": [{"indicator": "poverty", "subgroup": "sex=female", "gap_baseline": -2.0,
                        "gap_followup": -1.0, "gap_change": 1.0, "gap_change_ci_low": -3.0,
                        "gap_change_ci_high": 5.0, "gap_status": "no clear change",
                        "sample_size": 48, "withheld": False}],
        "compounded_groups": [{"subgroup": "sex=female", "method": "indicator_cutoffs",
                               "deprived_dimensions": 3, "dimensions": ["a", "b", "c"],
                               "sample_size": 48, "withheld": False}],
        "multidimensional": {"method": "alkire_foster", "all": {
            "subgroup": "all", "sample_size": 60, "H": 0.4, "M0": 0.2, "withheld": False},
            "groups": [{"subgroup": "sex=female", "sample_size": 52, "H": 0.5, "M0": 0.25,
                        "H_ci_low": 0.3, "withheld": False},
                       {"subgroup": "sex=male", "sample_size": 8, "H": 0.1, "M0": 0.05,
                        "withheld": False}]},
    }
    public = subgroup_sections(details, "public", K_MIN)
    assert public["gap_trends"][0]["gap_followup"] is None  # its cell is complementary
    assert public["compounded_groups"][0]["dimensions"] is None
    groups = by_subgroup(public["multidimensional"]["groups"])
    assert groups["sex=male"]["H"] is None and groups["sex=female"]["H"] is None
    assert groups["sex=female"]["H_ci_low"] is None
    assert public["multidimensional"]["all"]["M0"] == 0.2
    analyst = subgroup_sections(details, "analyst", K_MIN)
    assert analyst["gap_trends"][0]["gap_followup"] == -1.0


def test_a_withheld_locality_total_withholds_its_groups_and_export_columns() -> None:
    details = {"multidimensional": {"method": "alkire_foster", "all": {
        "subgroup": "all", "sample_size": 8, "H": 0.4, "H_ci_low": 0.1, "H_ci_high": 0.7,
        "M0": 0.2, "withheld": True, "withheld_reason": "small"},
        "groups": [{"subgroup": "sex=female", "sample_size": 12, "H": 0.5, "withheld": False}]}}
    public = subgroup_sections(details, "public", K_MIN)
    assert public["multidimensional"]["groups"][0]["H"] is None
    summary = subgroup_summary(details, "public", K_MIN)
    assert summary["mpi_method"] == "alkire_foster"
    assert summary["mpi_h"] is None and summary["mpi_h_ci_low"] is None
    assert subgroup_summary(details, "analyst", K_MIN)["mpi_h"] == 0.4


def test_export_counts_only_visible_cells() -> None:
    details = {"subgroups": [cell("sex=female", 50, 45.0), cell("sex=male", 5, 60.0),
                             cell("status=migrant", 80, 50.0)]}
    summary = subgroup_summary(details, "public", K_MIN)
    assert summary["groups_behind"] == 1  # the migrants; the two sexes are withheld
    assert summary["furthest_behind"] == "status=migrant (poverty)"
    assert subgroup_summary(details, "analyst", K_MIN)["groups_behind"] == 3
