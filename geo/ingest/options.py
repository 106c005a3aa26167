"""Per-kind ingestion options, validated before any file is opened."""

from __future__ import annotations

import json
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from geo.errors import ValidationError
from geo.models import DATASET_KINDS, POLARITIES

HAZARD_KINDS = (
    "flood", "landslide", "drought", "heat", "cyclone", "earthquake", "climate", "other",
)
LEVELS = ("very_low", "low", "medium", "high")


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class LocalitiesOptions(_Options):
    """Which admin level a boundary file holds, and which fields carry code, name and parent."""

    level: int | None = Field(
        None, ge=0, le=10, description="Admin level (inferred from ADMn_PCODE)"
    )
    code_field: str | None = Field(None, max_length=100)
    name_field: str | None = Field(None, max_length=100)
    parent_field: str | None = Field(None, max_length=100)
    population_field: str | None = Field(None, max_length=100)


class PopulationOptions(_Options):
    """A population table per locality code, or a population raster."""

    name: str = Field("population", min_length=1, max_length=200)
    value_kind: Literal["count", "density"] = Field(
        "count", description="Raster cells hold people per cell (count) or per km² (density)"
    )
    year: int | None = Field(None, ge=1900, le=2100)


class HazardOptions(_Options):
    """A hazard raster: its name (a re-upload under the same name is a new version) and meaning."""

    name: str = Field(..., min_length=1, max_length=200)
    kind: Literal[HAZARD_KINDS] = "other"  # type: ignore[valid-type]
    unit: str | None = Field(None, max_length=40)
    polarity: Literal[POLARITIES] = "higher_is_worse"  # type: ignore[valid-type]
    threshold: float | None = Field(None, description="Value from which a cell counts as exposed")
    level_thresholds: dict[str, float] | None = Field(
        None, description="Thresholds of the hazard levels low, medium, high"
    )
    level_share: float = Field(0.1, gt=0, le=1, description="Share of area/people for a level")
    description: str | None = Field(None, max_length=2000)

    @field_validator("level_thresholds")
    @classmethod
    def _known_levels(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None and not set(value) <= set(LEVELS[1:]):
            raise ValueError(f"levels must be among {', '.join(LEVELS[1:])}")
        return value


class EventsOptions(_Options):
    """Which event layer the events join (created on first use)."""

    layer: str = Field("conflict", min_length=1, max_length=200)
    kind: str = Field("conflict", min_length=1, max_length=40)


class InstitutionsOptions(_Options):
    """Optional field names when the file does not use the usual ones."""

    type_field: str | None = Field(None, max_length=100)
    name_field: str | None = Field(None, max_length=100)
    default_type: str | None = Field(None, max_length=40)


class HouseholdsOptions(_Options):
    """Household microdata: the survey period when the file has none, extra subgroup columns."""

    period: str | None = Field(None, min_length=1, max_length=40,
                               description="Survey period when the file has no period column")
    subgroups: list[str] | None = Field(
        None, description="Columns that are subgroup attributes beyond the usual names "
        "(sex, age, disability, status, ...)")

    @field_validator("subgroups", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class NoOptions(_Options):
    """This kind takes no options."""


OPTION_MODELS: dict[str, type[_Options]] = {
    "localities": LocalitiesOptions,
    "population": PopulationOptions,
    "hazard": HazardOptions,
    "events": EventsOptions,
    "institutions": InstitutionsOptions,
    "indicators": NoOptions,
    "observations": NoOptions,
    "priorities": NoOptions,
    "households": HouseholdsOptions,
}
assert set(OPTION_MODELS) == set(DATASET_KINDS)


def parse_options(kind: str, raw: dict[str, Any]) -> Any:
    """Return the validated options of `kind`, or raise ValidationError naming each bad field."""
    if kind not in OPTION_MODELS:
        raise ValidationError(
            f"unknown kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}",
            [{"field": "kind", "problem": "unknown kind"}],
        )
    cleaned = {key: value for key, value in raw.items() if value not in (None, "")}
    try:
        return OPTION_MODELS[kind](**cleaned)
    except pydantic.ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]) or "options", "problem": err["msg"]}
            for err in exc.errors()
        ]
        first = details[0]
        raise ValidationError(
            f"option {first['field']!r} of {kind}: {first['problem']}", details
        ) from None


def option_value(raw: str) -> Any:
    """Return an option given as text: the JSON object or list it spells, else the text."""
    stripped = raw.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            # Plain text may start with a brace ("{draft} flood depth"); when the option
            # needs an object, validation names it.
            pass
    return raw
