"""Methodology documents: the shipped default, and bad documents naming the bad field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from geo.analysis import methodology as methodology_module
from geo.analysis.methodology import (
    HUMAN_SECURITY_DIMENSIONS,
    PILLARS,
    load_default_methodology,
    parse_methodology,
)
from geo.errors import ValidationError


def small_document() -> dict[str, Any]:
    return {
        "name": "test",
        "components": [
            {"id": "flood", "source": "hazard.flood.people_exposed_share",
             "dimension": "hazards"},
            {"id": "poverty", "source": "indicator.poverty_rate", "dimension": "economic"},
            {"id": "water", "source": "indicator.safe_water_access",
             "dimension": "infrastructure", "polarity": "higher_is_better"},
            {"id": "health", "source": "access.health.distance_km",
             "dimension": "health", "transform": "log", "cap_percentiles": [2, 98]},
        ],
        "dimensions": [
            {"id": "hazards", "pillar": "hazard_exposure", "human_security": "environmental"},
            {"id": "economic", "pillar": "vulnerability", "human_security": "economic"},
            {"id": "infrastructure", "pillar": "lack_of_coping_capacity",
             "human_security": "infrastructure"},
            {"id": "health", "pillar": "lack_of_coping_capacity", "human_security": "health"},
        ],
    }


def test_small_document_parses_with_documented_defaults() -> None:
    parsed = parse_methodology(small_document())
    assert parsed.stress_threshold == 6.5
    assert parsed.k == 3
    assert parsed.aggregation.across == "geometric"
    assert parsed.aggregation.within == "arithmetic"
    assert parsed.missing_data.components == "skip_and_reweight"
    assert parsed.pillars.as_tuple() == (1.0, 1.0, 1.0)
    assert parsed.components[3].cap_percentiles == (2.0, 98.0)


def test_default_methodology_loads_and_covers_every_pillar() -> None:
    default = load_default_methodology()
    assert {dimension.pillar for dimension in default.dimensions} == set(PILLARS)
    assert default.k >= 1 and 0 <= default.stress_threshold <= 10


def test_default_methodology_uses_the_agreed_sources() -> None:
    sources = {component.source for component in load_default_methodology().components}
    expected = {
        "hazard.flood.people_exposed_share", "hazard.landslide.people_exposed_share",
        "hazard.drought.people_exposed_share", "conflict.events_per_100k",
        "conflict.fatalities_per_100k", "conflict.events_per_100k_change",
        "access.health.distance_km", "access.health.sfca",
        "access.health.coverage_share", "access.school.distance_km",
        "access.institutions.exposed_share", "indicator.poverty_rate",
        "indicator.food_insecurity", "indicator.stunting", "indicator.school_attendance",
        "indicator.unemployment", "indicator.safe_water_access",
    }
    assert expected <= sources


def test_default_methodology_polarity_of_better_indicators() -> None:
    by_source = {c.source: c for c in load_default_methodology().components}
    for source in ("indicator.school_attendance", "indicator.safe_water_access",
                   "access.health.coverage_share", "access.health.sfca"):
        assert by_source[source].polarity == "higher_is_better"
    assert by_source["indicator.poverty_rate"].polarity == "higher_is_worse"


def test_human_security_dimensions_match_the_database_model() -> None:
    models = pytest.importorskip("geo.models")
    assert HUMAN_SECURITY_DIMENSIONS == models.DIMENSIONS


def test_default_file_is_commented() -> None:
    text = (
        methodology_module.resources.files("geo.analysis")
        .joinpath("default_methodology.yaml").read_text("utf-8")
    )
    comment_lines = [line for line in text.splitlines() if line.strip().startswith("#")]
    assert len(comment_lines) >= 40
    assert yaml.safe_load(text)["name"] == "riskatlas-default"


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(document: dict[str, Any]) -> None:
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return mutate


def _drop_vulnerability(document: dict[str, Any]) -> None:
    document["dimensions"] = [d for d in document["dimensions"] if d["id"] != "economic"]
    document["components"] = [c for c in document["components"] if c["id"] != "poverty"]


def _duplicate_component(document: dict[str, Any]) -> None:
    document["components"][2]["id"] = "flood"


def _orphan_dimension(document: dict[str, Any]) -> None:
    document["dimensions"].append(
        {"id": "food", "pillar": "vulnerability", "human_security": "food"}
    )


@pytest.mark.parametrize(
    ("mutate", "field", "fragment"),
    [
        (_set(["components", 3, "dimension"], "helth"), "components[3].dimension", "'helth'"),
        (_set(["components", 0, "weight"], -1), "components[0].weight", "greater than 0"),
        (_set(["components", 0, "weight"], 0), "components[0].weight", "greater than 0"),
        (_set(["components", 1, "wieght"], 2), "components[1].wieght", "Extra"),
        (_set(["components", 0, "polarity"], "higher_is_bad"), "components[0].polarity", ""),
        (_set(["components", 0, "transform"], "sqrt"), "components[0].transform", ""),
        (_set(["components", 3, "cap_percentiles"], [98, 2]),
         "components[3].cap_percentiles", "lo < hi"),
        (_set(["components", 3, "cap_percentiles"], [2, 120]),
         "components[3].cap_percentiles", ""),
        (_set(["dimensions", 1, "pillar"], "exposure"), "dimensions[1].pillar", ""),
        (_set(["dimensions", 0, "human_security"], "helth"), "dimensions[0].human_security", ""),
        (_set(["dimensions", 2, "weight"], -0.5), "dimensions[2].weight", ""),
        (_set(["pillars"], {"vulnerabilty": 1}), "pillars.vulnerabilty", "Extra"),
        (_set(["pillars"], {"vulnerability": 0}), "pillars.vulnerability", ""),
        (_set(["stress_threshold"], 11), "stress_threshold", "10"),
        (_set(["k"], 0), "k", ""),
        (_set(["missing_data"], {"min_completeness": 1.5}), "missing_data.min_completeness", ""),
        (_set(["aggregation"], {"across": "harmonic"}), "aggregation.across", ""),
        (_set(["components"], []), "components", ""),
        (_duplicate_component, "components[2].id", "duplicate id 'flood'"),
        (_drop_vulnerability, "dimensions", "pillar 'vulnerability' is empty"),
        (_orphan_dimension, "dimensions[4]", "no components"),
    ],
)
def test_bad_document_names_the_field(
    mutate: Callable[[dict[str, Any]], None], field: str, fragment: str
) -> None:
    document = copy.deepcopy(small_document())
    mutate(document)
    with pytest.raises(ValidationError) as caught:
        parse_methodology(document)
    problems = caught.value.details["problems"]
    assert field in [problem["field"] for problem in problems], problems
    assert f"{field}:" in caught.value.message
    assert fragment in caught.value.message


def test_every_cross_reference_problem_is_reported_at_once() -> None:
    document = small_document()
    document["components"][0]["dimension"] = "hazzards"
    document["components"][1]["dimension"] = "econ"
    with pytest.raises(ValidationError) as caught:
        parse_methodology(document)
    fields = {problem["field"] for problem in caught.value.details["problems"]}
    assert {"components[0].dimension", "components[1].dimension"} <= fields


@pytest.mark.parametrize("document", [[], "components: []", None])
def test_document_must_be_a_mapping(document: Any) -> None:
    with pytest.raises(ValidationError, match="mapping"):
        parse_methodology(document)


# --- goalposts and sources: bad documents name the field (issue 9) ------------------------


@pytest.mark.parametrize(("mutate", "field", "words"), [
    (_set(["components", 0, "goalposts"], [1, 0]), "components[0].goalposts", "lower < upper"),
    (_set(["components", 0, "scale"], "fixed"), "components[0].goalposts", "required"),
    (_set(["components", 1, "source"], "indicatr.poverty_rate"), "components[1].source",
     "no step"),
    (_set(["components", 0, "source"], "hazard.flod.people_exposed_share"),
     "components[0].source", "unknown hazard kind"),
    (_set(["components", 3, "source"], "access.hospital.distance_km"),
     "components[3].source", "no access family"),
    (_set(["access"], {"families": {"markets": {"catchment_km": 2}}}),
     "access.families.markets", "unknown family"),
    (_set(["hotspots"], {"weights": "distance_band"}), "hotspots.distance_km", "required"),
])
def test_bad_goalposts_and_sources_name_the_field(
        mutate: Callable[[dict[str, Any]], None], field: str, words: str) -> None:
    document = copy.deepcopy(small_document())
    mutate(document)
    with pytest.raises(ValidationError) as caught:
        parse_methodology(document)
    problems = caught.value.details["problems"]
    assert any(p["field"] == field and words in p["message"] for p in problems), problems


def test_default_methodology_has_fixed_goalposts_with_natural_bounds() -> None:
    default = load_default_methodology()
    by_id = {c.id: c for c in default.components}
    for cid in ("flood_exposure", "health_coverage", "institutions_exposed"):
        assert by_id[cid].scale == "fixed" and by_id[cid].goalposts == (0.0, 1.0)
    assert by_id["poverty"].goalposts == (0.0, 100.0)
    assert by_id["conflict_events_rate"].transform == "log"
    # every component has fixed goalposts, so default runs compare over time
    assert default.relative_components() == []
    assert default.missing_data.missing_pillar == "skip_and_reweight"
    assert default.access.decay == "gaussian"


def test_documents_without_scale_keep_their_meaning() -> None:
    document = small_document()
    document["components"][0]["bounds"] = [0, 1]
    parsed = parse_methodology(document)
    assert parsed.components[0].scale == "fixed" and parsed.components[0].goalposts == (0, 1)
    assert parsed.components[1].scale == "relative"
