"""Methodology documents: which components feed which dimension and pillar, and how.

A methodology is a YAML/JSON document (stored and versioned by the database layer). This
module only parses and validates it; `geo.analysis.scoring` applies it.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Literal

import pydantic
import yaml
from pydantic import (
    AliasChoices,
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
from geo.ingest._vocabulary import INSTITUTION_FAMILIES

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
Scale = Literal["fixed", "relative"]

# The raw columns a score run produces (see geo.runs), so that a methodology naming a
# column nothing computes is refused when it is stored, not silently empty in every run.
# Hazard kinds are those an upload may declare (geo.ingest.options.HAZARD_KINDS).
HAZARD_KINDS: tuple[str, ...] = (
    "flood", "landslide", "drought", "heat", "cyclone", "earthquake", "climate", "other",
)
HAZARD_MEASURES: tuple[str, ...] = (
    "people_exposed_share", "share_area_over", "mean", "max", "p90",
)
CONFLICT_MEASURES: tuple[str, ...] = (
    "events_per_100k", "fatalities_per_100k", "events_per_100k_change", "events",
    "fatalities", "events_in_band",
)
ACCESS_MEASURES: tuple[str, ...] = ("distance_km", "coverage_share", "sfca", "per_10k")
INDICATOR_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

DEFAULT_METHODOLOGY_FILE = "default_methodology.yaml"


class _Strict(BaseModel):
    # Unknown keys are typos more often than extensions: refuse them so that a misspelt
    # `wieght` does not silently fall back to the default.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Component(_Strict):
    """One normalised input: a raw column, its goalposts or relative scale, polarity, weight.

    `scale: fixed` rescales between fixed goalposts (INFORM style: the same scale in every
    run and country, so runs compare over time); `scale: relative` between the lowest and
    highest value (or the `cap_percentiles`) of the localities of the same country at its
    finest level, so every admin level is placed on its children's scale.
    """

    id: str = Field(min_length=1)
    source: str = Field(min_length=1, description="raw input column, e.g. hazard.flood.x")
    dimension: str = Field(min_length=1)
    scale: Scale = "relative"
    goalposts: tuple[float, float] | None = Field(
        None, validation_alias=AliasChoices("goalposts", "bounds"),
        description="[lower, upper] in the source's unit (before any log transform)")
    transform: Literal["none", "log"] = "none"
    cap_percentiles: tuple[float, float] | None = None
    polarity: Polarity = "higher_is_worse"
    weight: PositiveFloat = 1.0
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _infer_scale(cls, data: Any) -> Any:
        # Documents written before `scale` existed: goalposts meant fixed, none relative.
        if isinstance(data, dict) and "scale" not in data:
            has_goalposts = data.get("goalposts", data.get("bounds")) is not None
            data = {**data, "scale": "fixed" if has_goalposts else "relative"}
        return data

    @field_validator("cap_percentiles")
    @classmethod
    def _check_caps(cls, caps: tuple[float, float] | None) -> tuple[float, float] | None:
        if caps is not None and not 0 <= caps[0] < caps[1] <= 100:
            raise ValueError(f"must be [lo, hi] with 0 <= lo < hi <= 100, got {list(caps)}")
        return caps

    @field_validator("goalposts")
    @classmethod
    def _check_goalposts(cls, goalposts: tuple[float, float] | None
                         ) -> tuple[float, float] | None:
        if goalposts is not None and not goalposts[0] < goalposts[1]:
            raise ValueError(f"must be [lower, upper] with lower < upper, got {list(goalposts)}")
        return goalposts

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Return the goalposts (the name older code used)."""
        return self.goalposts


class Dimension(_Strict):
    """A group of components inside one pillar, labelled with a human-security dimension."""

    id: str = Field(min_length=1)
    pillar: Pillar
    human_security: HumanSecurityDimension
    weight: PositiveFloat = 1.0
    label: str = ""
    # Overrides missing_data.min_completeness for this dimension (e.g. 0 for natural
    # hazards, whose components are alternative hazards rather than parts of one).
    min_completeness: float | None = Field(default=None, ge=0.0, le=1.0)


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
    # Share of a dimension's component weight that must be known to form it.
    min_completeness: float = Field(default=0.5, ge=0.0, le=1.0)
    # Share of a pillar's dimension weight that must be known to form it (None: as above).
    pillar_min_completeness: float | None = Field(default=None, ge=0.0, le=1.0)
    missing_pillar: Literal["null_composite", "skip_and_reweight"] = "null_composite"
    # With skip_and_reweight: pillars needed for a (partial) composite (None: the pillars'
    # weight share must reach min_completeness).
    min_pillars: int | None = Field(default=None, ge=1, le=3)


class AccessFamily(_Strict):
    """Catchment of one service family (institution types grouped in the vocabulary)."""

    catchment_km: PositiveFloat = Field(
        description="2SFCA catchment and coverage radius; the 2SFCA edge is strict (d < r)")


