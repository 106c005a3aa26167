"""Who is furthest behind: subgroup x locality gaps against the locality and the nation.

Input is long-form observations, one row per (locality, indicator, period, subgroup) with
columns `locality`, `indicator`, `period`, `subgroup`, `value` and, optionally,
`sample_size`, `standard_error`, `ci_low` and `ci_high`. Subgroups are `all` or
`key=value` pairs joined by `;` (`sex=female;disability=yes`); an intersection is a subgroup
with two or more pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from geo.analysis.uncertainty import (
    DEFAULT_CONFIDENCE,
    beyond_noise,
    difference_interval,
    estimate_intervals,
)
from geo.errors import ValidationError

ALL = "all"
OBSERVATION_COLUMNS: tuple[str, ...] = ("locality", "indicator", "period", "subgroup", "value")
# Optional per-value uncertainty: how many answered, and the source's own error if it has one.
OPTIONAL_COLUMNS: tuple[str, ...] = ("sample_size", "standard_error", "ci_low", "ci_high")
DEFAULT_K_MIN = 10


def canonical_subgroup(subgroup: str) -> str:
    """Return the subgroup with keys and values trimmed, lower-cased and keys sorted."""
    text = str(subgroup).strip().lower()
    if text in ("", ALL):
        return ALL
    pairs: dict[str, str] = {}
    for part in text.split(";"):
        key, separator, value = (piece.strip() for piece in part.partition("="))
        if not separator or not key or not value:
            raise ValidationError(
                f"subgroup '{subgroup}' is not 'all' or key=value pairs joined by ';'",
                {"subgroup": subgroup},
            )
        pairs[key] = value
    # Sorted keys make `disability=yes;sex=female` and `sex=female;disability=yes` the
    # same cell.
    return ";".join(f"{key}={pairs[key]}" for key in sorted(pairs))


def polarity_signs(indicators: pd.Series, polarity: Mapping[str, str]) -> np.ndarray:
    """Return +1 where higher is worse and -1 where higher is better, per row."""
    unknown = sorted(set(indicators) - set(polarity))
    if unknown:
        raise ValidationError(
            f"no polarity for indicator(s): {', '.join(map(str, unknown))}",
            {"indicators": unknown},
        )
    bad = {k: v for k, v in polarity.items() if v not in ("higher_is_worse", "higher_is_better")}
    if bad:
        raise ValidationError("polarity must be higher_is_worse or higher_is_better", bad)
    return np.where(indicators.map(polarity) == "higher_is_better", -1.0, 1.0)


def prepare_observations(observations: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with checked columns, canonical subgroups and float values."""
    missing = [column for column in OBSERVATION_COLUMNS if column not in observations.columns]
    if missing:
        raise ValidationError(
            f"observations lack column(s): {', '.join(missing)}", {"missing": missing}
        )
    frame = observations.copy()
    for optional in OPTIONAL_COLUMNS:
        if optional not in frame.columns:
            frame[optional] = np.nan
    # a handful of distinct subgroups over hundreds of thousands of rows: parse each once
    distinct = frame["subgroup"].drop_duplicates()
    canonical = dict(zip(distinct, map(canonical_subgroup, distinct), strict=True))
    frame["subgroup"] = frame["subgroup"].map(canonical)
    frame["period"] = frame["period"].astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    for optional in OPTIONAL_COLUMNS:
        frame[optional] = pd.to_numeric(frame[optional], errors="coerce").astype(float)
    keys = ["locality", "indicator", "period", "subgroup"]
    if frame.duplicated(keys).any():
        first = frame.loc[frame.duplicated(keys), keys].iloc[0].to_dict()
        raise ValidationError("observations repeat a (locality, indicator, period, subgroup)",
                              {"first_duplicate": first})
    return frame


def latest_per_indicator(frame: pd.DataFrame) -> pd.DataFrame:
    """Return only the rows of each indicator's latest period (periods sort as text)."""
    latest = frame.groupby("indicator")["period"].transform("max")
    return frame[frame["period"] == latest]


