"""The subgroup part of a run: who is behind, trends beyond noise, Alkire-Foster, compounded groups.

Everything here depends on the survey data only (not on the scores), so it runs beside the
exposure step. It writes into each locality's `details`:

- `subgroups`: every subgroup x indicator cell of the latest period with its interval,
  reliability, gaps (with intervals) to the locality and the nation, `status` and ranks;
- `trend` (per indicator, whole population) and `gap_trends` (per subgroup): baseline,
  follow-up, change with its interval and a verdict only beyond noise;
- `multidimensional`: Alkire-Foster H, A, M0, censored headcounts and contributions per
  subgroup (from household microdata, every admin level), or a note that only the
  place-level stressed-dimension count exists (which is not Alkire-Foster);
- `compounded_groups`: the subgroup cells deprived in several dimensions at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geo.analysis import alkire_foster as af
from geo.analysis.disaggregation import ALL, furthest_behind, gap_to_total_se
from geo.analysis.methodology import Methodology, load_default_methodology
from geo.analysis.monitoring import change_between_periods
from geo.analysis.uncertainty import (
    beyond_noise,
    difference_interval,
    measure_of_unit,
    reliability,
    z_value,
)
from geo.runs import cells
from geo.runs.inputs import RunInputs
from geo.settings import Settings

SUBGROUP_SHARE_INDICATOR = "population_share"
CELL_COLUMNS = (
    "indicator", "period", "subgroup", "value", "sample_size", "standard_error", "ci_low",
    "ci_high", "reliability", "locality_value", "national_value", "gap_locality",
    "gap_locality_ci_low", "gap_locality_ci_high", "gap_national", "gap_national_ci_low",
    "gap_national_ci_high", "status", "behind_national", "rank", "rank_in_locality",
    "attributes", "intersection", "withheld",
)
PLACE_COUNT_NOTE = ("no household microdata here: compounded stress is the place-level count "
                    "of stressed dimensions, which is not the Alkire-Foster measure")


def add_subgroups_and_trends(inputs: RunInputs, details: dict[str, dict[str, Any]],
                             settings: Settings, methodology: Methodology | None = None) -> None:
    """Add subgroup gaps, trends, Alkire-Foster measures and compounded groups to `details`."""
    methodology = methodology or load_default_methodology()
    confidence = methodology.uncertainty.confidence_level
    k_min = settings.privacy.k_min
    obs = inputs.observations[inputs.observations["indicator"] != SUBGROUP_SHARE_INDICATOR]
    measures, deffs = _indicator_uncertainty(inputs, methodology)
    if not obs.empty:
        polarity = inputs.indicators["polarity"].to_dict()
        gaps = furthest_behind(obs, polarity=polarity,
                               populations=inputs.localities["population"], k_min=k_min,
                               measures=measures, design_effects=deffs, confidence=confidence)
        subgroup_cells = gaps[gaps["subgroup"] != ALL]
        records = cells.plain_records(subgroup_cells[list(CELL_COLUMNS)])
        for code, group in cells.grouped(subgroup_cells["locality"], records).items():
            details.setdefault(code, {})["subgroups"] = group
        _trends(inputs, obs, details, measures, deffs, confidence, k_min)
    _multidimensional(inputs, details, methodology, k_min)
    if not obs.empty:
        _compounded_from_indicators(inputs, gaps, details, methodology)


def _indicator_uncertainty(inputs: RunInputs, methodology: Methodology
                           ) -> tuple[dict[str, str], dict[str, float]]:
    indicators = inputs.indicators
    measures = {code: measure_of_unit(unit) for code, unit in indicators["unit"].items()}
    given = (indicators["design_effect"] if "design_effect" in indicators
             else pd.Series(np.nan, index=indicators.index))
    deffs = given.astype(float).fillna(methodology.uncertainty.default_design_effect).to_dict()
    return measures, deffs


def _trends(inputs: RunInputs, obs: pd.DataFrame, details: dict[str, dict[str, Any]],
            measures: dict[str, str], deffs: dict[str, float], confidence: float,
            k_min: int) -> None:
    periods = sorted(obs["period"].astype(str).unique())
    if len(periods) < 2:
        return
    polarity = inputs.indicators["polarity"].to_dict()
    targets = inputs.indicators["target"].dropna().to_dict()
    trend = change_between_periods(obs, periods[-2], periods[-1], polarity=polarity,
                                   targets=targets, measures=measures, design_effects=deffs,
                                   confidence=confidence)
    periods_used = {"baseline_period": periods[-2], "followup_period": periods[-1]}
    overall = trend[trend["subgroup"] == ALL]
    numeric = ["baseline", "baseline_ci_low", "baseline_ci_high", "followup", "followup_ci_low",
               "followup_ci_high", "change", "change_ci_low", "change_ci_high", "progress",
               "target"]
    flags = ["improved", "target_reached"]
    words = ["change_status", "target_status"]
    entries = cells.plain_records(overall[numeric + flags + words])
    pairs = [(indicator, entry | periods_used)
             for indicator, entry in zip(overall["indicator"].tolist(), entries, strict=True)]
    for code, group in cells.grouped(overall["locality"], pairs).items():
        details.setdefault(code, {})["trend"] = dict(group)
    _gap_trends(obs, trend, details, periods, k_min)


def _gap_trends(obs: pd.DataFrame, trend: pd.DataFrame, details: dict[str, dict[str, Any]],
                periods: list[str], k_min: int) -> None:
    subgroup = trend[(trend["subgroup"] != ALL) & trend["gap_baseline"].notna()
                     & trend["gap_followup"].notna()].copy()
    if subgroup.empty:
        return
    sizes = obs[obs["subgroup"] != ALL].assign(period=obs["period"].astype(str))
    sizes = sizes.pivot_table(index=["locality", "indicator", "subgroup"], columns="period",
                              values="sample_size", aggfunc="first")
    keys = pd.MultiIndex.from_frame(subgroup[["locality", "indicator", "subgroup"]])
    smallest = sizes.reindex(keys)[[periods[-2], periods[-1]]].min(axis=1, skipna=False)
    # A gap and the locality value give back the subgroup's value: the smaller of the two
    # surveys' cells decides whether the trend may be shown.
    subgroup["sample_size"] = smallest.to_numpy()
    subgroup["withheld"] = (subgroup["sample_size"] < k_min) | subgroup["sample_size"].isna()
    columns = ["indicator", "subgroup", "gap_baseline", "gap_followup", "gap_change",
               "gap_change_ci_low", "gap_change_ci_high", "gap_narrowed", "gap_status",
               "sample_size", "withheld"]
    records = cells.plain_records(subgroup[columns])
    for entry in records:
        entry["baseline_period"], entry["followup_period"] = periods[-2], periods[-1]
    for code, group in cells.grouped(subgroup["locality"], records).items():
        target = details.setdefault(code, {})
        target["gap_trends"] = group
        target["gaps_narrowed"] = {f"{e['indicator']}|{e['subgroup']}": e["gap_narrowed"]
                                   for e in group if e["gap_narrowed"] is not None}


# -- Alkire-Foster ------------------------------------------------------------------------------
def _multidimensional(inputs: RunInputs, details: dict[str, dict[str, Any]],
                      methodology: Methodology, k_min: int) -> None:
    measured: set[str] = set()
    households = inputs.households
    if not households.empty:
        # One measure per questionnaire (the set of indicators a file asked): people asked
        # different questions cannot be scored on the same weights. The largest survey
        # goes first, and a locality keeps the first measure it gets.
        questionnaire = households["indicator_values"].map(lambda v: tuple(sorted(v)))
        for key in questionnaire.value_counts().index:
            survey = households[questionnaire == key]
            measured |= _alkire_foster(inputs, survey, details, methodology, k_min, measured)
    for code in inputs.localities.index:
        if code not in measured:
            details.setdefault(code, {})["multidimensional"] = {
                "method": "place_count", "note": PLACE_COUNT_NOTE,
                "confidence_level": methodology.uncertainty.confidence_level}


def _alkire_foster(inputs: RunInputs, households: pd.DataFrame,
                   details: dict[str, dict[str, Any]], methodology: Methodology, k_min: int,
                   taken: set[str]) -> set[str]:
    """Compute AF per period, locality (every level) and subgroup; return localities measured.

    Localities in `taken` already have a measure from a larger survey and are left alone.
    """
    settings = methodology.deprivation
    confidence = methodology.uncertainty.confidence_level
    records, g0, weights, dropped = _microdata(inputs, households, settings)
    if records.empty:
        return set()
    parents = inputs.localities["parent_code"].where(
        inputs.localities["parent_code"].notna(), None).to_dict()
    places = af.locality_memberships(records["locality"], parents)
    attribute_frame = pd.DataFrame(list(records["attributes"]), index=records.index)
    groups = af.subgroup_memberships(attribute_frame.reset_index(drop=True),
                                     sorted(attribute_frame.columns), settings.intersections)
    keys = places.merge(groups, on="record")
    keys["period"] = records["period"].to_numpy()[keys["record"].to_numpy()]
    result = af.alkire_foster(records, g0, weights, settings.k, keys[
        ["record", "period", "locality", "subgroup"]])
    _add_intervals(result, weights.index, confidence)
    _add_gaps(result, confidence)
    _mark_withheld(result, k_min, parents)
    change = _af_change(result, confidence)
    info = {"method": "alkire_foster", "k": round(settings.k, 6),
            "weights": {c: round(float(w), 6) for c, w in weights.items()},
            "confidence_level": confidence, "people_excluded_incomplete": dropped}
    latest = result[result["period"] == result.groupby("locality")["period"].transform("max")]
    for code, frame in latest.groupby("locality", sort=False):
        if code in taken:
            continue
        groups_out = [_af_cell(row, weights.index, change) for row in frame.to_dict("records")]
        own = next(g for g in groups_out if g["subgroup"] == ALL)
        entry = details.setdefault(code, {})
        entry["multidimensional"] = info | {"period": str(frame["period"].iloc[0]),
                                            "all": own, "groups": [
                                                g for g in groups_out if g["subgroup"] != ALL]}
        entry["compounded_groups"] = [
            _compounded_entry(g) for g in sorted(groups_out, key=lambda g: -(g["M0"] or 0))
            if g["subgroup"] != ALL and (g["H"] or 0) > 0]
    return set(latest["locality"]) - taken


def _microdata(inputs: RunInputs, households: pd.DataFrame, settings: af.Deprivation
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, int]:
    """Return complete person records, their deprivations, the indicator weights, # dropped."""
    values = pd.DataFrame(list(households["indicator_values"]), index=households.index)
    codes = [c for c in values.columns if c in inputs.indicators.index]
    g0 = pd.DataFrame({c: af.deprived(values[c], polarity=inputs.indicators.at[c, "polarity"],
                                      cutoff=inputs.indicators.at[c, "cutoff"],
                                      unit=inputs.indicators.at[c, "unit"]) for c in codes},
                      index=households.index)
    # Missing is not zero: a person not asked an indicator is left out of the measure (and
    # counted), never counted as not deprived.
    complete = g0.notna().all(axis=1)
    records = households[complete].reset_index(drop=True)
    records["cluster"] = (records["locality"].astype(str) + "|" + records["period"].astype(str)
                          + "|" + records["household_id"].astype(str))
    weights = af.indicator_weights(inputs.indicators, codes, settings)
    return records, g0[complete].reset_index(drop=True)[list(weights.index)], weights, int(
        (~complete).sum())


