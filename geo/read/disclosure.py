"""Small-count suppression: what a role below analyst may see of disaggregated data.

Any subgroup value computed from fewer than `k_min` people (or from an unknown number) is
withheld from every output below the analyst role, and the output says so: the value
becomes null with `"withheld": true`, never a silent zero.
"""

from __future__ import annotations

from typing import Any

from geo.keys import role_rank

# What a withheld cell still shows below analyst: which cell it is, and that it is withheld.
# Everything else (value, interval, gaps, ranks, status, counts, any field added later) is
# blanked, so a new field cannot leak a small cell by being forgotten in a list.
IDENTITY_FIELDS = frozenset({
    "indicator", "subgroup", "period", "baseline_period", "followup_period", "attributes",
    "intersection", "method", "withheld", "withheld_reason",
})


def may_see_subgroups(role: str) -> bool:
    """Return True when the role may see subgroup cells unsuppressed (analyst and above)."""
    return role_rank(role) >= role_rank("analyst")


def is_small(sample_size: Any, k_min: int) -> bool:
    """Return True when a count is unknown or below k_min."""
    return sample_size is None or float(sample_size) < k_min


def suppress_cell(cell: dict[str, Any], role: str, k_min: int) -> dict[str, Any]:
    """Return the cell as the role may see it: small cells withheld below analyst."""
    return suppress_cells([cell], role, k_min)[0]


def suppress_cells(cells: list[dict[str, Any]], role: str, k_min: int) -> list[dict[str, Any]]:
    """Return the cells of one locality as the role may see them.

    A cell on fewer than k_min people (or an unknown number) is withheld. Then complementary
    suppression: subgroups that split a total (sex=female and sex=male of `all`, or
    disability=yes;sex=female and disability=yes;sex=male of disability=yes) give back a
    lone withheld member as the total minus the others, so where exactly one member of such
    a family is withheld, its smallest visible sibling is withheld too, until no family has
    a lone withheld member. Below analyst a withheld cell keeps only its identity fields:
    no value, no interval, no gap, no rank, no status.
    """
    shown = [dict(cell) for cell in cells]
    for cell in shown:
        small = bool(cell.get("withheld")) or is_small(cell.get("sample_size"), k_min)
        cell["withheld"] = small
        if small and not cell.get("withheld_reason"):
            cell["withheld_reason"] = "small"
    _complementary(shown)
    if may_see_subgroups(role):
        return shown
    return [_blank(cell) if cell["withheld"] else cell for cell in shown]


def _blank(cell: dict[str, Any]) -> dict[str, Any]:
    return {key: (value if key in IDENTITY_FIELDS else None) for key, value in cell.items()}


def _pairs(subgroup: str) -> list[tuple[str, str]]:
    if not subgroup or subgroup == "all":
        return []
    return [tuple(part.split("=", 1)) for part in subgroup.split(";")]  # type: ignore[misc]


def _complementary(cells: list[dict[str, Any]]) -> None:
    """Withhold the smallest visible sibling of every lone withheld family member, in place."""
    families: dict[tuple[Any, ...], list[int]] = {}
    subgroups: dict[tuple[Any, Any, str], int] = {}
    for index, cell in enumerate(cells):
        scope = (cell.get("indicator"), cell.get("period"))
        subgroup = str(cell.get("subgroup") or "all")
        subgroups[(*scope, subgroup)] = index
        pairs = _pairs(subgroup)
        for position, (key, _) in enumerate(pairs):
            rest = pairs[:position] + pairs[position + 1:]
            parent = ";".join(f"{k}={v}" for k, v in rest) or "all"
            families.setdefault((*scope, parent, key), []).append(index)
    changed = True
    while changed:
        changed = False
        for (indicator, period, parent, _), members in families.items():
            total = subgroups.get((indicator, period, parent))
            # The locality's own total (`all`) is always published beside its subgroups.
            total_visible = parent == "all" or (total is not None
                                                and not cells[total]["withheld"])
            withheld = [i for i in members if cells[i]["withheld"]]
            visible = [i for i in members if not cells[i]["withheld"]]
            if total_visible and len(withheld) == 1 and visible:
                partner = min(visible, key=lambda i: float(cells[i].get("sample_size") or 0))
                cells[partner]["withheld"] = True
                cells[partner]["withheld_reason"] = "complementary"
                changed = True


def suppress_exposed_by_subgroup(
    people: dict[str, float], role: str, k_min: int
) -> dict[str, float | None]:
    """Return subgroup head-counts with those under k_min withheld (None) below analyst."""
    if may_see_subgroups(role):
        return people
    return {key: (None if value is None or value < k_min else value)
            for key, value in people.items()}
