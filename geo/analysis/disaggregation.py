"""Who is furthest behind: subgroup x locality gaps against the locality and the nation.

Input is long-form observations, one row per (locality, indicator, period, subgroup) with
columns `locality`, `indicator`, `period`, `subgroup`, `value` and, optionally,
`sample_size`. Subgroups are `all` or `key=value` pairs joined by `;`
(`sex=female;disability=yes`); an intersection is a subgroup with two or more pairs.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from geo.errors import ValidationError

ALL = "all"
OBSERVATION_COLUMNS: tuple[str, ...] = ("locality", "indicator", "period", "subgroup", "value")
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
    if "sample_size" not in frame.columns:
        frame["sample_size"] = np.nan
    # a handful of distinct subgroups over hundreds of thousands of rows: parse each once
    distinct = frame["subgroup"].drop_duplicates()
    canonical = dict(zip(distinct, map(canonical_subgroup, distinct), strict=True))
    frame["subgroup"] = frame["subgroup"].map(canonical)
    frame["period"] = frame["period"].astype(str)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    frame["sample_size"] = pd.to_numeric(frame["sample_size"], errors="coerce").astype(float)
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
) -> pd.DataFrame:
    """Return per (locality, indicator, subgroup) the gaps and ranks of who is furthest behind.

    gap_locality / gap_national are the value minus the locality's `all` value / the
    national value, signed so that a positive gap always means "further behind".
    `rank` (1 = furthest behind nationally) is within each indicator; `rank_in_locality`
    ranks the subgroups of one locality and indicator by gap_locality. Cells on fewer than
    k_min people are kept but marked `withheld` and left unranked: too noisy to top a list
    and too identifying to single out.
    """
    frame = prepare_observations(observations)
    frame = frame[frame["period"] == str(period)] if period is not None else (
        latest_per_indicator(frame)
    )
    sign = polarity_signs(frame["indicator"], polarity)
    reference = national_values(frame, populations)
    if national is not None:
        reference = pd.Series(dict(national), dtype=float).combine_first(reference)
    totals = frame[frame["subgroup"] == ALL].set_index(["locality", "indicator"])["value"]
    result = frame.reset_index(drop=True)
    result["attributes"] = result["subgroup"].map(_attribute_count)
    result["intersection"] = result["attributes"] >= 2
    locality_keys = pd.MultiIndex.from_frame(result[["locality", "indicator"]])
    result["locality_value"] = totals.reindex(locality_keys).to_numpy()
    result["national_value"] = result["indicator"].map(reference).astype(float)
    result["gap_locality"] = sign * (result["value"] - result["locality_value"])
    result["gap_national"] = sign * (result["value"] - result["national_value"])
    result["withheld"] = withheld_cells(result, k_min)
    _add_ranks(result)
    ordered = result.sort_values(["indicator", "rank", "locality", "subgroup"], na_position="last")
    return ordered.reset_index(drop=True)


def _attribute_count(subgroup: str) -> int:
    return 0 if subgroup == ALL else subgroup.count(";") + 1


def _add_ranks(result: pd.DataFrame) -> None:
    rankable = ~result["withheld"]
    national_gap = result["gap_national"].where(rankable)
    result["rank"] = national_gap.groupby(result["indicator"]).rank(
        ascending=False, method="min", na_option="keep"
    ).astype("Int64")
    subgroup_gap = result["gap_locality"].where(rankable & (result["subgroup"] != ALL))
    result["rank_in_locality"] = subgroup_gap.groupby(
        [result["locality"], result["indicator"]]
    ).rank(ascending=False, method="min", na_option="keep").astype("Int64")