def _add_intervals(result: pd.DataFrame, codes: pd.Index, confidence: float) -> None:
    z = z_value(confidence)
    names = ["H", "A", "M0"] + [f"{kind}.{c}" for c in codes
                                for kind in ("censored", "uncensored", "contribution")]
    for name in names:
        se = result[f"{name}_se"]
        result[f"{name}_ci_low"] = (result[name] - z * se).clip(lower=0.0, upper=1.0)
        result[f"{name}_ci_high"] = (result[name] + z * se).clip(lower=0.0, upper=1.0)
    cv = result["M0_se"] / result["M0"].where(result["M0"] > 0)
    result["reliability"] = reliability(cv.to_numpy(), result["n"].to_numpy(dtype=float))


def _add_gaps(result: pd.DataFrame, confidence: float) -> None:
    """Add each subgroup's M0 gap to its locality's, with its interval and a status."""
    totals = result[result["subgroup"] == ALL].set_index(["period", "locality"])
    keys = pd.MultiIndex.from_frame(result[["period", "locality"]])
    total = totals.reindex(keys)
    result["gap_locality"] = result["M0"].to_numpy() - total["M0"].to_numpy()
    se = gap_to_total_se(result["M0_se"].to_numpy(), total["M0_se"].to_numpy(),
                         result["population"].to_numpy(), total["population"].to_numpy())
    low, high = difference_interval(result["gap_locality"], se, confidence)
    result["gap_locality_ci_low"], result["gap_locality_ci_high"] = low, high
    side = beyond_noise(low, high)
    noisy = (result["reliability"] == "unreliable").to_numpy()
    point = result["gap_locality"].to_numpy(dtype=float)
    status = np.where((side > 0) & ~noisy, "behind",
                      np.where(point > 0, "possible_gap",
                               np.where(side < 0, "ahead", "no_clear_gap"))).astype(object)
    status[(result["subgroup"] == ALL).to_numpy() | np.isnan(point)] = None
    result["status"] = status


