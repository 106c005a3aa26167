"""Scores: components normalised to 0-10, dimensions, pillars, the INFORM composite.

Everything here is pure: pandas/numpy in, pandas out. The aggregation is written as
matrix products over all localities at once so that `geo.analysis.robustness` can re-run
it hundreds of times with perturbed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from geo.analysis.methodology import PILLARS, Methodology
from geo.errors import ValidationError

# Dimension scores are means of floats; compare with the threshold with a little slack
# so that 6.4999999999 (a mean of 6 and 7 in floating point) still counts as 6.5.
STRESS_TOLERANCE = 1e-9

QUADRANTS: tuple[str, ...] = (
    "high_need_high_vulnerability",
    "high_need_low_vulnerability",
    "low_need_high_vulnerability",
    "low_need_low_vulnerability",
)


def _signed_log1p(values: np.ndarray) -> np.ndarray:
    # log1p is undefined below -1; a sign-preserving log keeps order for negative inputs
    # (trends) and equals log1p for the usual non-negative ones.
    return np.sign(values) * np.log1p(np.abs(values))


def normalise_component(
    values: pd.Series,
    *,
    transform: Literal["none", "log"] = "none",
    cap_percentiles: tuple[float, float] | None = None,
    polarity: Literal["higher_is_worse", "higher_is_better"] = "higher_is_worse",
    bounds: tuple[float, float] | None = None,
) -> pd.Series:
    """Return values min-max rescaled to 0-10 with 10 = worst; missing stays NaN.

    Non-finite inputs (a rate over zero people) count as missing. `bounds` fixes the
    goalposts instead of taking them from the data. When all present values are equal
    the result is 0: with no spread nobody is relatively deprived, and a constant must
    not become 10 just because a higher_is_better flip turned 0 into 10.
    """
    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, copy=True)
    raw[~np.isfinite(raw)] = np.nan
    transformed = _signed_log1p(raw) if transform == "log" else raw
    present = ~np.isnan(transformed)
    scaled = np.full(transformed.shape, np.nan)
    if not present.any():
        return pd.Series(scaled, index=values.index, name=values.name)
    if bounds is not None:
        goalposts = np.asarray(bounds, dtype=float)
        low, high = _signed_log1p(goalposts) if transform == "log" else goalposts
    elif cap_percentiles is not None:
        low, high = np.percentile(transformed[present], cap_percentiles)
    else:
        low, high = transformed[present].min(), transformed[present].max()
    span = high - low
    if span > 0:
        scaled[present] = (np.clip(transformed[present], low, high) - low) / span * 10.0
        if polarity == "higher_is_better":
            scaled[present] = 10.0 - scaled[present]
    else:
        scaled[present] = 0.0
    return pd.Series(scaled, index=values.index, name=values.name)


@dataclass(frozen=True)
class AggregationPlan:
    """A methodology as arrays: who feeds whom, with which weight."""

    component_ids: tuple[str, ...]
    dimension_ids: tuple[str, ...]
    component_weights: np.ndarray
    component_dimension: np.ndarray
    dimension_weights: np.ndarray
    dimension_pillar: np.ndarray
    pillar_weights: np.ndarray
    min_completeness: float
    missing_pillar: str
    across: str
    geometric_offset: float

    @classmethod
    def from_methodology(cls, methodology: Methodology) -> AggregationPlan:
        """Return the plan of a validated methodology."""
        dimension_ids = tuple(methodology.dimension_ids())
        components = methodology.components
        return cls(
            component_ids=tuple(methodology.component_ids()),
            dimension_ids=dimension_ids,
            component_weights=np.array([c.weight for c in components], dtype=float),
            component_dimension=np.array([dimension_ids.index(c.dimension) for c in components]),
            dimension_weights=np.array([d.weight for d in methodology.dimensions], dtype=float),
            dimension_pillar=np.array([PILLARS.index(d.pillar) for d in methodology.dimensions]),
            pillar_weights=np.array(methodology.pillars.as_tuple(), dtype=float),
            min_completeness=methodology.missing_data.min_completeness,
            missing_pillar=methodology.missing_data.missing_pillar,
            across=methodology.aggregation.across,
            geometric_offset=methodology.aggregation.geometric_offset,
        )

    def effective_component_weights(self) -> np.ndarray:
        """Return each component's share of the composite's total weight (sums to 1)."""
        in_dimension = self.component_weights / np.bincount(
            self.component_dimension, weights=self.component_weights
        )[self.component_dimension]
        dimension_share = self.dimension_weights / np.bincount(
            self.dimension_pillar, weights=self.dimension_weights, minlength=len(PILLARS)
        )[self.dimension_pillar]
        pillar_share = self.pillar_weights / self.pillar_weights.sum()
        per_dimension = dimension_share * pillar_share[self.dimension_pillar]
        return in_dimension * per_dimension[self.component_dimension]


class Aggregated(NamedTuple):
    """Arrays produced by one aggregation (rows = localities)."""

    dimensions: np.ndarray
    dimension_completeness: np.ndarray
    pillars: np.ndarray
    composite: np.ndarray


def group_weighted_mean(
    values: np.ndarray, weights: np.ndarray, groups: np.ndarray, n_groups: int,
    min_completeness: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores, completeness): per-row weighted means of each group's present columns.

    Missing columns are skipped and the others re-weighted; a group whose present columns
    carry less than `min_completeness` of its weight is NaN. No division by zero: a group
    with nothing present is NaN by construction.
    """
    membership = np.zeros((values.shape[1], n_groups))
    membership[np.arange(values.shape[1]), groups] = weights
    present = ~np.isnan(values)
    present_weight = present.astype(float) @ membership
    weighted_sum = np.where(present, values, 0.0) @ membership
    completeness = present_weight / membership.sum(axis=0)
    scores = np.full(present_weight.shape, np.nan)
    usable = (present_weight > 0) & (completeness >= min_completeness - STRESS_TOLERANCE)
    scores[usable] = weighted_sum[usable] / present_weight[usable]
    return scores, completeness


