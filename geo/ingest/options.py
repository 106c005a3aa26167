"""Per-kind ingestion options, validated before any file is opened.

Every kind takes the reading options of `_Options` (which sheet or GeoPackage layer, the
decimal mark, the date format, which column plays which role) besides its own. The roles
each kind understands are listed in `ROLES`; `--field ROLE=COLUMN` on the command line and
the `fields` option over HTTP name the column when the usual names are not used.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePath
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from geo.errors import ValidationError
from geo.models import DATASET_KINDS, POLARITIES

HAZARD_KINDS = (
    "flood", "landslide", "drought", "heat", "cyclone", "earthquake", "climate", "other",
)
LEVELS = ("very_low", "low", "medium", "high")

# The roles a `--field ROLE=COLUMN` may name, per kind, with what each means.
ROLES: dict[str, dict[str, str]] = {
    "localities": {
        "code": "the unit's stable code (P-code)", "name": "its name",
        "parent": "the code of the unit one level up", "population": "its population",
    },
    "population": {
        "code": "the locality code", "population": "the number of people",
        "year": "the reference year", "level": "the admin level of the row",
    },
    "hazard": {},
    "events": {
        "date": "the event date", "type": "the event type", "actor": "who acted",
        "fatalities": "deaths", "lat": "latitude", "lon": "longitude",
    },
    "institutions": {
        "type": "the facility type", "name": "its name", "capacity": "beds, seats, ...",
        "sensitive": "yes/no: never show its exact place publicly", "lat": "latitude",
        "lon": "longitude",
    },
    "indicators": {
        "code": "the indicator code", "name": "its name", "dimension": "its dimension",
        "polarity": "higher_is_worse or higher_is_better", "cutoff": "deprivation cutoff",
        "unit": "its unit", "target": "its target",
    },
    "observations": {
        "code": "the locality code", "indicator": "the indicator code", "period": "the period",
        "value": "the value", "subgroup": "the subgroup (sex=female;age=15-24)",
        "sample_size": "the sample size", "source": "where it comes from",
    },
    "priorities": {
        "code": "the locality code", "date": "the forum date", "rank": "the rank",
        "need": "the need", "needs": "a ranked list of needs in one cell (a; b; c)",
    },
}


class _Options(BaseModel):
    """Reading options every kind accepts."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=True)
    kind_name: ClassVar[str] = ""

    fields: dict[str, str] = Field(
        default_factory=dict, description='Which column plays which role, e.g. {"code": "pcode"}'
    )
    sheet: str | None = Field(None, max_length=100,
                              description="Sheet of an .xlsx (default: the first)")
    source_layer: str | None = Field(
        None, max_length=200, description="Layer of a GeoPackage holding several"
    )
    decimal: Literal[".", ","] | None = Field(
        None, description="Decimal mark of a CSV (default: ',' when the delimiter is ';')"
    )
    date_format: str | None = Field(
        None, max_length=40, description="strftime format of the dates, e.g. %d/%m/%y"
    )

    @field_validator("fields")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = ROLES.get(cls.kind_name, {})
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            listed = ", ".join(allowed) or "none"
            raise ValueError(f"unknown role {', '.join(unknown)} (roles of this kind: {listed})")
        blank = [role for role, column in value.items() if not str(column).strip()]
        if blank:
            raise ValueError(f"no column given for role {', '.join(blank)}")
        return {role: str(column).strip() for role, column in value.items()}

    @field_validator("date_format")
    @classmethod
    def _has_codes(cls, value: str | None) -> str | None:
        if value is not None and "%" not in value:
            raise ValueError("a date format uses strftime codes, e.g. %d/%m/%Y or %Y-%m-%d")
        return value

    def field(self, role: str) -> str | None:
        """Return the column the user named for `role`, or None."""
        return self.fields.get(role)


def _legacy_fields(data: Any, legacy: dict[str, str]) -> Any:
    """Fold old `code_field`-style options into `fields` (they keep working)."""
    if not isinstance(data, dict):
        return data
    fields = dict(data.get("fields") or {})
    for option, role in legacy.items():
        if data.get(option) is not None:
            fields.setdefault(role, data[option])
    rest = {k: v for k, v in data.items() if k not in legacy}
    return {**rest, "fields": fields} if fields else rest