def _mark_withheld(result: pd.DataFrame, k_min: int, parents: dict[str, str | None]) -> None:
    """Mark cells on fewer than k_min people, and protect them from parent-minus-children.

    A parent's figure is the weighted sum of its children's. Where exactly one child of a
    parent is withheld, the smallest other child is withheld too ("complementary"), so the
    parent minus the visible children does not give back the small one.
    """
    result["withheld"] = result["n"] < k_min
    result["withheld_reason"] = np.where(result["withheld"], "small", None).astype(object)
    totals = result[result["subgroup"] == ALL]
    for _, same in totals.groupby("period"):
        by_parent = same.assign(parent=same["locality"].map(parents)).dropna(subset=["parent"])
        for _, children in by_parent.groupby("parent"):
            if int(children["withheld"].sum()) == 1 and len(children) > 1:
                partner = children[~children["withheld"]]["n"].idxmin()
                result.loc[partner, ["withheld", "withheld_reason"]] = [True, "complementary"]


def _af_change(result: pd.DataFrame, confidence: float) -> dict[tuple[str, str], dict]:
    """Return per (locality, subgroup) the change of H and M0 between the last two periods."""
    periods = sorted(result["period"].astype(str).unique())
    if len(periods) < 2:
        return {}
    base = result[result["period"] == periods[-2]].set_index(["locality", "subgroup"])
    follow = result[result["period"] == periods[-1]].set_index(["locality", "subgroup"])
    both = base.index.intersection(follow.index)
    out: dict[tuple[str, str], dict] = {}
    for name in ("H", "M0"):
        change = follow.loc[both, name] - base.loc[both, name]
        se = np.sqrt(follow.loc[both, f"{name}_se"] ** 2 + base.loc[both, f"{name}_se"] ** 2)
        low, high = difference_interval(change, se, confidence)
        side = beyond_noise(low, high)
        for key, c, lo, hi, s in zip(both, change, low, high, side, strict=True):
            out.setdefault(key, {"baseline_period": periods[-2],
                                 "followup_period": periods[-1]})[name] = {
                "change": cells.num(c), "ci_low": cells.num(lo), "ci_high": cells.num(hi),
                "status": "improved" if s < 0 else "worsened" if s > 0 else "no clear change"}
    return out


