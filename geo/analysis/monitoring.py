"""Monitoring: change between two periods, subgroup gaps over time, progress to targets.

Works on the long-form observations of `geo.analysis.disaggregation`. Scores from two
runs can be compared the same way: one row per (locality, score name as `indicator`,
run as `period`, subgroup `all`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from geo.analysis.disaggregation import ALL, polarity_signs, prepare_observations

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


def _period_values(frame: pd.DataFrame, period: str, name: str) -> pd.Series:
    return frame[frame["period"] == str(period)].set_index(CELL)["value"].rename(name)


def _gaps(values: pd.Series, sign: pd.Series | None) -> pd.Series:
    """Return subgroup value minus its locality's `all` value (signed: + = behind)."""
    frame = values.reset_index()
    totals = frame[frame["subgroup"] == ALL].set_index(["locality", "indicator"])[values.name]
    keys = pd.MultiIndex.from_frame(frame[["locality", "indicator"]])
    gap = frame[values.name].to_numpy() - totals.reindex(keys).to_numpy()
    if sign is not None:
        gap = gap * frame["indicator"].map(sign).to_numpy(dtype=float)
    gap[frame["subgroup"].to_numpy() == ALL] = np.nan
    return pd.Series(gap, index=values.index)


def change_between_periods(
    observations: pd.DataFrame,
    baseline_period: str,
    followup_period: str,
    *,
    polarity: Mapping[str, str] | None = None,
    targets: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Return per (locality, indicator, subgroup) baseline, follow-up, change and progress.

    Columns: baseline, followup, change, relative_change, improved (needs polarity),
    gap_baseline, gap_followup, gap_narrowed (subgroups only: is the absolute gap to the
    locality's `all` value smaller at follow-up), target, progress (to target, per
    indicator where given), target_reached. Cells present in only one period are kept
    with NaN for the other.
    """
    frame = prepare_observations(observations)
    signs = None
    if polarity is not None:
        indicators = pd.Series(frame["indicator"].unique())
        signs = pd.Series(polarity_signs(indicators, polarity), index=indicators.to_numpy())
    baseline = _period_values(frame, baseline_period, "baseline")
    followup = _period_values(frame, followup_period, "followup")
    result = pd.concat([baseline, followup], axis=1).sort_index()
    result["change"] = result["followup"] - result["baseline"]
    result["relative_change"] = relative_change(result["baseline"], result["change"])
    row_sign = _row_values(result, signs)
    result["improved"] = _nullable_bool(row_sign * result["change"] < 0, result["change"], row_sign)
    result["gap_baseline"] = _gaps(result["baseline"], signs)
    result["gap_followup"] = _gaps(result["followup"], signs)
    narrowed = result["gap_followup"].abs() < result["gap_baseline"].abs()
    result["gap_narrowed"] = _nullable_bool(
        narrowed, result["gap_baseline"], result["gap_followup"]
    )
    result["target"] = _row_values(result, pd.Series(targets, dtype=float) if targets else None)
    result["progress"] = progress_to_target(
        result["baseline"], result["followup"], result["target"],
        None if signs is None else row_sign,
    )
    result["target_reached"] = _nullable_bool(result["progress"] >= 1.0, result["progress"])
    return result.reset_index()


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
