"""Who is furthest behind: gaps worked out by hand on a two-village example."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geo.analysis.disaggregation import canonical_subgroup, furthest_behind
from geo.errors import ValidationError

POLARITY = {"poverty_rate": "higher_is_worse", "school_attendance": "higher_is_better"}
POPULATIONS = pd.Series({"A": 1000, "B": 3000})
COLUMNS = ["locality", "indicator", "period", "subgroup", "value", "sample_size"]
OBSERVATIONS = pd.DataFrame(
    [
        ("A", "poverty_rate", "2023", "all", 0.30, 500),
        ("A", "poverty_rate", "2023", "sex=female", 0.36, 250),
        ("A", "poverty_rate", "2023", "Sex=Female ; Disability=yes", 0.50, 40),
        ("A", "poverty_rate", "2023", "sex=male", 0.24, 250),
        ("A", "poverty_rate", "2023", "disability=yes", 0.45, 8),
        ("B", "poverty_rate", "2023", "all", 0.10, 800),
        ("B", "poverty_rate", "2023", "sex=female", 0.12, 400),
        ("B", "poverty_rate", "2021", "all", 0.20, 800),
        ("A", "school_attendance", "2023", "all", 0.80, 300),
        ("A", "school_attendance", "2023", "sex=female", 0.70, 150),
        ("B", "school_attendance", "2023", "all", 0.95, 300),
    ],
    columns=COLUMNS,
)


def cell(result: pd.DataFrame, locality: str, indicator: str, subgroup: str) -> pd.Series:
    match = result[(result["locality"] == locality) & (result["indicator"] == indicator)
                   & (result["subgroup"] == subgroup)]
    assert len(match) == 1
    return match.iloc[0]


def test_canonical_subgroups() -> None:
    assert canonical_subgroup("ALL") == "all"
    assert canonical_subgroup("") == "all"
    assert canonical_subgroup("Sex=Female ; Disability=yes") == "disability=yes;sex=female"
    assert canonical_subgroup("age=15-24") == "age=15-24"
    for bad in ("sex", "sex=", "=female", "sex=female;;"):
        with pytest.raises(ValidationError, match="subgroup"):
            canonical_subgroup(bad)


def test_gaps_worked_by_hand() -> None:
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY, populations=POPULATIONS)
    # National poverty (2023, population-weighted): (0.30*1000 + 0.10*3000) / 4000 = 0.15
    # National attendance: (0.80*1000 + 0.95*3000) / 4000 = 0.9125
    expected = {  # (locality, indicator, subgroup): (gap_locality, gap_national)
        ("A", "poverty_rate", "all"): (0.0, 0.15),
        ("A", "poverty_rate", "sex=female"): (0.06, 0.21),
        ("A", "poverty_rate", "disability=yes;sex=female"): (0.20, 0.35),
        ("A", "poverty_rate", "sex=male"): (-0.06, 0.09),
        ("A", "poverty_rate", "disability=yes"): (0.15, 0.30),
        ("B", "poverty_rate", "all"): (0.0, -0.05),
        ("B", "poverty_rate", "sex=female"): (0.02, -0.03),
        # higher is better: gaps flip sign so that positive still means behind
        ("A", "school_attendance", "all"): (0.0, 0.1125),
        ("A", "school_attendance", "sex=female"): (0.10, 0.2125),
        ("B", "school_attendance", "all"): (0.0, -0.0375),
    }
    assert len(result) == len(expected)  # the 2021 row is not the latest period
    for (locality, indicator, subgroup), (gap_locality, gap_national) in expected.items():
        row = cell(result, locality, indicator, subgroup)
        assert row["gap_locality"] == pytest.approx(gap_locality, abs=1e-12)
        assert row["gap_national"] == pytest.approx(gap_national, abs=1e-12)


def test_ranks_and_withheld_cells() -> None:
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY, populations=POPULATIONS)
    poverty = result[result["indicator"] == "poverty_rate"]
    # The intersection (female & disabled) is furthest behind; disability=yes rests on 8
    # people (< k_min 10): kept, marked withheld, not ranked. Village B is better off than
    # the nation (negative gaps): not behind, so not ranked at all.
    assert poverty["subgroup"].tolist()[:3] == ["disability=yes;sex=female", "sex=female", "all"]
    assert poverty["rank"].tolist() == [1, 2, 3, 4, pd.NA, pd.NA, pd.NA]
    withheld = cell(result, "A", "poverty_rate", "disability=yes")
    assert bool(withheld["withheld"]) and pd.isna(withheld["rank"])
    assert withheld["value"] == 0.45
    intersection = cell(result, "A", "poverty_rate", "disability=yes;sex=female")
    assert bool(intersection["intersection"]) and intersection["attributes"] == 2
    assert intersection["rank_in_locality"] == 1
    assert pd.isna(cell(result, "A", "poverty_rate", "all")["rank_in_locality"])


def test_national_value_without_populations_is_the_plain_mean() -> None:
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY)
    # (0.30 + 0.10) / 2 = 0.20
    assert cell(result, "A", "poverty_rate", "sex=female")["national_value"] == pytest.approx(0.2)


def test_national_override_and_chosen_period() -> None:
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY, national={"poverty_rate": 0.25},
                             period="2021")
    assert len(result) == 1
    row = result.iloc[0]
    assert row["national_value"] == 0.25 and row["gap_national"] == pytest.approx(-0.05)


def test_unknown_sample_size_withholds_subgroups_but_not_totals() -> None:
    observations = OBSERVATIONS.drop(columns="sample_size")
    result = furthest_behind(observations, polarity=POLARITY)
    assert result.loc[result["subgroup"] == "all", "withheld"].eq(False).all()
    assert result.loc[result["subgroup"] != "all", "withheld"].all()


def test_k_min_is_configurable() -> None:
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY, k_min=5)
    assert not result["withheld"].any()
    result = furthest_behind(OBSERVATIONS, polarity=POLARITY, k_min=300)
    assert cell(result, "A", "poverty_rate", "sex=female")["withheld"]


def test_missing_locality_total_gives_nan_gap_not_an_error() -> None:
    observations = OBSERVATIONS[~((OBSERVATIONS["locality"] == "B")
                                  & (OBSERVATIONS["subgroup"] == "all"))]
    result = furthest_behind(observations, polarity=POLARITY)
    row = cell(result, "B", "poverty_rate", "sex=female")
    assert np.isnan(row["gap_locality"]) and not np.isnan(row["gap_national"])


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValidationError, match="school_attendance"):
        furthest_behind(OBSERVATIONS, polarity={"poverty_rate": "higher_is_worse"})
    with pytest.raises(ValidationError, match="subgroup"):
        furthest_behind(OBSERVATIONS.drop(columns="subgroup"), polarity=POLARITY)
    duplicated = pd.concat([OBSERVATIONS, OBSERVATIONS.iloc[:1]])
    with pytest.raises(ValidationError, match="repeat"):
        furthest_behind(duplicated, polarity=POLARITY)
