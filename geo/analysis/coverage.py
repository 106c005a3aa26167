"""What a run could score, where, and why not: countries, finest levels, "no data" reasons.

Pure pandas. A score run uses these to scope relative scales to the country, to place
parents on their children's scale, and to say per level how many localities were scored
and, for the rest, which pillar lacked which inputs.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from geo.analysis.methodology import PILLARS, Methodology
from geo.analysis.scoring import ScoreTable, explain_missing
from geo.ingest._vocabulary import INSTITUTION_FAMILIES

# OCHA P-codes start with the country's ISO 3166 alpha-2 code (CF11, RW1101, XY0104).
PCODE = re.compile(r"^([A-Z]{2})\d")
# Reasons listed per pillar and level in a run summary (the most frequent first).
MAX_REASONS = 5


def country_keys(localities: pd.DataFrame) -> pd.Series:
    """Return per locality code its country: the level-0 ancestor, else the P-code prefix.

    Without a level-0 unit the top ancestors are grouped by the two letters their P-codes
    start with (OCHA convention); codes that are not P-codes form one group ("").
    """
    parent = localities["parent_code"].where(localities["parent_code"].isin(localities.index))
    root = pd.Series(localities.index, index=localities.index)
    # walk up one level per pass: a hierarchy is a handful of levels deep
    for _ in range(12):
        up = parent.reindex(root.to_numpy()).to_numpy()
        moved = pd.notna(up)
        if not moved.any():
            break
        root = root.where(~moved, pd.Series(up, index=root.index))
    level = localities["level"].reindex(root.to_numpy()).to_numpy()
    keys = []
    for code, lvl in zip(root.tolist(), level.tolist(), strict=True):
        if lvl == 0:
            keys.append(str(code))
            continue
        match = PCODE.match(str(code))
        keys.append(match.group(1) if match else "")
    return pd.Series(keys, index=localities.index, name="country")


def finest_localities(localities: pd.DataFrame) -> pd.Series:
    """Return per locality whether it is a leaf: no loaded locality names it as parent."""
    parents = set(localities["parent_code"].dropna())
    return pd.Series(~localities.index.isin(list(parents)), index=localities.index,
                     name="finest")


def population_with_children(localities: pd.DataFrame) -> pd.Series:
    """Return population, a parent without its own figure taking the sum of its children.

    Deepest level first, so a grandparent sums children that were themselves filled.
    """
    population = pd.to_numeric(localities["population"], errors="coerce").astype(float)
    population = population.where(population > 0)
    for level in sorted(localities["level"].unique(), reverse=True):
        members = localities.index[localities["level"] == level]
        sums = population.loc[members].groupby(localities.loc[members, "parent_code"]).sum(
            min_count=1)
        sums = sums[sums.index.isin(localities.index)]
        missing = population.loc[sums.index].isna()
        population.loc[sums.index[missing.to_numpy()]] = sums[missing.to_numpy()]
    return population


def absent_reason(source: str) -> str:
    """Return why a source is absent from a whole run, in words a planner reads."""
    parts = source.split(".")
    if parts[0] == "hazard" and len(parts) > 1:
        return f"no data: no {parts[1]} hazard layer is loaded"
    if parts[0] == "conflict":
        return "no data: no conflict events are loaded"
    if source == "access.institutions.exposed_share":
        return "no data: needs institutions and at least one hazard layer"
    if parts[0] == "access" and len(parts) > 1:
        types = ", ".join(INSTITUTION_FAMILIES.get(parts[1], ()))
        return f"no data: no institutions of the {parts[1]} family ({types}) are loaded"
    if parts[0] == "indicator" and len(parts) > 1:
        return f"no data: no survey observations of indicator '{source[10:]}' are loaded"
    return f"no data: nothing loaded produces {source}"


def locality_coverage(table: ScoreTable) -> list[dict[str, Any]]:
    """Return per locality {partial, missing_pillars, missing_dimensions, not_scored}.

    `missing_dimensions` maps each dimension that could not be formed to the reasons of its
    missing inputs; `not_scored` says in one sentence why there is no composite.
    """
    composite = table.summary["composite"].to_numpy()
    out = []
    made: dict[tuple[int, bool], dict[str, Any]] = {}
    for row, missing in enumerate(explain_missing(table)):
        scored = bool(np.isfinite(composite[row]))
        key = (id(missing), scored)  # explain_missing shares one dict per pattern
        if key not in made:
            entry: dict[str, Any] = {
                "partial": bool(scored and missing["missing_pillars"]),
                "missing_pillars": missing["missing_pillars"],
                "missing_dimensions": missing["missing_dimensions"],
            }
            if not scored:
                entry["not_scored"] = _not_scored_sentence(table.methodology, missing)
            made[key] = entry
        out.append(made[key])
    return out


def _not_scored_sentence(methodology: Methodology, missing: dict[str, Any]) -> str:
    rules = methodology.missing_data
    have = [p for p in PILLARS if p not in missing["missing_pillars"]]
    if rules.missing_pillar == "null_composite" and missing["missing_pillars"]:
        need = "all three pillars (missing_pillar: null_composite)"
    else:
        need = (f"at least {rules.min_pillars} pillar(s)" if rules.min_pillars
                else f"pillars carrying {rules.min_completeness:.0%} of the weight")
    return (f"no composite: {len(have)} of 3 pillars could be formed and the methodology "
            f"needs {need}; missing: {', '.join(missing['missing_pillars']) or 'none'}")


def level_report(level: int, table: ScoreTable, coverage: list[dict[str, Any]]
                 ) -> dict[str, Any]:
    """Return what one admin level's scores rest on: counts and the reasons for gaps."""
    composite = table.summary["composite"]
    dimension_pillar = {d.id: d.pillar for d in table.methodology.dimensions}
    pillar_reasons: dict[str, Counter[str]] = {p: Counter() for p in PILLARS}
    pillar_counts: Counter[str] = Counter()
    not_scored: Counter[str] = Counter()
    for entry in coverage:
        for pillar in entry["missing_pillars"]:
            pillar_counts[pillar] += 1
            reasons = {reason for dim, why in entry["missing_dimensions"].items()
                       if dimension_pillar[dim] == pillar for reason in why}
            pillar_reasons[pillar].update(reasons)
        if "not_scored" in entry:
            not_scored[entry["not_scored"]] += 1
    scored = int(composite.notna().sum())
    return {
        "level": int(level),
        "localities": len(composite),
        "scored": scored,
        "partial": int(sum(1 for e in coverage if e["partial"])),
        "not_scored": len(composite) - scored,
        "missing_pillars": {
            pillar: {"localities": int(pillar_counts[pillar]),
                     "why": dict(pillar_reasons[pillar].most_common(MAX_REASONS))}
            for pillar in PILLARS if pillar_counts[pillar]},
        "why_not_scored": dict(not_scored.most_common(MAX_REASONS)),
    }


def describe_levels(levels: list[dict[str, Any]]) -> list[str]:
    """Return one plain sentence per level, for the CLI and logs."""
    lines = []
    for item in levels:
        line = (f"level {item['level']}: {item['scored']} of {item['localities']} localities "
                f"scored")
        if item["partial"]:
            line += f", {item['partial']} partial"
        missing = [f"{pillar.replace('_', ' ')} missing in {body['localities']} "
                   f"({'; '.join(list(body['why'])[:2])})"
                   for pillar, body in item["missing_pillars"].items()]
        if missing:
            line += " — " + "; ".join(missing)
        for reason, count in item["why_not_scored"].items():
            line += f" — {count} not scored: {reason}"
        lines.append(line)
    return lines