def national_values(
    frame: pd.DataFrame, populations: pd.Series | None = None
) -> pd.Series:
    """Return per-indicator national values: mean of localities' `all` values.

    Population-weighted where populations (indexed by locality) are given and positive;
    localities without a population then carry no weight, and an indicator with no
    weighted locality falls back to the plain mean.
    """
    totals = frame[(frame["subgroup"] == ALL) & frame["value"].notna()]
    plain = totals.groupby("indicator")["value"].mean()
    if populations is None:
        return plain
    weight = totals["locality"].map(populations).astype(float).fillna(0.0).clip(lower=0.0)
    weighted_sum = (totals["value"] * weight).groupby(totals["indicator"]).sum()
    weight_sum = weight.groupby(totals["indicator"]).sum()
    weighted = weighted_sum[weight_sum > 0] / weight_sum[weight_sum > 0]
    return weighted.reindex(plain.index).fillna(plain)


def withheld_cells(frame: pd.DataFrame, k_min: int) -> pd.Series:
    """Return True where a value rests on fewer than k_min people.

    A subgroup value with unknown sample size is withheld too: we cannot show it is safe.
    A locality's `all` value with unknown size (administrative data) is not.
    """
    size = frame["sample_size"]
    return (size < k_min) | (size.isna() & (frame["subgroup"] != ALL))


