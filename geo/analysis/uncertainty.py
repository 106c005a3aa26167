"""Uncertainty of survey estimates: intervals, standard errors and a reliability flag.

Every survey value is an estimate. Here it gets an interval and a word on how far it can be
trusted, so that "furthest behind" and "improved" are only said beyond noise.

- **Shares** (an indicator measured in percent or as a 0-1 share) from a sample of n people:
  the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001) on the *effective*
  sample size n / deff, where deff is the indicator's design effect (Kish): a clustered
  survey of 400 people with deff 2 is worth 200 independent answers.
- **Means** and anything else: the standard error (or confidence interval) the source gives.
  Without one there is no interval, and the estimate is flagged `unknown`, never `reliable`.
- A standard error given by the source (or derived from its interval) always wins over the
  Wilson approximation: the survey's own design-based error knows its clusters and strata.

Reliability follows the coefficient-of-variation bands Statistics Canada publishes for its
household surveys (CV = standard error / estimate): up to 16.5 % acceptable (`reliable`),
16.5-33.3 % `caution` ("use with caution"), above 33.3 % `unreliable` (Statistics Canada does
not publish such estimates). For a share the CV is taken on the smaller of p and 1 - p, so that
"95 % have water" and "5 % lack water" — the same estimate — get the same flag. A cell with an
effective sample below 30 is never `reliable`, whatever its CV (the normal approximation behind
any interval needs about that many).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.stats import norm

Measure = Literal["share", "percent", "mean"]
Reliability = Literal["reliable", "caution", "unreliable", "unknown"]
RELIABLE_CV = 0.165
CAUTION_CV = 0.333
MIN_EFFECTIVE_N = 30.0
# A share in percent or as a fraction: the unit words indicator tables use.
PERCENT_UNITS = frozenset({"percent", "%", "pct", "per cent", "percentage"})
SHARE_UNITS = frozenset({"share", "proportion", "fraction", "ratio"})
DEFAULT_CONFIDENCE = 0.95


class Uncertainty(BaseModel):
    """The methodology's rules for survey uncertainty: confidence level and design effect."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    confidence_level: float = Field(default=DEFAULT_CONFIDENCE, ge=0.8, lt=1.0)
    default_design_effect: float = Field(
        default=1.0, gt=0.0, le=20.0,
        description="design effect of indicators that do not state their own")


def z_value(confidence: float) -> float:
    """Return the two-sided standard-normal quantile of a confidence level (1.96 for 0.95)."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def measure_of_unit(unit: str | None) -> Measure:
    """Return how an indicator's values are read: a share in percent, a 0-1 share, or a mean."""
    word = (unit or "").strip().lower()
    if word in PERCENT_UNITS:
        return "percent"
    if word in SHARE_UNITS:
        return "share"
    return "mean"


def scale_of(measure: str) -> float:
    """Return the factor from a 0-1 share to the indicator's scale (100 for percent)."""
    return 100.0 if measure == "percent" else 1.0


