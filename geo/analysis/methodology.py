"""Methodology documents: which components feed which dimension and pillar, and how.

A methodology is a YAML/JSON document (stored and versioned by the database layer). This
module only parses and validates it; `geo.analysis.scoring` applies it.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

import pydantic
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    field_validator,
    model_validator,
)

from geo.analysis.alkire_foster import Deprivation
from geo.analysis.uncertainty import Uncertainty
from geo.errors import ValidationError

PILLARS: tuple[str, ...] = ("hazard_exposure", "vulnerability", "lack_of_coping_capacity")
# Same list as geo.models.DIMENSIONS (checked by a test); repeated here so that the pure
# analysis layer does not import the database models.
HUMAN_SECURITY_DIMENSIONS: tuple[str, ...] = (
    "economic", "food", "health", "environmental", "personal", "community", "political",
    "education", "infrastructure",
)

Pillar = Literal["hazard_exposure", "vulnerability", "lack_of_coping_capacity"]
HumanSecurityDimension = Literal[
    "economic", "food", "health", "environmental", "personal", "community", "political",
    "education", "infrastructure",
]
Polarity = Literal["higher_is_worse", "higher_is_better"]

DEFAULT_METHODOLOGY_FILE = "default_methodology.yaml"


class _Strict(BaseModel):
    # Unknown keys are typos more often than extensions: refuse them so that a misspelt
    # `wieght` does not silently fall back to the default.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Component(_Strict):
    """One normalised input: a raw column, its transform, caps, polarity and weight."""

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="raw input column, e.g. hazard.flood.x")
    dimension: str = Field(min_length=1)
    transform: Literal["none", "log"] = "none"
    cap_percentiles: tuple[float, float] | None = None
    bounds: tuple[float, float] | None = None
    polarity: Polarity = "higher_is_worse"
    weight: PositiveFloat = 1.0
    description: str = ""

    @field_validator("cap_percentiles")
    @classmethod
    def _check_caps(cls, caps: tuple[float, float] | None) -> tuple[float, float] | None:
        if caps is not None and not 0 <= caps[0] < caps[1] <= 100:
            raise ValueError(f"must be [lo, hi] with 0 <= lo < hi <= 100, got {list(caps)}")
        return caps

    @field_validator("bounds")
    @classmethod
    def _check_bounds(cls, bounds: tuple[float, float] | None) -> tuple[float, float] | None:
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"must be [lo, hi] with lo < hi, got {list(bounds)}")
        return bounds


class Dimension(_Strict):
    """A group of components inside one pillar, labelled with a human-security dimension."""

    id: str = Field(min_length=1)
    pillar: Pillar
    human_security: HumanSecurityDimension
    weight: PositiveFloat = 1.0
    label: str = ""


class PillarWeights(_Strict):
    """Weights of the three INFORM pillars in the composite."""

    hazard_exposure: PositiveFloat = 1.0
    vulnerability: PositiveFloat = 1.0
    lack_of_coping_capacity: PositiveFloat = 1.0

    def as_tuple(self) -> tuple[float, float, float]:
        """Return the weights in `PILLARS` order."""
        return (self.hazard_exposure, self.vulnerability, self.lack_of_coping_capacity)


class Aggregation(_Strict):
    """How components combine into dimensions and pillars, and pillars into the composite."""

    within: Literal["arithmetic"] = "arithmetic"
    across: Literal["geometric", "arithmetic"] = "geometric"
    # Added to every pillar before the geometric mean and subtracted after; 0 is textbook
    # INFORM (a pillar at 0 makes the composite 0).
    geometric_offset: float = Field(default=0.0, ge=0.0)


class MissingData(_Strict):
    """What happens when inputs are missing."""

    components: Literal["skip_and_reweight"] = "skip_and_reweight"
    min_completeness: float = Field(default=0.5, ge=0.0, le=1.0)
    missing_pillar: Literal["null_composite", "skip_and_reweight"] = "null_composite"


class Methodology(_Strict):
    """A validated methodology document."""

    name: str = Field(default="riskatlas-default", min_length=1)
    version: int = Field(default=1, ge=1)
    description: str = ""
    components: list[Component] = Field(min_length=1)
    dimensions: list[Dimension] = Field(min_length=1)
    pillars: PillarWeights = PillarWeights()
    aggregation: Aggregation = Aggregation()
    missing_data: MissingData = MissingData()
    stress_threshold: float = Field(default=6.5, ge=0.0, le=10.0)
    k: int = Field(default=3, ge=1)
    # Subgroups and monitoring (survey intervals) and deprivation per person (Alkire-Foster).
    uncertainty: Uncertainty = Uncertainty()
    deprivation: Deprivation = Deprivation()

    @model_validator(mode="after")
    def _cross_check(self) -> Methodology:
        problems = _cross_problems(self)
        if problems:
            raise _CrossCheckError(problems)
        return self

    def dimension_ids(self) -> list[str]:
        """Return dimension ids in document order."""
        return [dimension.id for dimension in self.dimensions]

    def component_ids(self) -> list[str]:
        """Return component ids in document order."""
        return [component.id for component in self.components]


class _CrossCheckError(ValueError):
    """Carries every cross-reference problem with its field path."""

    def __init__(self, problems: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        self.problems = problems


def _duplicates(kind: str, ids: list[str]) -> list[dict[str, str]]:
    seen: set[str] = set()
    problems = []
    for position, identifier in enumerate(ids):
        if identifier in seen:
            problems.append(
                {"field": f"{kind}[{position}].id", "message": f"duplicate id '{identifier}'"}
            )
        seen.add(identifier)
    return problems


def _cross_problems(methodology: Methodology) -> list[dict[str, str]]:
    """Return problems that span several parts of the document (references, emptiness)."""
    dimension_ids = methodology.dimension_ids()
    problems = _duplicates("dimensions", dimension_ids)
    problems += _duplicates("components", methodology.component_ids())
    for position, component in enumerate(methodology.components):
        if component.dimension not in dimension_ids:
            problems.append({
                "field": f"components[{position}].dimension",
                "message": f"unknown dimension '{component.dimension}' "
                f"(known: {', '.join(dimension_ids)})",
            })
    used_dimensions = {component.dimension for component in methodology.components}
    for position, dimension in enumerate(methodology.dimensions):
        if dimension.id not in used_dimensions:
            problems.append({
                "field": f"dimensions[{position}]",
                "message": f"dimension '{dimension.id}' has no components",
            })
    # The composite is a (geometric) mean of all three pillars: an empty pillar would make
    # every composite null, so refuse the document instead.
    used_pillars = {dimension.pillar for dimension in methodology.dimensions}
    for pillar in PILLARS:
        if pillar not in used_pillars:
            problems.append({"field": "dimensions", "message": f"pillar '{pillar}' is empty"})
    return problems


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def _problems_from(error: pydantic.ValidationError) -> list[dict[str, str]]:
    problems: list[dict[str, str]] = []
    for item in error.errors():
        cause = item.get("ctx", {}).get("error")
        if isinstance(cause, _CrossCheckError):
            problems.extend(cause.problems)
            continue
        message = item["msg"].removeprefix("Value error, ")
        problems.append({"field": _field_path(tuple(item["loc"])), "message": message})
    return problems


def parse_methodology(document: dict[str, Any]) -> Methodology:
    """Return the validated methodology, or raise ValidationError naming each bad field."""
    if not isinstance(document, dict):
        raise ValidationError(
            f"methodology must be a mapping, got {type(document).__name__}",
            {"problems": [{"field": "(document)", "message": "expected a mapping"}]},
        )
    try:
        return Methodology.model_validate(document)
    except pydantic.ValidationError as error:
        problems = _problems_from(error)
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise ValidationError(f"invalid methodology: {summary}", {"problems": problems}) from None


def load_default_methodology() -> Methodology:
    """Return the methodology shipped with riskatlas (default_methodology.yaml)."""
    text = resources.files(__package__).joinpath(DEFAULT_METHODOLOGY_FILE).read_text("utf-8")
    return parse_methodology(yaml.safe_load(text))
