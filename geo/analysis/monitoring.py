"""Monitoring: change between two periods, subgroup gaps over time, progress to targets.

Works on the long-form observations of `geo.analysis.disaggregation`. Scores from two
runs can be compared the same way: one row per (locality, score name as `indicator`,
run as `period`, subgroup `all`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from geo.analysis.disaggregation import (
    ALL,
    gap_to_total_se,
    polarity_signs,
    prepare_observations,
)
from geo.analysis.uncertainty import (
    DEFAULT_CONFIDENCE,
    beyond_noise,
    difference_interval,
    estimate_intervals,
)

CELL = ["locality", "indicator", "subgroup"]


def relative_change(baseline: np.ndarray, change: np.ndarray) -> np.ndarray:
    """Return change / |baseline|; 0 when both are 0, NaN (undefined) when only baseline is."""
    baseline = np.asarray(baseline, dtype=float)
    change = np.asarray(change, dtype=float)
    nonzero = baseline != 0
    safe = np.where(nonzero, np.abs(baseline), 1.0)
    return np.where(nonzero, change / safe, np.where(change == 0, 0.0, np.nan))


def progress_to_target(
    baseline: np.ndarray, current: np.ndarray, target: np.ndarray, sign: np.ndarray | None = None
) -> np.ndarray:
    """Return (current - baseline) / (target - baseline), clipped to [-1, 1].

    1 = target reached or passed; 0 = no movement; negative = moved away from the target,
    -1 = by at least the whole planned distance. The target's side of the baseline says
    which way is progress, so polarity (`sign`: +1 higher is worse, -1 higher is better)
    is only needed when target equals baseline ("hold the line"): then 1 if current is at
    or better than target, -1 if worse, NaN if polarity is unknown and current moved.
    """
    baseline, current, target = (np.asarray(a, dtype=float) for a in (baseline, current, target))
    distance = target - baseline
    moving = distance != 0
    ratio = (current - baseline) / np.where(moving, distance, 1.0)
    if sign is None:
        held = np.where(current == target, 1.0, np.nan)
    else:
        worse = np.asarray(sign, dtype=float) * (current - target) > 0
        held = np.where(worse, -1.0, 1.0)
    progress = np.where(moving, ratio, held)
    # NaN inputs must stay NaN (np.where above would otherwise pick a `held` value).
    progress[np.isnan(baseline) | np.isnan(current) | np.isnan(target)] = np.nan
    return np.clip(progress, -1.0, 1.0)


def _period_values(frame: pd.DataFrame, period: str, name: str) -> pd.DataFrame:
    """Return one period's value, standard error and sample size per cell, named by `name`."""
    rows = frame[frame["period"] == str(period)].set_index(CELL)
    return pd.DataFrame({name: rows["value"], f"{name}_se": rows["standard_error"],
                         f"{name}_n": rows["sample_size"]})