class AccessSettings(_Strict):
    """How service access is modelled (straight-line distance in a metric CRS)."""

    # none: the original 2SFCA (Luo & Wang 2003); gaussian / linear: the enhanced 2SFCA
    # (Luo & Qi 2009) with a continuous decay applied in both steps.
    decay: Literal["none", "gaussian", "linear"] = "gaussian"
    # Gaussian decay exp(-d^2 / (2 sigma^2)) with sigma = this share of the catchment.
    gaussian_sigma_share: float = Field(default=0.5, gt=0.0, le=10.0)
    families: dict[str, AccessFamily] = Field(default_factory=lambda: {
        "health": AccessFamily(catchment_km=5.0), "school": AccessFamily(catchment_km=3.0)})


class HotspotSettings(_Strict):
    """Getis-Ord hot spots on the composite of each admin level."""

    weights: Literal["contiguity", "distance_band", "knn"] = "contiguity"
    distance_km: PositiveFloat | None = None
    k: int = Field(default=8, ge=1, le=100)
    statistic: Literal["gi_star", "gi"] = "gi_star"
    permutations: int = Field(default=999, ge=99, le=99_999)
    fdr: bool = True


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
    access: AccessSettings = AccessSettings()
    hotspots: HotspotSettings = HotspotSettings()
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

    def goalposts_signature(self) -> dict[str, Any]:
        """Return what fixes the scale of every score: equal signatures compare over time."""
        return {
            "components": {c.id: [c.source, c.scale, c.goalposts and list(c.goalposts),
                                  c.transform, c.polarity, c.dimension, c.weight]
                           for c in self.components},
            "dimensions": {d.id: [d.pillar, d.weight] for d in self.dimensions},
            "pillars": list(self.pillars.as_tuple()),
            "aggregation": self.aggregation.model_dump(),
        }

    def relative_components(self) -> list[str]:
        """Return the ids of components scaled relative to the country (not over time)."""
        return [c.id for c in self.components if c.scale == "relative"]


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
    families = set(methodology.access.families)
    for position, component in enumerate(methodology.components):
        problem = source_problem(component.source, families)
        if problem:
            problems.append({"field": f"components[{position}].source", "message": problem})
        if component.scale == "fixed" and component.goalposts is None:
            problems.append({
                "field": f"components[{position}].goalposts",
                "message": "required when scale is fixed: [lower, upper] in the source's unit",
            })
        if component.scale == "relative" and component.goalposts is not None:
            problems.append({
                "field": f"components[{position}].goalposts",
                "message": "goalposts are for scale: fixed; a relative scale takes them from "
                "the country's localities",
            })
        if component.scale == "fixed" and component.cap_percentiles is not None:
            problems.append({
                "field": f"components[{position}].cap_percentiles",
                "message": "percentile caps are for scale: relative; fixed goalposts already "
                "cap the scale",
            })
    for family in sorted(families - set(INSTITUTION_FAMILIES)):
        problems.append({"field": f"access.families.{family}",
                         "message": f"unknown family (known: {', '.join(INSTITUTION_FAMILIES)})"})
    hotspots = methodology.hotspots
    if hotspots.weights == "distance_band" and hotspots.distance_km is None:
        problems.append({"field": "hotspots.distance_km",
                         "message": "required when weights is distance_band"})
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


def source_problem(source: str, families: set[str]) -> str | None:
    """Return why no step of a score run produces `source`, or None when one does."""
    parts = source.split(".")
    head = parts[0]
    if head == "hazard" and len(parts) == 3:
        if parts[1] not in HAZARD_KINDS:
            return f"unknown hazard kind '{parts[1]}' (known: {', '.join(HAZARD_KINDS)})"
        if parts[2] not in HAZARD_MEASURES:
            return f"unknown hazard measure '{parts[2]}' (known: {', '.join(HAZARD_MEASURES)})"
        return None
    if head == "conflict" and len(parts) == 2:
        if parts[1] not in CONFLICT_MEASURES:
            return (f"unknown conflict measure '{parts[1]}' "
                    f"(known: {', '.join(CONFLICT_MEASURES)})")
        return None
    if head == "access" and len(parts) == 3:
        if parts[1] == "institutions":
            return None if parts[2] == "exposed_share" else (
                "access.institutions has one measure: exposed_share")
        if parts[1] not in families:
            return (f"no access family '{parts[1]}' in access.families "
                    f"(known: {', '.join(sorted(families))})")
        if parts[2] not in ACCESS_MEASURES:
            return f"unknown access measure '{parts[2]}' (known: {', '.join(ACCESS_MEASURES)})"
        return None
    if head == "indicator" and len(parts) >= 2 and INDICATOR_CODE.match(source[10:]):
        return None
    return ("no step of a score run produces this column: expected hazard.<kind>.<measure>, "
            "conflict.<measure>, access.<family>.<measure> or indicator.<code>")


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