def _af_cell(row: dict[str, Any], codes: pd.Index, change: dict) -> dict[str, Any]:
    subgroup = row["subgroup"]
    cell: dict[str, Any] = {
        "subgroup": subgroup, "sample_size": int(row["n"]), "poor": int(row["poor"]),
        "population": cells.num(row["population"]),
        "attributes": 0 if subgroup == ALL else subgroup.count(";") + 1,
        "reliability": _text(row["reliability"]), "status": _text(row["status"]),
        "withheld": bool(row["withheld"]), "withheld_reason": _text(row["withheld_reason"]),
    }
    for name in ("H", "A", "M0", "gap_locality"):
        for suffix in ("", "_ci_low", "_ci_high") + (("_se",) if name != "gap_locality" else ()):
            cell[name + suffix] = cells.num(row[name + suffix])
    cell["indicators"] = {
        code: {kind: cells.num(row[f"{kind}.{code}"])
               for kind in ("censored", "uncensored", "contribution")}
        | {"censored_se": cells.num(row[f"censored.{code}_se"])}
        for code in codes}
    cell["change"] = change.get((row["locality"], subgroup))
    return cell


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _compounded_entry(cell: dict[str, Any]) -> dict[str, Any]:
    return {"subgroup": cell["subgroup"], "method": "alkire_foster",
            "sample_size": cell["sample_size"], "H": cell["H"], "H_ci_low": cell["H_ci_low"],
            "H_ci_high": cell["H_ci_high"], "A": cell["A"], "M0": cell["M0"],
            "M0_ci_low": cell["M0_ci_low"], "M0_ci_high": cell["M0_ci_high"],
            "status": cell["status"], "reliability": cell["reliability"],
            "attributes": cell["attributes"], "withheld": cell["withheld"]}