def _gaps(values: pd.Series, errors: pd.Series, sizes: pd.Series,
          sign: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    """Return subgroup value minus its locality's `all` value (signed: + = behind), and its SE."""
    frame = pd.DataFrame({"value": values, "se": errors, "n": sizes}).reset_index()
    totals = frame[frame["subgroup"] == ALL].set_index(["locality", "indicator"])
    keys = pd.MultiIndex.from_frame(frame[["locality", "indicator"]])
    gap = frame["value"].to_numpy() - totals["value"].reindex(keys).to_numpy()
    if sign is not None:
        gap = gap * frame["indicator"].map(sign).to_numpy(dtype=float)
    se = gap_to_total_se(frame["se"].to_numpy(dtype=float),
                          totals["se"].reindex(keys).to_numpy(dtype=float),
                          frame["n"].to_numpy(dtype=float),
                          totals["n"].reindex(keys).to_numpy(dtype=float))
    gap[frame["subgroup"].to_numpy() == ALL] = np.nan
    return gap, se


def change_between_periods(
    observations: pd.DataFrame,
    baseline_period: str,
    followup_period: str,
    *,
    polarity: Mapping[str, str] | None = None,
    targets: Mapping[str, float] | None = None,
    measures: Mapping[str, str] | None = None,
    design_effects: Mapping[str, float] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Return per (locality, indicator, subgroup) baseline, follow-up, change and progress.

    Columns: baseline, followup (with `*_ci_low`, `*_ci_high`), change with its interval
    (`change_ci_low`, `change_ci_high`; the two surveys are independent samples, so the
    variances add), relative_change, improved (needs polarity), change_status, gap_baseline,
    gap_followup, gap_change with its interval, gap_narrowed, gap_status (subgroups only: the
    gap to the locality's `all` value), target, progress (to target, per indicator where
    given), target_reached and target_status. Cells present in only one period are kept with
    NaN for the other.

    Every verdict is beyond noise or not said: `improved` is True / False only where the
    change interval excludes zero (`change_status` `improved` / `worsened`, else
    `no clear change`); `gap_narrowed` is True where the gap shrank beyond noise and False
    where it widened beyond noise (`gap narrowed` / `gap widened`, else `no clear change`);
    `target_status` is `reached` (the follow-up interval lies at or past the target),
    `on track` (improved beyond noise), `off track` (worsened beyond noise) or
    `no clear change`. Values without any uncertainty (no sample size, no standard error,
    e.g. administrative counts) are taken as exact, so their point change decides.
    """
    frame = prepare_observations(observations)
    intervals = estimate_intervals(frame, measures, design_effects, confidence)
    frame = frame.drop(columns=intervals.columns, errors="ignore").join(intervals)
    signs = None
    if polarity is not None:
        indicators = pd.Series(frame["indicator"].unique())
        signs = pd.Series(polarity_signs(indicators, polarity), index=indicators.to_numpy())
    baseline = _period_values(frame, baseline_period, "baseline")
    followup = _period_values(frame, followup_period, "followup")
    result = pd.concat([baseline, followup], axis=1).sort_index()
    for name in ("baseline", "followup"):
        low, high = difference_interval(result[name], result[f"{name}_se"].fillna(0.0),
                                        confidence)
        result[f"{name}_ci_low"], result[f"{name}_ci_high"] = low, high
    result["change"] = result["followup"] - result["baseline"]
    change_se = np.sqrt(result["baseline_se"].fillna(0.0) ** 2
                        + result["followup_se"].fillna(0.0) ** 2)
    low, high = difference_interval(result["change"], change_se, confidence)
    result["change_ci_low"], result["change_ci_high"] = low, high
    result["relative_change"] = relative_change(result["baseline"], result["change"])
    row_sign = _row_values(result, signs)
    # +1 where the change is an improvement beyond noise, -1 a worsening, 0 neither.
    better = -row_sign * beyond_noise(low, high)
    result["improved"] = _verdict(better, result["change"], row_sign)
    result["change_status"] = _words(better, result["change"], row_sign,
                                     ("improved", "worsened", "no clear change"))
    _gap_columns(result, signs, confidence)
    result["target"] = _row_values(result, pd.Series(targets, dtype=float) if targets else None)
    result["progress"] = progress_to_target(
        result["baseline"], result["followup"], result["target"],
        None if signs is None else row_sign,
    )
    _target_columns(result, row_sign, better)
    dropped = [c for c in result.columns if c.endswith(("_se", "_n"))]
    return result.drop(columns=dropped).reset_index()


def _gap_columns(result: pd.DataFrame, signs: pd.Series | None, confidence: float) -> None:
    gap_b, se_b = _gaps(result["baseline"], result["baseline_se"], result["baseline_n"], signs)
    gap_f, se_f = _gaps(result["followup"], result["followup_se"], result["followup_n"], signs)
    result["gap_baseline"], result["gap_followup"] = gap_b, gap_f
    result["gap_change"] = gap_f - gap_b
    low, high = difference_interval(result["gap_change"],
                                    np.sqrt(np.nan_to_num(se_b) ** 2 + np.nan_to_num(se_f) ** 2),
                                    confidence)
    result["gap_change_ci_low"], result["gap_change_ci_high"] = low, high
    # Narrowed: the gap is smaller and moved towards zero beyond noise. Widened: it is
    # larger and moved away from zero (on the side it ended on) beyond noise, which also
    # covers a gap that crossed zero and grew on the other side.
    moved = beyond_noise(low, high)
    smaller = np.abs(gap_f) < np.abs(gap_b)
    larger = np.abs(gap_f) > np.abs(gap_b)
    narrowing = np.where(smaller & (moved == -np.sign(gap_b)) & (moved != 0), 1,
                         np.where(larger & (moved == np.sign(gap_f)) & (moved != 0), -1, 0))
    result["gap_narrowed"] = _verdict(narrowing, gap_b, gap_f)
    result["gap_status"] = _words(narrowing, gap_b, gap_f,
                                  ("gap narrowed", "gap widened", "no clear change"))


def _target_columns(result: pd.DataFrame, row_sign: np.ndarray, better: np.ndarray) -> None:
    target = result["target"].to_numpy(dtype=float)
    # The follow-up interval's worse end (upper for higher-is-worse) must be at the target.
    worse_end = np.where(row_sign > 0, result["followup_ci_high"], result["followup_ci_low"])
    past = np.where(np.isnan(row_sign), result["progress"] >= 1.0,
                    row_sign * (worse_end - target) <= 0)
    result["target_reached"] = _nullable_bool(
        pd.Series(past, index=result.index), target, result["followup"], result["baseline"])
    status = np.where(past, "reached", np.where(better > 0, "on track",
                                                np.where(better < 0, "off track",
                                                         "no clear change"))).astype(object)
    missing = np.isnan(target) | np.isnan(result["change"].to_numpy(dtype=float)) | np.isnan(
        row_sign)
    status[missing] = None
    result["target_status"] = status


def _verdict(direction: np.ndarray, *required: pd.Series | np.ndarray) -> np.ndarray:
    """Return True / False where `direction` is +1 / -1, NA where 0 or an input is missing."""
    direction = np.asarray(direction, dtype=float)
    out = pd.array(direction > 0, dtype="boolean")
    out[direction == 0] = pd.NA
    for needed in required:
        out[np.isnan(np.asarray(needed, dtype=float))] = pd.NA
    return out


def _words(direction: np.ndarray, *required: pd.Series | np.ndarray,
           ) -> np.ndarray:
    *inputs, (good, bad, neither) = required
    direction = np.asarray(direction, dtype=float)
    words = np.where(direction > 0, good, np.where(direction < 0, bad, neither)).astype(object)
    for needed in inputs:
        words[np.isnan(np.asarray(needed, dtype=float))] = None
    return words


def _row_values(result: pd.DataFrame, per_indicator: pd.Series | None) -> np.ndarray:
    indicators = result.index.get_level_values("indicator")
    if per_indicator is None:
        return np.full(len(result), np.nan)
    return indicators.map(per_indicator).to_numpy(dtype=float)


def _nullable_bool(values: pd.Series, *required: pd.Series | np.ndarray) -> pd.Series:
    """Return `values` as a nullable boolean, NA wherever any required input is missing."""
    out = pd.Series(values, dtype="boolean")
    for needed in required:
        out[np.isnan(np.asarray(needed, dtype=float))] = pd.NA
    return out