def furthest_behind(
    observations: pd.DataFrame,
    *,
    polarity: Mapping[str, str],
    populations: pd.Series | None = None,
    national: Mapping[str, float] | None = None,
    k_min: int = DEFAULT_K_MIN,
    period: str | None = None,
    measures: Mapping[str, str] | None = None,
    design_effects: Mapping[str, float] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Return per (locality, indicator, subgroup) the gaps, their intervals and who is behind.

    gap_locality / gap_national are the value minus the locality's `all` value / the
    national value, signed so that a positive gap always means "further behind", each with
    an interval at `confidence` (`*_ci_low`, `*_ci_high`). Every value carries its own
    interval and reliability (`geo.analysis.uncertainty`).

    `status` says what the locality gap means: `behind` (the interval lies above zero and
    the cell is not unreliable), `possible_gap` (behind on the point estimate only, or
    beyond noise on an unreliable cell), `no_clear_gap`, `ahead` (beyond noise, better off)
    or missing. `behind_national` is the same test against the national value.
    `rank` (1 = furthest behind nationally, within each indicator) orders only the cells
    behind the nation beyond noise, and `rank_in_locality` only the subgroups `behind`
    their locality, largest gap first: a noisy cell never tops a list. Cells on fewer than
    k_min people are kept but marked `withheld` and left unranked.
    """
    frame = prepare_observations(observations)
    frame = frame[frame["period"] == str(period)] if period is not None else (
        latest_per_indicator(frame)
    )
    sign = polarity_signs(frame["indicator"], polarity)
    result = frame.reset_index(drop=True)
    intervals = estimate_intervals(result, measures, design_effects, confidence)
    # the source's own SE / interval are inputs; the columns out are the ones used
    result = pd.concat([result.drop(columns=intervals.columns, errors="ignore"), intervals],
                       axis=1)
    reference, reference_se = _national(result, populations)
    if national is not None:
        given = pd.Series(dict(national), dtype=float)
        reference = given.combine_first(reference)
        # A national value given from outside is taken as known (no sampling error of ours).
        reference_se = reference_se.drop(given.index, errors="ignore").reindex(reference.index)
    totals = result[result["subgroup"] == ALL].set_index(["locality", "indicator"])
    result["attributes"] = result["subgroup"].map(_attribute_count)
    result["intersection"] = result["attributes"] >= 2
    keys = pd.MultiIndex.from_frame(result[["locality", "indicator"]])
    result["locality_value"] = totals["value"].reindex(keys).to_numpy()
    total_se = totals["standard_error"].reindex(keys).to_numpy()
    total_n = totals["sample_size"].reindex(keys).to_numpy()
    result["national_value"] = result["indicator"].map(reference).astype(float)
    national_se = result["indicator"].map(reference_se).astype(float).fillna(0.0).to_numpy()
    result["gap_locality"] = sign * (result["value"] - result["locality_value"])
    result["gap_national"] = sign * (result["value"] - result["national_value"])
    own_se = result["standard_error"].to_numpy(dtype=float)
    gap_se = gap_to_total_se(own_se, total_se, result["sample_size"].to_numpy(), total_n)
    gap_se[(result["subgroup"] == ALL).to_numpy()] = 0.0
    low, high = difference_interval(result["gap_locality"], gap_se, confidence)
    result["gap_locality_ci_low"], result["gap_locality_ci_high"] = low, high
    low, high = difference_interval(
        result["gap_national"], np.sqrt(own_se ** 2 + national_se ** 2), confidence)
    result["gap_national_ci_low"], result["gap_national_ci_high"] = low, high
    result["withheld"] = withheld_cells(result, k_min)
    _add_status(result)
    _add_ranks(result)
    ordered = result.sort_values(["indicator", "rank", "locality", "subgroup"], na_position="last")
    return ordered.reset_index(drop=True)


def _national(frame: pd.DataFrame, populations: pd.Series | None) -> tuple[pd.Series, pd.Series]:
    """Return per indicator the national value and its standard error.

    The national value is the (population-weighted) mean of localities' `all` values; its
    variance is sum (w_i / W)^2 var_i over the localities with a known standard error
    (localities are sampled independently).
    """
    reference = national_values(frame, populations)
    totals = frame[(frame["subgroup"] == ALL) & frame["value"].notna()]
    if populations is None:
        weight = pd.Series(1.0, index=totals.index)
    else:
        weight = totals["locality"].map(populations).astype(float).fillna(0.0).clip(lower=0.0)
        no_weight = weight.groupby(totals["indicator"]).transform("sum") <= 0
        weight = weight.where(~no_weight, 1.0)
    share = weight / weight.groupby(totals["indicator"]).transform("sum")
    variance = (share ** 2 * totals["standard_error"] ** 2).groupby(totals["indicator"]).sum(
        min_count=1)
    return reference, np.sqrt(variance).reindex(reference.index)


def gap_to_total_se(own_se: np.ndarray, total_se: np.ndarray, own_n: np.ndarray,
                     total_n: np.ndarray) -> np.ndarray:
    """Return the standard error of subgroup minus total, the subgroup being part of the total.

    The total is f p_g + (1 - f) p_rest with f = n_g / n_T, so Cov(p_g, p_T) = f Var(p_g) and
    Var(p_g - p_T) = Var(p_g) + Var(p_T) - 2 f Var(p_g). Without both sample sizes f is taken
    as 0 (independent), which can only widen the interval. A total without a standard error
    (administrative data) counts as exact.
    """
    own_n = np.asarray(own_n, dtype=float)
    total_n = np.asarray(total_n, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where((own_n > 0) & (total_n > 0), own_n / total_n, 0.0)
    fraction = np.clip(np.nan_to_num(fraction), 0.0, 1.0)
    total_var = np.nan_to_num(np.asarray(total_se, dtype=float) ** 2)
    own_var = np.asarray(own_se, dtype=float) ** 2
    return np.sqrt(np.clip(own_var + total_var - 2.0 * fraction * own_var, 0.0, None))


def _add_status(result: pd.DataFrame) -> None:
    noisy = (result["reliability"] == "unreliable").to_numpy()
    result["status"] = _status(result["gap_locality"], result["gap_locality_ci_low"],
                               result["gap_locality_ci_high"], noisy)
    result.loc[result["subgroup"] == ALL, "status"] = None
    national = beyond_noise(result["gap_national_ci_low"], result["gap_national_ci_high"])
    behind = pd.Series((national > 0) & ~noisy, index=result.index, dtype="boolean")
    behind[result["gap_national"].isna().to_numpy()] = pd.NA
    result["behind_national"] = behind


def _status(gap: pd.Series, low: pd.Series, high: pd.Series, noisy: np.ndarray) -> np.ndarray:
    side = beyond_noise(low, high)
    point = gap.to_numpy(dtype=float)
    status = np.where(
        (side > 0) & ~noisy, "behind",
        np.where(point > 0, "possible_gap", np.where(side < 0, "ahead", "no_clear_gap")),
    ).astype(object)
    status[np.isnan(point)] = None
    return status


def _attribute_count(subgroup: str) -> int:
    return 0 if subgroup == ALL else subgroup.count(";") + 1


def _add_ranks(result: pd.DataFrame) -> None:
    rankable = ~result["withheld"]
    national_gap = result["gap_national"].where(rankable & result["behind_national"].fillna(False))
    result["rank"] = national_gap.groupby(result["indicator"]).rank(
        ascending=False, method="min", na_option="keep"
    ).astype("Int64")
    subgroup_gap = result["gap_locality"].where(
        rankable & (result["subgroup"] != ALL) & (result["status"] == "behind"))
    result["rank_in_locality"] = subgroup_gap.groupby(
        [result["locality"], result["indicator"]]
    ).rank(ascending=False, method="min", na_option="keep").astype("Int64")
