"""Read side of subgroups: a locality's subgroup sections as a role may see them, and the list
of groups in compounded stress across a level.

Every subgroup figure leaves through `disclosure.suppress_cells`, list by list, and the lists
that repeat a cell (its gap trend, its compounded-stress entry) follow the cell's verdict, so a
value withheld in one section cannot be read back from another.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from geo.read.disclosure import may_see_subgroups, suppress_cells

MAX_ITEMS = 5000


def subgroup_sections(details: dict[str, Any], role: str, k_min: int) -> dict[str, Any]:
    """Return subgroups, gap_trends, multidimensional and compounded_groups for the role."""
    subgroups = suppress_cells(details.get("subgroups", []), role, k_min)
    hidden = {(c.get("indicator"), c.get("subgroup")) for c in subgroups if c["withheld"]}
    trends = [dict(t, withheld=True, withheld_reason=t.get("withheld_reason") or "cell")
              if (t.get("indicator"), t.get("subgroup")) in hidden else t
              for t in details.get("gap_trends", [])]
    multidimensional = dict(details.get("multidimensional") or {})
    af_hidden: set[str] = set()
    if multidimensional.get("method") == "alkire_foster":
        own = suppress_cells([multidimensional["all"]], role, k_min)[0]
        groups = suppress_cells(multidimensional.get("groups", []), role, k_min)
        if own["withheld"]:
            # a withheld total withholds every group of it (each is smaller still)
            groups = suppress_cells([dict(g, withheld=True) for g in groups], role, k_min)
        multidimensional["all"], multidimensional["groups"] = own, groups
        af_hidden = {g["subgroup"] for g in groups if g["withheld"]}
    compounded = []
    for entry in details.get("compounded_groups", []):
        withheld = entry.get("withheld") or (
            entry["subgroup"] in af_hidden if entry.get("method") == "alkire_foster"
            else any(sub == entry["subgroup"] for _, sub in hidden))
        compounded.append(dict(entry, withheld=bool(withheld)))
    return {
        "subgroups": subgroups,
        "gap_trends": suppress_cells(trends, role, k_min),
        "multidimensional": multidimensional or None,
        "compounded_groups": suppress_cells(compounded, role, k_min),
    }


def subgroup_summary(details: dict[str, Any], role: str, k_min: int) -> dict[str, Any]:
    """Return one locality's subgroup figures for an export row, as the role may see them.

    The Alkire-Foster H, A and M0 of the whole locality with their intervals (withheld for
    a locality with fewer than k_min people, or to protect a sibling), how many subgroup
    cells are behind beyond noise and the furthest behind of them, counted only over the
    cells the role may see.
    """
    sections = subgroup_sections({k: v for k, v in details.items() if v is not None}, role,
                                 k_min)
    md = sections["multidimensional"] or {}
    own = md.get("all") or {}
    summary: dict[str, Any] = {"mpi_method": md.get("method")}
    for name in ("H", "A", "M0"):
        for suffix in ("", "_ci_low", "_ci_high"):
            summary[f"mpi_{name.lower()}{suffix}"] = own.get(name + suffix)
    summary["mpi_reliability"] = own.get("reliability")
    seen = [c for c in sections["subgroups"] if may_see_subgroups(role) or not c["withheld"]]
    behind = [c for c in seen if c.get("status") == "behind"]
    summary["groups_behind"] = len(behind)
    top = max(behind, key=lambda c: c.get("gap_locality") or 0, default=None)
    summary["furthest_behind"] = (f"{top['subgroup']} ({top['indicator']})" if top else None)
    possible = [c for c in seen if c.get("status") == "possible_gap"]
    summary["possible_gaps"] = len(possible)
    return summary


COMPOUNDED_SQL = text(
    "SELECT l.code, l.name, l.level, l.parent_code, r.details FROM score_results r "
    "JOIN localities l ON l.id = r.locality_id WHERE r.run_id = :run AND l.level = "
    "COALESCE(:level, (SELECT max(level) FROM localities)) "
    "AND jsonb_array_length(COALESCE(r.details -> 'compounded_groups', '[]'::jsonb)) > 0 "
    "ORDER BY l.code")


def compounded_groups(conn: Connection, run: dict[str, Any], level: int | None, role: str,
                      k_min: int, limit: int = MAX_ITEMS) -> list[dict[str, Any]]:
    """Return the subgroup x locality cells deprived in several dimensions at once.

    From household microdata (method `alkire_foster`: H = share of the group's people
    deprived in at least k of the weighted indicators, A, M0, with intervals), else from
    subgroup indicator values against cutoffs (method `indicator_cutoffs`: not
    Alkire-Foster). Alkire-Foster cells come first, by M0, then the others by the number of
    deprived dimensions; withheld cells keep their place but no figures below analyst.
    """
    items = []
    for row in conn.execute(COMPOUNDED_SQL, {"run": run["id"], "level": level}):
        sections = subgroup_sections(row.details or {}, role, k_min)
        place = {"code": row.code, "name": row.name, "level": row.level,
                 "parent_code": row.parent_code}
        items += [place | entry for entry in sections["compounded_groups"]]
    items.sort(key=lambda e: (e.get("method") != "alkire_foster", -(e.get("M0") or 0),
                              -(e.get("deprived_dimensions") or 0), e["code"], e["subgroup"]))
    return items[:limit]