def combine_pillars(
    pillars: np.ndarray, weights: np.ndarray, *, across: str, offset: float,
    missing_pillar: str, min_completeness: float,
) -> np.ndarray:
    """Return composites: weighted geometric (INFORM) or arithmetic mean of the pillars."""
    present = ~np.isnan(pillars)
    present_weight = present.astype(float) @ weights
    if missing_pillar == "null_composite":
        usable = present.all(axis=1)
    else:
        usable = (present_weight > 0) & (
            present_weight / weights.sum() >= min_completeness - STRESS_TOLERANCE
        )
    share = np.where(present, weights, 0.0) / np.where(present_weight > 0, present_weight, 1.0)[
        :, None
    ]
    filled = np.where(present, pillars, 0.0)
    if across == "geometric":
        # Product of powers rather than exp(mean(log)): a pillar at 0 gives 0, not
        # log(0) = -inf and a warning; absent pillars contribute base**0 = 1.
        combined = np.prod(np.power(filled + offset, share), axis=1) - offset
    else:
        combined = (filled * share).sum(axis=1)
    composite = np.full(pillars.shape[0], np.nan)
    composite[usable] = np.clip(combined[usable], 0.0, 10.0)
    return composite


def aggregate(
    normalised: np.ndarray,
    plan: AggregationPlan,
    *,
    component_weights: np.ndarray | None = None,
    dimension_weights: np.ndarray | None = None,
    pillar_weights: np.ndarray | None = None,
) -> Aggregated:
    """Return dimension, pillar and composite arrays for normalised components (rows x cols).

    The weight arguments override the plan's (robustness analysis perturbs them).
    """
    dimensions, dimension_completeness = group_weighted_mean(
        normalised,
        plan.component_weights if component_weights is None else component_weights,
        plan.component_dimension, len(plan.dimension_ids), plan.min_completeness,
    )
    pillars, _ = group_weighted_mean(
        dimensions,
        plan.dimension_weights if dimension_weights is None else dimension_weights,
        plan.dimension_pillar, len(PILLARS), plan.min_completeness,
    )
    composite = combine_pillars(
        pillars, plan.pillar_weights if pillar_weights is None else pillar_weights,
        across=plan.across, offset=plan.geometric_offset,
        missing_pillar=plan.missing_pillar, min_completeness=plan.min_completeness,
    )
    return Aggregated(dimensions, dimension_completeness, pillars, composite)


def rank_worst_first(scores: pd.Series, parent: pd.Series | None = None) -> pd.Series:
    """Return ranks with 1 = highest score (ties share the best rank); NaN scores unranked."""
    if parent is None:
        ranks = scores.rank(ascending=False, method="min", na_option="keep")
    else:
        ranks = scores.groupby(parent.reindex(scores.index)).rank(
            ascending=False, method="min", na_option="keep"
        )
    return ranks.astype("Int64")


@dataclass(frozen=True)
class ScoreTable:
    """Every score of one run, one row per locality code."""

    methodology: Methodology
    components: pd.DataFrame
    dimensions: pd.DataFrame
    dimension_completeness: pd.DataFrame
    pillars: pd.DataFrame
    summary: pd.DataFrame
    missing_sources: tuple[str, ...]

    def stressed(self) -> pd.DataFrame:
        """Return a boolean frame: dimension score at or above the stress threshold."""
        return stressed_dimensions(self.dimensions, self.methodology.stress_threshold)

    def to_frame(self) -> pd.DataFrame:
        """Return one flat frame: summary, then `pillar.*`, `dimension.*`, `component.*`."""
        return pd.concat(
            [
                self.summary,
                self.pillars.add_prefix("pillar."),
                self.dimensions.add_prefix("dimension."),
                self.components.add_prefix("component."),
            ],
            axis=1,
        )


def _numeric_column(raw: pd.DataFrame, source: str) -> pd.Series:
    try:
        return pd.to_numeric(raw[source]).astype(float)
    except (TypeError, ValueError) as error:
        raise ValidationError(
            f"raw column '{source}' is not numeric: {error}", {"column": source}
        ) from None