def wilson_interval(
    successes: np.ndarray, n: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Return the Wilson score interval (low, high) of successes out of n; NaN where n <= 0.

    `successes` and `n` may be fractional (an effective sample size n / deff).
    """
    count = np.asarray(successes, dtype=float)
    total = np.asarray(n, dtype=float)
    z = z_value(confidence)
    valid = total > 0
    safe = np.where(valid, total, 1.0)
    p = count / safe
    denominator = 1.0 + z * z / safe
    centre = (p + z * z / (2.0 * safe)) / denominator
    half = z * np.sqrt(np.clip(p * (1.0 - p), 0.0, None) / safe + z * z / (4.0 * safe * safe))
    half = half / denominator
    low = np.where(valid, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(valid, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def estimate_intervals(
    frame: pd.DataFrame,
    measures: Mapping[str, str] | None = None,
    design_effects: Mapping[str, float] | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
) -> pd.DataFrame:
    """Return per row standard_error, ci_low, ci_high, effective_n, cv and reliability.

    `frame` has `indicator`, `value`, `sample_size` and optionally `standard_error`,
    `ci_low`, `ci_high` (on the indicator's own scale). A given interval is kept and its
    standard error taken as its half-width over z; a given standard error makes a symmetric
    interval. Otherwise shares get a Wilson interval on n / deff. Measures not given are
    inferred: values all within [0, 1] are a share, anything else a mean.
    """
    z = z_value(confidence)
    measure = _row_measures(frame, measures)
    deff = frame["indicator"].map(dict(design_effects or {})).astype(float)
    deff = deff.where(deff > 0).fillna(1.0).to_numpy()
    value = frame["value"].to_numpy(dtype=float)
    size = _column(frame, "sample_size")
    given_se = _column(frame, "standard_error")
    given_low, given_high = _column(frame, "ci_low"), _column(frame, "ci_high")
    scale = np.where(measure == "percent", 100.0, 1.0)
    is_share = measure != "mean"
    effective_n = np.where(size > 0, size / deff, np.nan)
    share = value / scale
    wilson_low, wilson_high = wilson_interval(share * effective_n, effective_n, confidence)
    has_interval = np.isfinite(given_low) & np.isfinite(given_high)
    has_se = np.isfinite(given_se) & (given_se >= 0)
    low = np.where(has_interval, given_low,
                   np.where(has_se, value - z * given_se,
                            np.where(is_share, wilson_low * scale, np.nan)))
    high = np.where(has_interval, given_high,
                    np.where(has_se, value + z * given_se,
                             np.where(is_share, wilson_high * scale, np.nan)))
    # A share's interval cannot leave its scale, whatever the source's SE said.
    low = np.where(is_share & np.isfinite(low), np.clip(low, 0.0, scale), low)
    high = np.where(is_share & np.isfinite(high), np.clip(high, 0.0, scale), high)
    # The Wilson half-width over z stays positive at 0 % and 100 %, where p(1-p)/n is 0
    # and would claim certainty from a handful of answers.
    se = np.where(has_se, given_se, (high - low) / (2.0 * z))
    result = pd.DataFrame({"standard_error": se, "ci_low": low, "ci_high": high,
                           "effective_n": effective_n}, index=frame.index)
    base = np.where(is_share, np.minimum(share, 1.0 - share) * scale, np.abs(value))
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(base > 0, se / base, np.where(se > 0, np.inf, 0.0))
    cv = np.where(np.isfinite(se) & np.isfinite(value), cv, np.nan)
    result["cv"] = cv
    result["reliability"] = reliability(cv, effective_n)
    return result


def reliability(cv: np.ndarray, effective_n: np.ndarray) -> np.ndarray:
    """Return the reliability word per estimate from its CV and effective sample size."""
    cv = np.asarray(cv, dtype=float)
    small = np.asarray(effective_n, dtype=float) < MIN_EFFECTIVE_N
    words = np.where(cv <= RELIABLE_CV, "reliable",
                     np.where(cv <= CAUTION_CV, "caution", "unreliable")).astype(object)
    words[(words == "reliable") & small] = "caution"
    words[np.isnan(cv)] = "unknown"
    return words


def difference_interval(
    estimate: np.ndarray, standard_error: np.ndarray, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Return (low, high) of a normal interval around a difference; NaN where SE is unknown."""
    z = z_value(confidence)
    estimate = np.asarray(estimate, dtype=float)
    se = np.asarray(standard_error, dtype=float)
    return estimate - z * se, estimate + z * se


def beyond_noise(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return +1 where an interval lies above zero, -1 below, 0 where it spans zero or is NaN."""
    low = np.asarray(low, dtype=float)
    high = np.asarray(high, dtype=float)
    return np.where(low > 0, 1, np.where(high < 0, -1, 0))


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _row_measures(frame: pd.DataFrame, measures: Mapping[str, str] | None) -> np.ndarray:
    known = dict(measures or {})
    missing = [code for code in frame["indicator"].unique() if code not in known]
    if missing:
        values = frame[frame["indicator"].isin(missing)].groupby("indicator")["value"]
        inside = values.agg(lambda v: bool(((v >= 0) & (v <= 1)).all()))
        known.update({code: "share" if flag else "mean" for code, flag in inside.items()})
    return frame["indicator"].map(known).fillna("mean").to_numpy(dtype=object)
