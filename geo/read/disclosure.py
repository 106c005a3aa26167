"""Small-count suppression: what a role below analyst may see of disaggregated data.

Any subgroup value computed from fewer than `k_min` people (or from an unknown number) is
withheld from every output below the analyst role, and the output says so: the value
becomes null with `"withheld": true`, never a silent zero.
"""

from __future__ import annotations

from typing import Any

from geo.keys import role_rank

WITHHELD_FIELDS = ("value", "gap_locality", "gap_national", "locality_value", "sample_size",
                   "rank", "rank_in_locality")


def may_see_subgroups(role: str) -> bool:
    """Return True when the role may see subgroup cells unsuppressed (analyst and above)."""
    return role_rank(role) >= role_rank("analyst")


def is_small(sample_size: Any, k_min: int) -> bool:
    """Return True when a count is unknown or below k_min."""
    return sample_size is None or float(sample_size) < k_min


def suppress_cell(cell: dict[str, Any], role: str, k_min: int) -> dict[str, Any]:
    """Return the cell as the role may see it: small cells withheld below analyst."""
    withheld = bool(cell.get("withheld")) or is_small(cell.get("sample_size"), k_min)
    shown = dict(cell, withheld=withheld)
    if withheld and not may_see_subgroups(role):
        for field in WITHHELD_FIELDS:
            if field in shown:
                shown[field] = None
    return shown


def suppress_exposed_by_subgroup(
    people: dict[str, float], role: str, k_min: int
) -> dict[str, float | None]:
    """Return subgroup head-counts with those under k_min withheld (None) below analyst."""
    if may_see_subgroups(role):
        return people
    return {key: (None if value is None or value < k_min else value)
            for key, value in people.items()}