class LocalitiesOptions(_Options):
    """Which admin level a boundary file holds, and which fields carry code, name and parent."""

    kind_name: ClassVar[str] = "localities"
    level: int | None = Field(
        None, ge=0, le=10, description="Admin level (inferred from ADMn_PCODE)"
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _legacy_fields(data, {"code_field": "code", "name_field": "name",
                                     "parent_field": "parent",
                                     "population_field": "population"})


class PopulationOptions(_Options):
    """A population table per locality code, or a population raster."""

    kind_name: ClassVar[str] = "population"
    name: str = Field("population", min_length=1, max_length=200,
                      validation_alias=AliasChoices("name", "layer_name"))
    value_kind: Literal["count", "density"] = Field(
        "count", description="Raster cells hold people per cell (count) or per km² (density)"
    )
    year: int | None = Field(None, ge=1900, le=2100)
    skip_unknown: bool = Field(False, description="Load the known codes, list the others")


class HazardOptions(_Options):
    """A hazard raster: its name (a re-upload under the same name is a new version) and meaning."""

    kind_name: ClassVar[str] = "hazard"
    name: str = Field(..., min_length=1, max_length=200,
                      validation_alias=AliasChoices("name", "layer_name"))
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
    """The named event layer the events make up (replaced whole by a new upload of the name)."""

    kind_name: ClassVar[str] = "events"
    # `layer` is the option's name from before layers were replaced by name.
    layer_name: str | None = Field(None, min_length=1, max_length=200,
                                   validation_alias=AliasChoices("layer_name", "layer"))
    kind: str = Field("conflict", min_length=1, max_length=40)


class InstitutionsOptions(_Options):
    """The named inventory (replaced whole by a new upload of the name) and its fields."""

    kind_name: ClassVar[str] = "institutions"
    layer_name: str | None = Field(None, min_length=1, max_length=200)
    default_type: str | None = Field(None, max_length=40)

    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        return _legacy_fields(data, {"type_field": "type", "name_field": "name"})


class TableOptions(_Options):
    """Indicators, observations, priorities: only the reading options."""

    skip_unknown: bool = Field(False, description="Load the rows with known codes, list the rest")


class IndicatorsOptions(_Options):
    """Indicator metadata: only the reading options."""

    kind_name: ClassVar[str] = "indicators"


class ObservationsOptions(TableOptions):
    """Observations keyed by locality code."""

    kind_name: ClassVar[str] = "observations"


class PrioritiesOptions(TableOptions):
    """Community priorities keyed by locality code."""

    kind_name: ClassVar[str] = "priorities"


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



OPTION_MODELS: dict[str, type[_Options]] = {
    "localities": LocalitiesOptions,
    "population": PopulationOptions,
    "hazard": HazardOptions,
    "events": EventsOptions,
    "institutions": InstitutionsOptions,
    "indicators": IndicatorsOptions,
    "observations": ObservationsOptions,
    "priorities": PrioritiesOptions,
    "households": HouseholdsOptions,
}
assert set(OPTION_MODELS) == set(DATASET_KINDS)
# Kinds whose upload is a named layer replaced whole by a new upload of the same name.
NAMED_LAYER_KINDS = ("events", "institutions")


def default_layer_name(original_name: str) -> str:
    """Return the layer name a file gets when none is given: its name without extension."""
    stem = PurePath(original_name.replace("\\", "/")).name
    for _ in range(2):  # "sites.geojson.zip" → "sites"
        stem = re.sub(r"\.[A-Za-z0-9]{1,8}$", "", stem)
    return stem.strip()[:200] or "upload"


def parse_options(kind: str, raw: dict[str, Any], original_name: str | None = None) -> Any:
    """Return the validated options of `kind`, or raise ValidationError naming each bad field.

    `original_name` fills the layer name of events and institutions when none is given.
    """
    if kind not in OPTION_MODELS:
        raise ValidationError(
            f"unknown kind {kind!r}; choose one of {', '.join(DATASET_KINDS)}",
            [{"field": "kind", "problem": "unknown kind"}],
        )
    cleaned = {key: value for key, value in raw.items() if value not in (None, "")}
    if kind in NAMED_LAYER_KINDS and original_name and not (
        cleaned.get("layer_name") or cleaned.get("layer")
    ):
        cleaned["layer_name"] = default_layer_name(original_name)
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


def field_pairs(items: list[str]) -> dict[str, str]:
    """Return `ROLE=COLUMN` items as a dict; raise naming an item without '='."""
    fields: dict[str, str] = {}
    for item in items:
        role, sep, column = item.partition("=")
        if not sep or not role.strip() or not column.strip():
            raise ValidationError(
                f"--field {item!r} must look like ROLE=COLUMN, e.g. code=pcode",
                [{"field": "fields", "problem": f"{item!r} is not ROLE=COLUMN"}],
            )
        fields[role.strip().lower()] = column.strip()
    return fields