# -- compounded groups from aggregate indicator values -------------------------------------------
def _compounded_from_indicators(inputs: RunInputs, gaps: pd.DataFrame,
                                details: dict[str, dict[str, Any]],
                                methodology: Methodology) -> None:
    """List subgroup cells whose values are beyond the cutoff in >= k dimensions (not AF).

    A cell is deprived in an indicator when its value is on the wrong side of the cutoff,
    `beyond_noise` when its whole interval is; a dimension counts when any of its
    indicators deprives. Only localities without microdata get this list.
    """
    indicators = inputs.indicators
    frame = gaps[(gaps["subgroup"] != ALL) & gaps["indicator"].map(indicators["cutoff"]).notna()]
    if frame.empty:
        return
    cutoff = frame["indicator"].map(indicators["cutoff"]).astype(float)
    worse = frame["indicator"].map(indicators["polarity"]) == "higher_is_worse"
    beyond = np.where(worse, frame["value"] > cutoff, frame["value"] < cutoff)
    certain = np.where(worse, frame["ci_low"] > cutoff, frame["ci_high"] < cutoff)
    frame = frame.assign(deprived=beyond, certain=certain,
                         dimension=frame["indicator"].map(indicators["dimension"]))
    grouped = frame.groupby(["locality", "subgroup"], sort=True)
    sizes = grouped["sample_size"].min()
    attributes = grouped["attributes"].first()
    withheld = grouped["withheld"].any()
    hit = frame[frame["deprived"]].groupby(["locality", "subgroup"], sort=True)
    dimensions = hit["dimension"].agg(lambda v: sorted(set(v)))
    dimensions = dimensions[dimensions.map(len) >= methodology.k]
    sure = frame[frame["deprived"] & frame["certain"]].groupby(
        ["locality", "subgroup"])["dimension"].agg(lambda v: sorted(set(v)))
    named = hit["indicator"].agg(sorted)
    for (code, subgroup), deprived_in in dimensions.items():
        measured = details.get(code, {}).get("multidimensional", {}).get("method")
        if measured == "alkire_foster":
            continue
        details.setdefault(code, {}).setdefault("compounded_groups", []).append({
            "subgroup": subgroup, "method": "indicator_cutoffs",
            "deprived_dimensions": len(deprived_in), "dimensions": deprived_in,
            "dimensions_beyond_noise": sure.get((code, subgroup), []),
            "indicators": named[(code, subgroup)],
            "sample_size": cells.num(sizes[(code, subgroup)]),
            "attributes": int(attributes[(code, subgroup)]),
            "withheld": bool(withheld[(code, subgroup)])})