def normalise_all(raw: pd.DataFrame, methodology: Methodology) -> tuple[pd.DataFrame, list[str]]:
    """Return (normalised components frame, sources absent from raw)."""
    columns: dict[str, pd.Series] = {}
    missing: list[str] = []
    for component in methodology.components:
        if component.source not in raw.columns:
            missing.append(component.source)
            columns[component.id] = pd.Series(np.nan, index=raw.index)
            continue
        columns[component.id] = normalise_component(
            _numeric_column(raw, component.source),
            transform=component.transform,
            cap_percentiles=component.cap_percentiles,
            polarity=component.polarity,
            bounds=component.bounds,
        )
    return pd.DataFrame(columns, index=raw.index), sorted(set(missing))


def score_localities(
    raw: pd.DataFrame, methodology: Methodology, *, parent: pd.Series | None = None
) -> ScoreTable:
    """Return all scores for raw inputs indexed by locality code, one column per source.

    Normalisation is relative to the localities given, so score one admin level at a time.
    """
    if raw.index.has_duplicates:
        duplicated = raw.index[raw.index.duplicated()].unique().tolist()[:5]
        raise ValidationError("locality codes must be unique", {"duplicates": duplicated})
    plan = AggregationPlan.from_methodology(methodology)
    components, missing_sources = normalise_all(raw, methodology)
    result = aggregate(components.to_numpy(), plan)
    index = raw.index
    dimensions = pd.DataFrame(result.dimensions, index=index, columns=list(plan.dimension_ids))
    return ScoreTable(
        methodology=methodology,
        components=components,
        dimensions=dimensions,
        dimension_completeness=pd.DataFrame(
            result.dimension_completeness, index=index, columns=list(plan.dimension_ids)
        ),
        pillars=pd.DataFrame(result.pillars, index=index, columns=list(PILLARS)),
        summary=_summary(components, dimensions, result.composite, plan, methodology, parent),
        missing_sources=tuple(missing_sources),
    )


def stressed_dimensions(dimensions: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Return a boolean frame: dimension score at or above the threshold (NaN is not)."""
    return dimensions.ge(threshold - STRESS_TOLERANCE) & dimensions.notna()


def _summary(
    components: pd.DataFrame, dimensions: pd.DataFrame, composite: np.ndarray,
    plan: AggregationPlan, methodology: Methodology, parent: pd.Series | None,
) -> pd.DataFrame:
    summary = pd.DataFrame({"composite": composite}, index=components.index)
    present = components.notna().to_numpy(dtype=float)
    summary["completeness"] = np.clip(present @ plan.effective_component_weights(), 0.0, 1.0)
    stressed_count = stressed_dimensions(dimensions, methodology.stress_threshold).sum(axis=1)
    summary["stressed_count"] = stressed_count.astype(int)
    summary["compounded"] = summary["stressed_count"] >= methodology.k
    summary["rank"] = rank_worst_first(summary["composite"])
    summary["rank_in_parent"] = (
        rank_worst_first(summary["composite"], parent)
        if parent is not None
        else pd.Series(pd.NA, index=summary.index, dtype="Int64")
    )
    return summary


def need_vulnerability_quadrant(
    pillars: pd.DataFrame,
    *,
    need_split: float | None = None,
    vulnerability_split: float | None = None,
) -> pd.DataFrame:
    """Return need, vulnerability, quadrant and priority (1 = high/high) per locality.

    need = the vulnerability pillar (deprivation now); vulnerability to the next shock =
    geometric mean of hazard & exposure and lack of coping capacity (their product, kept
    on the 0-10 scale). Splits default to the medians; "high" means strictly above the
    split, so a column with no spread puts everybody in "low".
    """
    need = pillars["vulnerability"].astype(float)
    next_shock = np.sqrt(
        pillars["hazard_exposure"].astype(float) * pillars["lack_of_coping_capacity"]
    )
    need_cut = need.median() if need_split is None else need_split
    shock_cut = next_shock.median() if vulnerability_split is None else vulnerability_split
    high_need = need.gt(need_cut).to_numpy()
    high_shock = next_shock.gt(shock_cut).to_numpy()
    known = (need.notna() & next_shock.notna()).to_numpy()
    # Order: people deprived now before people exposed next, hence this priority.
    priority = np.select(
        [high_need & high_shock, high_need, high_shock], [1, 2, 3], default=4
    ).astype(float)
    priority[~known] = np.nan
    label_choices = np.array([*QUADRANTS, None], dtype=object)
    label_index = np.where(known, np.nan_to_num(priority, nan=5.0) - 1, 4).astype(int)
    labels = pd.Series(label_choices[label_index], index=pillars.index, dtype=object)
    return pd.DataFrame(
        {
            "need": need,
            "vulnerability": next_shock,
            "quadrant": labels,
            "priority": pd.array(priority, dtype="Float64").astype("Int64"),
        },
        index=pillars.index,
    )
