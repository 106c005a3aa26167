"""Monitoring: deltas, gap narrowing and progress to target on known values."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from geo.analysis.monitoring import change_between_periods, progress_to_target, relative_change

POLARITY = {"poverty_rate": "higher_is_worse", "school_attendance": "higher_is_better"}
TARGETS = {"poverty_rate": 0.20, "school_attendance": 0.90}
OBSERVATIONS = pd.DataFrame(
    [
        ("A", "poverty_rate", "2020", "all", 0.40),
        ("A", "poverty_rate", "2020", "sex=female", 0.50),
        ("A", "poverty_rate", "2024", "all", 0.30),
        ("A", "poverty_rate", "2024", "sex=female", 0.34),
        ("A", "school_attendance", "2020", "all", 0.80),
        ("A", "school_attendance", "2024", "all", 0.70),
        ("B", "school_attendance", "2020", "all", 0.00),
        ("B", "school_attendance", "2024", "all", 0.70),
        ("B", "school_attendance", "2020", "sex=female", 0.00),
        ("B", "school_attendance", "2024", "sex=female", 0.60),
        ("C", "poverty_rate", "2024", "all", 0.25),
    ],
    columns=["locality", "indicator", "period", "subgroup", "value"],
)


@pytest.fixture(autouse=True)
def no_runtime_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def row(result: pd.DataFrame, locality: str, indicator: str, subgroup: str) -> pd.Series:
    match = result[(result["locality"] == locality) & (result["indicator"] == indicator)
                   & (result["subgroup"] == subgroup)]
    assert len(match) == 1
    return match.iloc[0]


def test_deltas_on_known_values() -> None:
    result = change_between_periods(OBSERVATIONS, "2020", "2024", polarity=POLARITY,
                                    targets=TARGETS)
    poverty = row(result, "A", "poverty_rate", "all")
    # 0.40 -> 0.30: change -0.10, relative -0.25, improved (lower poverty),
    # progress (0.30 - 0.40) / (0.20 - 0.40) = 0.5
    assert poverty["change"] == pytest.approx(-0.10)
    assert poverty["relative_change"] == pytest.approx(-0.25)
    assert poverty["improved"]
    assert poverty["progress"] == pytest.approx(0.5)
    assert not poverty["target_reached"]
    attendance = row(result, "A", "school_attendance", "all")
    # 0.80 -> 0.70 against a target of 0.90: moved the whole planned distance backwards
    assert attendance["change"] == pytest.approx(-0.10)
    assert not attendance["improved"]
    assert attendance["progress"] == pytest.approx(-1.0)


def test_subgroup_gap_narrowing() -> None:
    result = change_between_periods(OBSERVATIONS, "2020", "2024", polarity=POLARITY)
    female = row(result, "A", "poverty_rate", "sex=female")
    # gap 0.50 - 0.40 = 0.10 at baseline, 0.34 - 0.30 = 0.04 at follow-up: narrowed
    assert female["gap_baseline"] == pytest.approx(0.10)
    assert female["gap_followup"] == pytest.approx(0.04)
    assert female["gap_narrowed"]
    # B girls: attendance 0 = 0 (gap 0) then 0.6 vs 0.7: behind by 0.1 -> widened
    girls = row(result, "B", "school_attendance", "sex=female")
    assert girls["gap_baseline"] == pytest.approx(0.0)
    assert girls["gap_followup"] == pytest.approx(0.10)
    assert not girls["gap_narrowed"]
    assert pd.isna(row(result, "A", "poverty_rate", "all")["gap_narrowed"])


def test_zero_baseline_and_one_sided_cells() -> None:
    result = change_between_periods(OBSERVATIONS, "2020", "2024", polarity=POLARITY,
                                    targets=TARGETS)
    b_total = row(result, "B", "school_attendance", "all")
    assert b_total["change"] == pytest.approx(0.70)
    assert np.isnan(b_total["relative_change"])  # undefined from 0, not infinite
    assert b_total["progress"] == pytest.approx(0.70 / 0.90)
    c_total = row(result, "C", "poverty_rate", "all")  # no baseline
    assert np.isnan(c_total["baseline"]) and np.isnan(c_total["change"])
    assert pd.isna(c_total["improved"]) and np.isnan(c_total["progress"])


def test_without_polarity_or_targets() -> None:
    result = change_between_periods(OBSERVATIONS, "2020", "2024")
    assert result["improved"].isna().all()
    assert result["progress"].isna().all()
    assert row(result, "A", "poverty_rate", "sex=female")["gap_narrowed"]


def test_relative_change_edge_cases() -> None:
    np.testing.assert_allclose(
        relative_change(np.array([2.0, -4.0, 0.0, 0.0, np.nan]),
                        np.array([1.0, 1.0, 0.0, 3.0, 1.0])),
        [0.5, 0.25, 0.0, np.nan, np.nan],
    )


@pytest.mark.parametrize(
    ("baseline", "current", "target", "sign", "expected"),
    [
        (0.5, 0.34, 0.2, 1, 0.16 / 0.3),   # poverty falling towards its target
        (0.5, 0.10, 0.2, 1, 1.0),          # overshoot counts as reached, clipped to 1
        (0.5, 0.50, 0.2, 1, 0.0),          # no movement
        (0.5, 0.65, 0.2, 1, -0.5),         # moved half the planned distance backwards
        (0.5, 0.95, 0.2, 1, -1.0),         # moved far backwards, clipped to -1
        (0.6, 0.75, 0.9, -1, 0.5),         # attendance rising towards its target
        (0.9, 0.92, 0.9, -1, 1.0),         # hold the line (target = baseline), held
        (0.9, 0.85, 0.9, -1, -1.0),        # hold the line, slipped
        (0.9, 0.85, 0.9, None, np.nan),    # ... and polarity unknown: undefined
        (0.9, 0.90, 0.9, None, 1.0),
        (np.nan, 0.5, 0.2, 1, np.nan),
        (0.5, np.nan, 0.2, 1, np.nan),
        (0.5, 0.3, np.nan, 1, np.nan),
    ],
)
def test_progress_to_target(
    baseline: float, current: float, target: float, sign: int | None, expected: float
) -> None:
    result = progress_to_target(
        np.array([baseline]), np.array([current]), np.array([target]),
        None if sign is None else np.array([sign]),
    )
    np.testing.assert_allclose(result, [expected])
