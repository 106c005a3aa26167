"""Normalisation, INFORM aggregation, compounded stress and quadrants on hand-made tables."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from geo.analysis.methodology import PILLARS, load_default_methodology, parse_methodology
from geo.analysis.scoring import (
    AggregationPlan,
    aggregate,
    need_vulnerability_quadrant,
    normalise_component,
    score_localities,
)
from geo.errors import ValidationError


@pytest.fixture(autouse=True)
def no_runtime_warnings() -> Iterator[None]:
    # Division by zero or log(0) would show up as RuntimeWarnings: none are allowed.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


def series(*values: float) -> pd.Series:
    return pd.Series(values, index=[f"L{i}" for i in range(len(values))], dtype=float)


# --- normalisation -----------------------------------------------------------------------


def test_min_max_to_zero_ten() -> None:
    # min 2, max 10, span 8: (x - 2) / 8 * 10
    result = normalise_component(series(2, 4, 6, 10, np.nan))
    np.testing.assert_allclose(result.to_numpy(), [0.0, 2.5, 5.0, 10.0, np.nan])
    assert list(result.index) == ["L0", "L1", "L2", "L3", "L4"]


def test_higher_is_better_is_flipped() -> None:
    result = normalise_component(series(2, 4, 6, 10, np.nan), polarity="higher_is_better")
    np.testing.assert_allclose(result.to_numpy(), [10.0, 7.5, 5.0, 0.0, np.nan])


def test_log_transform() -> None:
    # log1p(e - 1) = 1, log1p(e^2 - 1) = 2: log values 0, 1, 2 -> 0, 5, 10
    result = normalise_component(series(0.0, math.e - 1, math.e**2 - 1), transform="log")
    np.testing.assert_allclose(result.to_numpy(), [0.0, 5.0, 10.0])


def test_percentile_caps() -> None:
    # 25th percentile of 0..4 is 1, 75th is 3: clipped to 1,1,2,3,3 -> 0,0,5,10,10
    result = normalise_component(series(0, 1, 2, 3, 4), cap_percentiles=(25, 75))
    np.testing.assert_allclose(result.to_numpy(), [0.0, 0.0, 5.0, 10.0, 10.0])


def test_outlier_cap_protects_the_scale() -> None:
    values = series(*range(1, 100), 10_000)
    capped = normalise_component(values, cap_percentiles=(0, 98))
    uncapped = normalise_component(values)
    assert capped["L49"] > 4.0 and uncapped["L49"] < 0.1


def test_fixed_bounds() -> None:
    result = normalise_component(series(0.2, 0.5, 1.5), bounds=(0.0, 1.0))
    np.testing.assert_allclose(result.to_numpy(), [2.0, 5.0, 10.0])


@pytest.mark.parametrize("polarity", ["higher_is_worse", "higher_is_better"])
@pytest.mark.parametrize("transform", ["none", "log"])
def test_relative_scale_without_spread_is_missing_not_zero(polarity: str, transform: str) -> None:
    # Defect 2: all-equal values used to become 0 ("low need") for everybody.
    result = normalise_component(
        series(3, np.nan, 3, 3), polarity=polarity, transform=transform,
        cap_percentiles=(5, 95),
    )
    assert result.isna().all()


def test_single_value_and_all_missing() -> None:
    # Defect 2: a one-unit level was rescaled alone, min = max, and came out 0.0.
    assert normalise_component(series(7.0)).isna().all()
    # Fixed goalposts place a single value as well as many.
    assert normalise_component(series(7.0), bounds=(0.0, 10.0)).tolist() == [7.0]
    assert normalise_component(series(np.nan, np.nan)).isna().all()
    assert normalise_component(pd.Series([], dtype=float)).empty


def test_non_finite_counts_as_missing() -> None:
    result = normalise_component(series(0, np.inf, 10, -np.inf))
    np.testing.assert_array_equal(result.to_numpy(), [0.0, np.nan, 10.0, np.nan])


def test_negative_values_with_log_keep_their_order() -> None:
    result = normalise_component(series(-5, 0, 5), transform="log")
    np.testing.assert_allclose(result.to_numpy(), [0.0, 5.0, 10.0])


# --- the INFORM aggregation on a hand-computed table --------------------------------------


def inform_document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": "hand",
        "components": [
            {"id": "flood", "source": "hazard.flood.people_exposed_share",
             "dimension": "hazard"},
            {"id": "conflict", "source": "conflict.events_per_100k", "dimension": "violence"},
            {"id": "poverty", "source": "indicator.poverty_rate", "dimension": "econ",
             "weight": 2},
            {"id": "unemployment", "source": "indicator.unemployment", "dimension": "econ"},
            {"id": "water", "source": "indicator.safe_water_access", "dimension": "infra",
             "polarity": "higher_is_better"},
        ],
        "dimensions": [
            {"id": "hazard", "pillar": "hazard_exposure", "human_security": "environmental"},
            {"id": "violence", "pillar": "hazard_exposure", "human_security": "personal"},
            {"id": "econ", "pillar": "vulnerability", "human_security": "economic"},
            {"id": "infra", "pillar": "lack_of_coping_capacity",
             "human_security": "infrastructure"},
        ],
        "aggregation": {"across": "geometric", "geometric_offset": 0.0},
        "missing_data": {"min_completeness": 0.5, "missing_pillar": "null_composite"},
        "stress_threshold": 6.5,
        "k": 2,
    }
    document.update(overrides)
    return document


RAW = pd.DataFrame(
    {
        "hazard.flood.people_exposed_share": [0.1, 0.5, 0.9, 0.3],
        "conflict.events_per_100k": [20, 10, 30, 50],
        "indicator.poverty_rate": [0.3, 0.5, 0.7, np.nan],
        "indicator.unemployment": [8, 4, 12, 10],
        "indicator.safe_water_access": [0.9, 0.6, 0.3, 0.5],
        "unused.column": [1, 2, 3, 4],
    },
    index=pd.Index(["A", "B", "C", "D"], name="code"),
)
PARENT = pd.Series({"A": "P1", "B": "P1", "C": "P2", "D": "P2"})

# Worked by hand:
# flood 0.1..0.9 (span 0.8):      A 0,    B 5,   C 10,  D 2.5
# conflict 10..50 (span 40):      A 2.5,  B 0,   C 5,   D 10
# poverty 0.3..0.7 (span 0.4):    A 0,    B 5,   C 10,  D -
# unemployment 4..12 (span 8):    A 5,    B 0,   C 10,  D 7.5
# water 0.3..0.9, flipped:        A 0,    B 5,   C 10,  D 6.6667
# econ = (2 poverty + unemployment) / 3; D has only unemployment = 1/3 of the weight,
# below min_completeness 0.5, so D's econ (and vulnerability pillar) is empty.
EXPECTED_DIMENSIONS = {
    "hazard": [0.0, 5.0, 10.0, 2.5],
    "violence": [2.5, 0.0, 5.0, 10.0],
    "econ": [5 / 3, 10 / 3, 10.0, np.nan],
    "infra": [0.0, 5.0, 10.0, 20 / 3],
}
# hazard & exposure = mean(hazard, violence): A 1.25, B 2.5, C 7.5, D 6.25
EXPECTED_PILLARS = {
    "hazard_exposure": [1.25, 2.5, 7.5, 6.25],
    "vulnerability": [5 / 3, 10 / 3, 10.0, np.nan],
    "lack_of_coping_capacity": [0.0, 5.0, 10.0, 20 / 3],
}
# composite = cube root of the product (textbook INFORM):
# A: 1.25 * 1.6667 * 0 = 0 -> 0;  B: 2.5 * 3.3333 * 5 = 41.667 -> 3.46681
# C: 7.5 * 10 * 10 = 750 -> 9.08560;  D: vulnerability missing -> empty
EXPECTED_COMPOSITE = [0.0, 3.46681, 9.08560, np.nan]


def test_hand_computed_inform_aggregation() -> None:
    table = score_localities(RAW, parse_methodology(inform_document()), parent=PARENT)
    for dimension, expected in EXPECTED_DIMENSIONS.items():
        np.testing.assert_allclose(table.dimensions[dimension].to_numpy(), expected, atol=1e-9)
    for pillar, expected in EXPECTED_PILLARS.items():
        np.testing.assert_allclose(table.pillars[pillar].to_numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(table.summary["composite"].to_numpy(), EXPECTED_COMPOSITE,
                               atol=1e-5)
    np.testing.assert_allclose(table.components["water"].to_numpy(), [0, 5, 10, 20 / 3])


def test_hand_computed_completeness_stress_and_ranks() -> None:
    table = score_localities(RAW, parse_methodology(inform_document()), parent=PARENT)
    summary = table.summary
    # Effective weights: flood 1/6, conflict 1/6, poverty 2/9, unemployment 1/9, water 1/3;
    # D lacks poverty: 1 - 2/9 = 7/9.
    np.testing.assert_allclose(summary["completeness"].to_numpy(), [1, 1, 1, 7 / 9])
    # Stressed (>= 6.5): A none, B none, C hazard+econ+infra, D violence+infra.
    assert summary["stressed_count"].tolist() == [0, 0, 3, 2]
    assert summary["compounded"].tolist() == [False, False, True, True]
    assert summary["rank"].tolist() == [3, 2, 1, pd.NA]
    assert summary["rank_in_parent"].tolist() == [2, 1, 1, pd.NA]
    assert table.missing_sources == ()


def test_geometric_offset() -> None:
    document = inform_document(aggregation={"across": "geometric", "geometric_offset": 1.0})
    table = score_localities(RAW, parse_methodology(document))
    # A: cbrt(2.25 * 2.6667 * 1) - 1 = cbrt(6) - 1 = 0.81712
    # B: cbrt(3.5 * 4.3333 * 6) - 1 = cbrt(91) - 1 = 3.49794
    # C: cbrt(8.5 * 11 * 11) - 1 = cbrt(1028.5) - 1 = 9.09411
    np.testing.assert_allclose(
        table.summary["composite"].to_numpy(), [0.81712, 3.49794, 9.09411, np.nan], atol=1e-5
    )


def test_missing_pillar_skip_and_reweight() -> None:
    document = inform_document(
        missing_data={"min_completeness": 0.5, "missing_pillar": "skip_and_reweight"}
    )
    table = score_localities(RAW, parse_methodology(document))
    # D: sqrt(6.25 * 6.6667) = sqrt(41.667) = 6.45497 (two of three pillars, 2/3 >= 0.5)
    assert table.summary.loc["D", "composite"] == pytest.approx(6.45497, abs=1e-5)
    assert table.summary.loc["D", "rank"] == 2


def test_arithmetic_across() -> None:
    document = inform_document(aggregation={"across": "arithmetic"})
    table = score_localities(RAW, parse_methodology(document))
    # A: (1.25 + 1.6667 + 0) / 3 = 0.97222; C: (7.5 + 10 + 10) / 3 = 9.16667
    assert table.summary.loc["A", "composite"] == pytest.approx(0.97222, abs=1e-5)
    assert table.summary.loc["C", "composite"] == pytest.approx(9.16667, abs=1e-5)


def test_pillar_weights_in_geometric_mean() -> None:
    document = inform_document(
        pillars={"hazard_exposure": 2, "vulnerability": 1, "lack_of_coping_capacity": 1}
    )
    table = score_localities(RAW, parse_methodology(document))
    # C: (7.5^2 * 10 * 10) ^ (1/4) = 5625 ^ 0.25 = 8.66025
    assert table.summary.loc["C", "composite"] == pytest.approx(8.66025, abs=1e-5)


def test_absent_source_is_missing_data_not_an_error() -> None:
    raw = RAW.drop(columns=["indicator.unemployment"])
    table = score_localities(raw, parse_methodology(inform_document()))
    assert table.missing_sources == ("indicator.unemployment",)
    # econ now rests on poverty alone (2/3 of its weight >= 0.5): A 0, B 5, C 10
    np.testing.assert_allclose(table.dimensions["econ"].to_numpy(), [0, 5, 10, np.nan])


def test_to_frame_is_flat() -> None:
    frame = score_localities(RAW, parse_methodology(inform_document())).to_frame()
    assert {"composite", "pillar.vulnerability", "dimension.econ", "component.water"} <= set(
        frame.columns
    )
    assert list(frame.index) == ["A", "B", "C", "D"]


def test_duplicate_codes_and_text_columns_are_refused() -> None:
    methodology = parse_methodology(inform_document())
    with pytest.raises(ValidationError, match="unique"):
        score_localities(pd.concat([RAW, RAW.iloc[:1]]), methodology)
    bad = RAW.assign(**{"indicator.poverty_rate": ["a", "b", "c", "d"]})
    with pytest.raises(ValidationError, match="indicator.poverty_rate"):
        score_localities(bad, methodology)


# --- NaN safety ----------------------------------------------------------------------------


def test_all_equal_relative_columns_are_missing_not_zero() -> None:
    # Defect 2: no spread used to give every locality 0 ("low need") at completeness 1.
    raw = pd.DataFrame({column: [5.0] * 4 for column in RAW.columns}, index=RAW.index)
    table = score_localities(raw, parse_methodology(inform_document()))
    assert table.components.isna().all().all()
    assert table.summary["composite"].isna().all()
    assert (table.summary["completeness"] == 0).all()
    assert table.reasons is not None
    assert table.reasons.iloc[0, 0].startswith("relative scale cannot be formed")


def test_locality_with_no_data_at_all() -> None:
    raw = RAW.copy()
    raw.loc["E"] = np.nan
    table = score_localities(raw, parse_methodology(inform_document()))
    row = table.summary.loc["E"]
    assert row["completeness"] == 0 and row["stressed_count"] == 0 and not row["compounded"]
    assert pd.isna(row["composite"]) and pd.isna(row["rank"])
    # The others are unchanged: missing rows do not move min or max.
    np.testing.assert_allclose(table.summary["composite"].iloc[:3], EXPECTED_COMPOSITE[:3],
                               atol=1e-5)


def test_default_methodology_end_to_end_without_nan() -> None:
    methodology = load_default_methodology()
    sources = sorted({component.source for component in methodology.components})
    rng = np.random.default_rng(7)
    raw = pd.DataFrame(rng.lognormal(size=(300, len(sources))), columns=sources)
    raw["hazard.drought.people_exposed_share"] = 0.0  # no drought anywhere: min = max
    table = score_localities(raw, methodology)
    frame = table.to_frame().drop(columns="rank_in_parent")
    assert not frame.isna().any().any()
    assert frame["composite"].between(0, 10).all()
    assert (table.components["drought_exposure"] == 0).all()


# --- compounded stress on a hand-made 3 x 3 grid ------------------------------------------


def test_compounded_stress_counts_on_a_hand_made_grid() -> None:
    dimensions = ["economic", "food", "health", "environmental", "personal"]
    pillar_of = {"economic": "vulnerability", "food": "vulnerability",
                 "health": "lack_of_coping_capacity", "environmental": "hazard_exposure",
                 "personal": "hazard_exposure"}
    document = {
        # bounds 0-10: each normalised value is the raw value itself, so the grid below
        # is the dimension scores.
        "components": [{"id": d, "source": f"indicator.{d}", "dimension": d,
                        "bounds": [0, 10]} for d in dimensions],
        "dimensions": [{"id": d, "pillar": pillar_of[d], "human_security": d}
                       for d in dimensions],
        "stress_threshold": 6.5, "k": 3,
    }
    grid = {  # economic, food, health, environmental, personal -> stressed count by hand
        "r0c0": ([9, 9, 9, 9, 9], 5),
        "r0c1": ([6.5, 6.5, 6.5, 1, 1], 3),        # exactly at the threshold counts
        "r0c2": ([6.49, 6.49, 6.49, 6.49, 10], 1),  # just below does not
        "r1c0": ([7, 7, np.nan, 0, 0], 2),        # missing is not stressed
        "r1c1": ([0, 0, 0, 0, 0], 0),
        "r1c2": ([10, 0, 10, 0, 10], 3),
        "r2c0": ([np.nan] * 5, 0),
        "r2c1": ([8, 2, 8, 2, 2], 2),
        "r2c2": ([6.6, 6.6, 6.6, 6.6, 6.4], 4),
    }
    raw = pd.DataFrame({code: values for code, (values, _) in grid.items()},
                       index=[f"indicator.{d}" for d in dimensions]).T
    table = score_localities(raw, parse_methodology(document))
    expected = pd.Series({code: count for code, (_, count) in grid.items()})
    assert table.summary["stressed_count"].to_dict() == expected.to_dict()
    assert table.summary["compounded"].to_dict() == (expected >= 3).to_dict()
    assert table.stressed().loc["r1c2"].tolist() == [True, False, True, False, True]


def test_stress_threshold_tolerates_floating_point_noise() -> None:
    document = {
        "components": [
            {"id": "d", "source": "indicator.d", "dimension": "d", "bounds": [0, 10]},
            {"id": "h", "source": "indicator.h", "dimension": "h", "bounds": [0, 10]},
            {"id": "l", "source": "indicator.l", "dimension": "l", "bounds": [0, 10]},
        ],
        "dimensions": [
            {"id": "d", "pillar": "vulnerability", "human_security": "economic"},
            {"id": "h", "pillar": "hazard_exposure", "human_security": "environmental"},
            {"id": "l", "pillar": "lack_of_coping_capacity", "human_security": "health"},
        ],
        "k": 1,
    }
    # A weighted mean such as (3 * 5.6 + 9.2) / 4 is 6.5 on paper but can come out as
    # 6.499999999999999; rounding noise must not decide a stress call, a real gap must.
    raw = pd.DataFrame({"indicator.d": [6.5 - 1e-12, 6.5 - 1e-6], "indicator.h": [0.0, 0.0],
                        "indicator.l": [0.0, 0.0]})
    table = score_localities(raw, parse_methodology(document))
    assert table.summary["stressed_count"].tolist() == [1, 0]


# --- the vectorised aggregation against a plain loop -------------------------------------


def reference_composite(row: np.ndarray, methodology: Any) -> float:
    """Plain-Python INFORM for one locality, straight from the definitions."""
    rules = methodology.missing_data
    dimension_scores: dict[str, float] = {}
    for dimension in methodology.dimensions:
        threshold = (rules.min_completeness if dimension.min_completeness is None
                     else dimension.min_completeness)
        parts = [(row[i], c.weight) for i, c in enumerate(methodology.components)
                 if c.dimension == dimension.id]
        known = [(v, w) for v, w in parts if not math.isnan(v)]
        total = sum(w for _, w in parts)
        if known and sum(w for _, w in known) / total >= threshold:
            dimension_scores[dimension.id] = (sum(v * w for v, w in known)
                                              / sum(w for _, w in known))
    pillar_threshold = (rules.min_completeness if rules.pillar_min_completeness is None
                        else rules.pillar_min_completeness)
    pillar_scores, pillar_weights = [], []
    for pillar, weight in zip(PILLARS, methodology.pillars.as_tuple(), strict=True):
        parts = [(dimension_scores.get(d.id, math.nan), d.weight)
                 for d in methodology.dimensions if d.pillar == pillar]
        known = [(v, w) for v, w in parts if not math.isnan(v)]
        if known and sum(w for _, w in known) / sum(w for _, w in parts) >= pillar_threshold:
            pillar_scores.append(sum(v * w for v, w in known) / sum(w for _, w in known))
            pillar_weights.append(weight)
    if rules.missing_pillar == "null_composite" and len(pillar_scores) < 3:
        return math.nan
    if len(pillar_scores) < (rules.min_pillars or 1):
        return math.nan
    offset = methodology.aggregation.geometric_offset
    product = 1.0
    for score, weight in zip(pillar_scores, pillar_weights, strict=True):
        product *= (score + offset) ** (weight / sum(pillar_weights))
    return product - offset


def test_vectorised_aggregation_matches_a_plain_loop() -> None:
    methodology = load_default_methodology()
    rng = np.random.default_rng(3)
    normalised = rng.uniform(0, 10, size=(200, len(methodology.components)))
    normalised[rng.random(normalised.shape) < 0.25] = np.nan
    normalised[:20, :] = np.nan  # localities with no data at all
    result = aggregate(normalised, AggregationPlan.from_methodology(methodology))
    expected = [reference_composite(row, methodology) for row in normalised]
    np.testing.assert_allclose(result.composite, expected, atol=1e-9)
    assert np.isnan(result.composite).sum() > 0  # the test covers the missing-data rule


# --- need vs vulnerability -----------------------------------------------------------------


def test_quadrants_hand_made() -> None:
    pillars = pd.DataFrame(
        {"hazard_exposure": [8, 2, 9, 1, np.nan],
         "vulnerability": [8, 9, 1, 2, 5],
         "lack_of_coping_capacity": [8, 2, 4, 1, 5]},
        index=["a", "b", "c", "d", "e"], dtype=float,
    )
    result = need_vulnerability_quadrant(pillars)
    # vulnerability to the next shock = sqrt(HE * LCC): a 8, b 2, c 6, d 1, e -
    np.testing.assert_allclose(result["vulnerability"].to_numpy(), [8, 2, 6, 1, np.nan])
    # need median of a-e = 5, vulnerability median of a-d = 4
    assert result["quadrant"].tolist() == [
        "high_need_high_vulnerability", "high_need_low_vulnerability",
        "low_need_high_vulnerability", "low_need_low_vulnerability", None,
    ]
    assert result["priority"].tolist() == [1, 2, 3, 4, pd.NA]


def test_quadrant_explicit_split_is_strict_and_flat_data_is_low() -> None:
    pillars = pd.DataFrame({p: [8.0, 9.0] for p in PILLARS}, index=["a", "b"])
    result = need_vulnerability_quadrant(pillars, need_split=8.0, vulnerability_split=8.0)
    assert result["quadrant"].tolist() == ["low_need_low_vulnerability",
                                           "high_need_high_vulnerability"]
    flat = pd.DataFrame({p: [3.0, 3.0, 3.0] for p in PILLARS})
    assert set(need_vulnerability_quadrant(flat)["quadrant"]) == {"low_need_low_vulnerability"}


# --- fixed goalposts, country scope, partial composites (issue 9) -------------------------


def goalpost_document(**missing: Any) -> dict[str, Any]:
    return {
        "name": "goalposts",
        "components": [
            {"id": "flood", "source": "hazard.flood.people_exposed_share",
             "dimension": "hazard", "scale": "fixed", "goalposts": [0, 1]},
            {"id": "deaths", "source": "conflict.fatalities_per_100k", "dimension": "violence",
             "scale": "fixed", "goalposts": [0, 100], "transform": "log"},
            {"id": "poverty", "source": "indicator.poverty_rate", "dimension": "econ",
             "scale": "fixed", "goalposts": [0, 100]},
            {"id": "distance", "source": "access.health.distance_km", "dimension": "health",
             "scale": "fixed", "goalposts": [0, 20], "transform": "log"},
            {"id": "water", "source": "indicator.safe_water_access", "dimension": "infra",
             "scale": "fixed", "goalposts": [0, 100], "polarity": "higher_is_better"},
        ],
        "dimensions": [
            {"id": "hazard", "pillar": "hazard_exposure", "human_security": "environmental"},
            {"id": "violence", "pillar": "hazard_exposure", "human_security": "personal"},
            {"id": "econ", "pillar": "vulnerability", "human_security": "economic"},
            {"id": "health", "pillar": "lack_of_coping_capacity", "human_security": "health"},
            {"id": "infra", "pillar": "lack_of_coping_capacity",
             "human_security": "infrastructure"},
        ],
        "aggregation": {"geometric_offset": 0.0},
        "missing_data": {"missing_pillar": "skip_and_reweight", "min_pillars": 1,
                         "pillar_min_completeness": 0.0, **missing},
    }


def test_inform_aggregation_by_hand_with_fixed_goalposts() -> None:
    raw = pd.DataFrame({
        "hazard.flood.people_exposed_share": [0.4], "conflict.fatalities_per_100k": [9.0],
        "indicator.poverty_rate": [35.0], "access.health.distance_km": [3.0],
        "indicator.safe_water_access": [70.0]}, index=["V"])
    table = score_localities(raw, parse_methodology(goalpost_document()))
    # By hand: flood 0.4 of [0, 1] -> 4.0; deaths ln(10) / ln(101) * 10 = 4.98905;
    # poverty 3.5; distance ln(4) / ln(21) * 10 = 4.55340; water 10 - 7.0 = 3.0.
    flood, deaths = 4.0, math.log(10) / math.log(101) * 10
    poverty, distance, water = 3.5, math.log(4) / math.log(21) * 10, 3.0
    hazard = (flood + deaths) / 2
    coping = (distance + water) / 2
    composite = (hazard * poverty * coping) ** (1 / 3)  # INFORM: geometric mean, offset 0
    assert table.components.loc["V"].tolist() == pytest.approx(
        [flood, deaths, poverty, distance, water])
    assert table.pillars.loc["V"].tolist() == pytest.approx([hazard, poverty, coping])
    assert table.summary.loc["V", "composite"] == pytest.approx(composite)
    # 4.49453 x 3.5 x 3.77670 = 59.4102, cube root 3.9020
    assert composite == pytest.approx(3.9020, abs=1e-4)


def test_fixed_goalposts_show_a_twenty_percent_improvement() -> None:
    # Defect 7: min-max per run made a 20 % improvement everywhere invisible.
    methodology = parse_methodology(goalpost_document())
    base = pd.DataFrame({"indicator.poverty_rate": [50.0, 30.0, 10.0],
                         "hazard.flood.people_exposed_share": [0.5, 0.3, 0.1]},
                        index=["A", "B", "C"])
    before = score_localities(base, methodology)
    after = score_localities(base * 0.8, methodology)
    assert (after.summary["composite"] < before.summary["composite"] - 0.1).all()
    relative = {**goalpost_document(), "components": [
        {"id": "flood", "source": "hazard.flood.people_exposed_share", "dimension": "hazard"},
        {"id": "poverty", "source": "indicator.poverty_rate", "dimension": "econ"},
        *goalpost_document()["components"][3:]]}
    relative["dimensions"] = [d for d in relative["dimensions"] if d["id"] != "violence"]
    rel = parse_methodology(relative)
    assert score_localities(base, rel).summary["composite"].tolist() == pytest.approx(
        score_localities(base * 0.8, rel).summary["composite"].tolist())


def test_relative_scale_is_per_country_and_parents_use_their_childrens() -> None:
    from geo.analysis.scoring import normalise_all

    document = goalpost_document()
    document["components"][2] = {"id": "poverty", "source": "indicator.poverty_rate",
                                 "dimension": "econ", "scale": "relative"}
    methodology = parse_methodology(document)
    raw = pd.DataFrame({"indicator.poverty_rate": [20.0, 40.0, 30.0, 70.0, 90.0, 80.0]},
                       index=["AA1", "AA2", "AA", "BB1", "BB2", "BB"])
    country = pd.Series(["AA", "AA", "AA", "BB", "BB", "BB"], index=raw.index)
    finest = pd.Series([True, True, False, True, True, False], index=raw.index)
    out = normalise_all(raw, methodology, scope=country, reference=finest).components
    # Country AA: villages 20 and 40 span 0-10; the parent (30, one unit at its level) is
    # placed on that scale at 5, not rescaled alone to 0. Country BB has its own scale, so
    # BB1 (70, the worst in the database's terms only if pooled) is 0 in BB.
    assert out["poverty"].tolist() == pytest.approx([0.0, 10.0, 5.0, 0.0, 10.0, 5.0])


def test_missing_pillar_gives_a_partial_composite_with_reasons() -> None:
    # Defect 5: no survey data at all used to leave every composite empty, silently.
    raw = pd.DataFrame({"hazard.flood.people_exposed_share": [0.2, 0.6],
                        "access.health.distance_km": [1.0, 8.0]}, index=["A", "B"])
    table = score_localities(raw, parse_methodology(goalpost_document()))
    assert table.summary["composite"].notna().all()
    assert table.summary["partial"].all()
    assert table.pillars["vulnerability"].isna().all()
    assert table.missing_sources == ("conflict.fatalities_per_100k",
                                     "indicator.poverty_rate", "indicator.safe_water_access")
    from geo.analysis.coverage import locality_coverage

    coverage = locality_coverage(table)[0]
    assert coverage["partial"] and coverage["missing_pillars"] == ["vulnerability"]
    assert "indicator.poverty_rate" in coverage["missing_dimensions"]["econ"][0]
    # B is worse on both pillars it has: it ranks first
    assert table.summary["rank"].tolist() == [2, 1]


def test_relative_scale_falls_back_to_the_deepest_level_with_data() -> None:
    from geo.analysis.scoring import normalise_all

    document = goalpost_document()
    document["components"][2] = {"id": "poverty", "source": "indicator.poverty_rate",
                                 "dimension": "econ", "scale": "relative"}
    # a survey at district level (D1, D2) over villages that have no observation
    raw = pd.DataFrame({"indicator.poverty_rate": [np.nan, np.nan, 20.0, 60.0]},
                       index=["V1", "V2", "D1", "D2"])
    finest = pd.Series([True, True, False, False], index=raw.index)
    levels = pd.Series([3, 3, 2, 2], index=raw.index)
    out = normalise_all(raw, parse_methodology(document), reference=finest, levels=levels)
    assert out.components["poverty"].tolist()[2:] == pytest.approx([0.0, 10.0])
