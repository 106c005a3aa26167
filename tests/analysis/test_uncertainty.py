"""Intervals, reliability and "beyond noise" verdicts, against outside references.

Wilson intervals are checked against statsmodels' `proportion_confint(method="wilson")`; the
rankings and verdicts on small hand-made tables whose answer is plain.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from geo.analysis.disaggregation import furthest_behind
from geo.analysis.monitoring import change_between_periods
from geo.analysis.uncertainty import estimate_intervals, reliability, wilson_interval, z_value


@pytest.mark.parametrize(("count", "n"), [(0, 10), (1, 10), (5, 10), (10, 10), (37, 120),
                                          (3, 800), (412, 800), (1, 1)])
@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_wilson_matches_statsmodels(count: int, n: int, confidence: float) -> None:
    low, high = wilson_interval(np.array([count]), np.array([n]), confidence)
    ref_low, ref_high = proportion_confint(count, n, alpha=1 - confidence, method="wilson")
    assert low[0] == pytest.approx(ref_low, abs=1e-12)
    assert high[0] == pytest.approx(ref_high, abs=1e-12)


def test_design_effect_shrinks_the_sample_and_percent_scales() -> None:
    # 30 % of 400 people with deff 2 is worth 120 of 400 / 2 = 200 independent answers
    frame = pd.DataFrame({"indicator": ["x"], "value": [30.0], "sample_size": [400]})
    out = estimate_intervals(frame, {"x": "percent"}, {"x": 2.0})
    ref_low, ref_high = proportion_confint(60, 200, method="wilson")
    assert out["ci_low"].iloc[0] == pytest.approx(100 * ref_low)
    assert out["ci_high"].iloc[0] == pytest.approx(100 * ref_high)
    assert out["effective_n"].iloc[0] == 200


def test_a_given_standard_error_or_interval_wins() -> None:
    frame = pd.DataFrame({"indicator": ["m", "m", "p"], "value": [4.0, 4.0, 0.5],
                          "sample_size": [50, 50, 50], "standard_error": [0.5, np.nan, 0.01],
                          "ci_low": [np.nan, 3.0, np.nan], "ci_high": [np.nan, 5.5, np.nan]})
    out = estimate_intervals(frame, {"m": "mean", "p": "share"})
    z = z_value(0.95)
    assert out["ci_low"].tolist()[0] == pytest.approx(4.0 - z * 0.5)
    assert (out["ci_low"].iloc[1], out["ci_high"].iloc[1]) == (3.0, 5.5)
    assert out["standard_error"].iloc[1] == pytest.approx(2.5 / (2 * z))
    assert out["ci_high"].iloc[2] == pytest.approx(0.5 + z * 0.01)


def test_a_mean_without_error_has_no_interval_and_is_unknown() -> None:
    frame = pd.DataFrame({"indicator": ["m"], "value": [7.0], "sample_size": [300]})
    out = estimate_intervals(frame, {"m": "mean"})
    assert np.isnan(out["ci_low"].iloc[0]) and out["reliability"].iloc[0] == "unknown"


def test_reliability_bands() -> None:
    # Statistics Canada's bands: CV <= 16.5 % reliable, <= 33.3 % caution, above unreliable;
    # fewer than 30 effective answers is never "reliable".
    words = reliability(np.array([0.05, 0.165, 0.2, 0.333, 0.34, 0.05, np.nan]),
                        np.array([500, 500, 500, 500, 500, 20, 500]))
    assert words.tolist() == ["reliable", "reliable", "caution", "caution", "unreliable",
                              "caution", "unknown"]


POLARITY = {"poverty": "higher_is_worse"}


def test_a_small_cell_never_outranks_a_large_one() -> None:
    # Village A: migrants (n = 12) at 70 % against 30 % overall, a 40-point gap, but on 12
    # answers. Village B: women (n = 800) at 38 % against 30 %, an 8-point gap on 800.
    rows = [("A", "all", 30.0, 1000), ("A", "status=migrant", 70.0, 12),
            ("B", "all", 30.0, 1600), ("B", "sex=female", 38.0, 800)]
    frame = pd.DataFrame([(loc, "poverty", "2024", sub, v, n) for loc, sub, v, n in rows],
                         columns=["locality", "indicator", "period", "subgroup", "value",
                                  "sample_size"])
    result = furthest_behind(frame, polarity=POLARITY, measures={"poverty": "percent"})
    small = result[result["subgroup"] == "status=migrant"].iloc[0]
    large = result[result["subgroup"] == "sex=female"].iloc[0]
    assert small["gap_locality"] > large["gap_locality"]  # bigger on the point estimate...
    assert small["reliability"] == "unreliable" or small["status"] != "behind"
    assert large["status"] == "behind" and large["rank_in_locality"] == 1
    assert pd.isna(small["rank_in_locality"])  # ...but never ranked above the solid one
    ranked = result.dropna(subset=["rank"])
    assert "status=migrant" not in set(ranked["subgroup"])
    assert large["gap_locality_ci_low"] > 0


def _two_rounds(before: float, after: float, n: int, subgroup_rows: bool = False) -> pd.DataFrame:
    rows = [("A", "poverty", "2024", "all", before, n), ("A", "poverty", "2026", "all", after, n)]
    if subgroup_rows:
        rows += [("A", "poverty", "2024", "sex=female", before + 10, n // 2),
                 ("A", "poverty", "2026", "sex=female", after + 10.2, n // 2)]
    return pd.DataFrame(rows, columns=["locality", "indicator", "period", "subgroup", "value",
                                       "sample_size"])


def test_a_tiny_change_reads_no_clear_change() -> None:
    result = change_between_periods(_two_rounds(30.0, 29.9, 400, subgroup_rows=True), "2024",
                                    "2026", polarity=POLARITY, targets={"poverty": 20.0},
                                    measures={"poverty": "percent"})
    overall = result[result["subgroup"] == "all"].iloc[0]
    assert overall["change"] == pytest.approx(-0.1)
    assert overall["change_status"] == "no clear change" and pd.isna(overall["improved"])
    assert overall["change_ci_low"] < 0 < overall["change_ci_high"]
    assert overall["target_status"] == "no clear change"
    female = result[result["subgroup"] == "sex=female"].iloc[0]
    assert female["gap_status"] == "no clear change" and pd.isna(female["gap_narrowed"])


def test_a_large_change_on_large_samples_is_improved_and_on_track() -> None:
    result = change_between_periods(_two_rounds(30.0, 22.0, 2000), "2024", "2026",
                                    polarity=POLARITY, targets={"poverty": 20.0},
                                    measures={"poverty": "percent"})
    overall = result.iloc[0]
    assert overall["change_status"] == "improved" and bool(overall["improved"])
    assert overall["change_ci_high"] < 0
    assert overall["target_status"] == "on track" and not overall["target_reached"]


def test_a_gap_that_crosses_zero_and_grows_has_widened() -> None:
    rows = [("A", "2024", "all", 30.0, 2000), ("A", "2024", "sex=female", 28.0, 1000),
            ("A", "2026", "all", 30.0, 2000), ("A", "2026", "sex=female", 45.0, 1000)]
    frame = pd.DataFrame([(loc, "poverty", per, sub, v, n) for loc, per, sub, v, n in rows],
                         columns=["locality", "indicator", "period", "subgroup", "value",
                                  "sample_size"])
    result = change_between_periods(frame, "2024", "2026", polarity=POLARITY,
                                    measures={"poverty": "percent"})
    female = result[result["subgroup"] == "sex=female"].iloc[0]
    assert female["gap_baseline"] == pytest.approx(-2.0)
    assert female["gap_followup"] == pytest.approx(15.0)
    assert female["gap_status"] == "gap widened" and not female["gap_narrowed"]
