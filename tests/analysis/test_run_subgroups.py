"""The subgroup step of a run on hand-made inputs: surveys with different questionnaires are
measured each on its own weights, and people missing an answer are left out, never counted
as not deprived."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest

from geo.runs.inputs import RunInputs
from geo.runs.subgroups import add_subgroups_and_trends
from geo.settings import Settings

INDICATORS = pd.DataFrame([
    ("income", "economic", "higher_is_better", 13.0, "currency"),
    ("school", "education", "higher_is_better", 12.0, "years"),
    ("water", "infrastructure", "higher_is_better", None, "percent"),
    ("food", "food", "higher_is_worse", None, "percent"),
], columns=["code", "dimension", "polarity", "cutoff", "unit"]).set_index("code", drop=False)
INDICATORS["target"] = None
INDICATORS["design_effect"] = None


def person(code: str, pid: int, values: dict) -> dict:
    return {"locality": code, "period": "2024", "household_id": f"h{pid}",
            "person_id": str(pid), "weight": 1.0, "attributes": {}, "indicator_values": values}


def inputs(households: list[dict]) -> RunInputs:
    localities = gpd.GeoDataFrame({"code": ["P", "A", "B"], "level": [1, 2, 2],
                                   "parent_code": [None, "P", "P"],
                                   "population": [300.0, 100.0, 200.0]},
                                  geometry=[None, None, None]).set_index("code", drop=False)
    empty = pd.DataFrame(columns=["locality", "indicator", "period", "subgroup", "value",
                                  "sample_size"])
    return RunInputs(localities=localities, hazards=[], population=None,
                     events=gpd.GeoDataFrame(), institutions=gpd.GeoDataFrame(),
                     observations=empty, indicators=INDICATORS,
                     households=pd.DataFrame(households))


def test_two_questionnaires_are_measured_each_on_its_own() -> None:
    # village A asked income and schooling (the first two people of Alkire-Foster 2011);
    # village B asked water and food
    people = [person("A", 1, {"income": 13.1, "school": 14}),
              person("A", 2, {"income": 12.5, "school": 10}),
              person("B", 3, {"water": 0, "food": 1}), person("B", 4, {"water": 1, "food": 0}),
              person("B", 5, {"water": 1, "food": None})]
    details: dict = {"P": {}, "A": {}, "B": {}}
    add_subgroups_and_trends(inputs(people), details, Settings())
    a, b = details["A"]["multidimensional"], details["B"]["multidimensional"]
    assert a["method"] == b["method"] == "alkire_foster"
    assert a["weights"] == {"income": 0.5, "school": 0.5}
    assert a["all"]["H"] == pytest.approx(0.5) and a["all"]["M0"] == pytest.approx(0.5)
    assert b["weights"] == {"food": 0.5, "water": 0.5}
    # person 5 has no food answer: left out (2 people measured, 1 excluded), not "not deprived"
    assert b["all"]["sample_size"] == 2 and b["people_excluded_incomplete"] == 1
    assert b["all"]["H"] == pytest.approx(0.5) and b["all"]["A"] == pytest.approx(1.0)
