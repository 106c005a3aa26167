"""Scores: components normalised to 0-10, dimensions, pillars, the INFORM composite.

Everything here is pure: pandas/numpy in, pandas out. The aggregation is written as
matrix products over all localities at once so that `geo.analysis.robustness` can re-run
it hundreds of times with perturbed weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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


def _transformed(values: pd.Series, transform: str) -> np.ndarray:
    raw = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, copy=True)
    raw[~np.isfinite(raw)] = np.nan
    return _signed_log1p(raw) if transform == "log" else raw


def relative_goalposts(transformed: np.ndarray,
                       cap_percentiles: tuple[float, float] | None) -> tuple[float, float] | None:
    """Return (low, high) of the present values (or their percentiles); None: no spread.

    Fewer than two values, or all equal, place nobody relative to anybody: no scale.
    """
    present = transformed[~np.isnan(transformed)]
    if present.size < 2:
        return None
    if cap_percentiles is not None:
        low, high = np.percentile(present, cap_percentiles)
    else:
        low, high = present.min(), present.max()
    return (float(low), float(high)) if high - low > 0 else None


def rescale(transformed: np.ndarray, low: float, high: float, polarity: str) -> np.ndarray:
    """Return values clipped to [low, high] and rescaled to 0-10 with 10 = worst."""
    scaled = (np.clip(transformed, low, high) - low) / (high - low) * 10.0
    return 10.0 - scaled if polarity == "higher_is_better" else scaled


def normalise_component(
    values: pd.Series,
    *,
    transform: Literal["none", "log"] = "none",
    cap_percentiles: tuple[float, float] | None = None,
    polarity: Literal["higher_is_worse", "higher_is_better"] = "higher_is_worse",
    bounds: tuple[float, float] | None = None,
) -> pd.Series:
    """Return values rescaled to 0-10 with 10 = worst; missing stays NaN.

    Non-finite inputs (a rate over zero people) count as missing. `bounds` are fixed
    goalposts (values beyond them are clipped); without them the scale runs from the
    lowest to the highest value (or the `cap_percentiles`). A relative scale over fewer
    than two values, or over values that are all equal, cannot place anybody: NaN, never
    0 ("low need") or, after a higher_is_better flip, 10.
    """
    transformed = _transformed(values, transform)
    present = ~np.isnan(transformed)
    scaled = np.full(transformed.shape, np.nan)
    if bounds is not None:
        goalposts = np.asarray(bounds, dtype=float)
        low, high = _signed_log1p(goalposts) if transform == "log" else goalposts
        scale: tuple[float, float] | None = (float(low), float(high))
    else:
        scale = relative_goalposts(transformed, cap_percentiles)
    if scale is not None:
        scaled[present] = rescale(transformed[present], *scale, polarity)
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
    dimension_min_completeness: np.ndarray | None = None
    pillar_min_completeness: float | None = None
    min_pillars: int | None = None

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
            dimension_min_completeness=np.array(
                [methodology.missing_data.min_completeness if d.min_completeness is None
                 else d.min_completeness for d in methodology.dimensions], dtype=float),
            pillar_min_completeness=methodology.missing_data.pillar_min_completeness,
            min_pillars=methodology.missing_data.min_pillars,
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
    min_completeness: float | np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores, completeness): per-row weighted means of each group's present columns.

    Missing columns are skipped and the others re-weighted; a group whose present columns
    carry less than `min_completeness` (one figure, or one per group) of its weight is NaN.
    No division by zero: a group with nothing present is NaN by construction.
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
    missing_pillar: str, min_completeness: float, min_pillars: int | None = None,
) -> np.ndarray:
    """Return composites: weighted geometric (INFORM) or arithmetic mean of the pillars.

    With skip_and_reweight, a composite is formed from the pillars present when there are
    at least `min_pillars` of them (or, without it, when they carry min_completeness of
    the weight); it is then partial, and the caller says which pillars are missing.
    """
    present = ~np.isnan(pillars)
    present_weight = present.astype(float) @ weights
    if missing_pillar == "null_composite":
        usable = present.all(axis=1)
    elif min_pillars is not None:
        usable = present.sum(axis=1) >= min_pillars
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
        plan.component_dimension, len(plan.dimension_ids),
        plan.min_completeness if plan.dimension_min_completeness is None
        else plan.dimension_min_completeness,
    )
    pillars, _ = group_weighted_mean(
        dimensions,
        plan.dimension_weights if dimension_weights is None else dimension_weights,
        plan.dimension_pillar, len(PILLARS),
        plan.min_completeness if plan.pillar_min_completeness is None
        else plan.pillar_min_completeness,
    )
    composite = combine_pillars(
        pillars, plan.pillar_weights if pillar_weights is None else pillar_weights,
        across=plan.across, offset=plan.geometric_offset,
        missing_pillar=plan.missing_pillar, min_completeness=plan.min_completeness,
        min_pillars=plan.min_pillars,
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
    """Every score of one run, one row per locality code.

    `reasons` has one column per component: why it is missing for that locality (None
    where it is present), so that "no data" is named, never shown as a score.
    """

    methodology: Methodology
    components: pd.DataFrame
    dimensions: pd.DataFrame
    dimension_completeness: pd.DataFrame
    pillars: pd.DataFrame
    summary: pd.DataFrame
    missing_sources: tuple[str, ...]
    reasons: pd.DataFrame | None = None

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


@dataclass(frozen=True)
class Normalised:
    """Normalised components (0-10, NaN = no data) and why each missing one is missing."""

    components: pd.DataFrame
    missing_sources: tuple[str, ...]
    reasons: pd.DataFrame


def normalise_all(
    raw: pd.DataFrame, methodology: Methodology, *, scope: pd.Series | None = None,
    reference: pd.Series | None = None, gaps: dict[str, pd.Series] | None = None,
    levels: pd.Series | None = None,
) -> Normalised:
    """Return every component of the methodology normalised over the rows of raw.

    Fixed components use their goalposts. Relative ones take their scale, separately for
    each `scope` (the country), from the `reference` rows of that scope (its finest
    localities) and apply it to all its rows, so a parent sits on its children's scale
    and is never rescaled alone. Where the finest rows have too little data (a survey at
    district level over loaded villages), the deepest of `levels` with at least two
    values sets the scale instead. `gaps` names, per source, why a raw value is missing.
    """
    index = raw.index
    scope = (pd.Series("", index=index) if scope is None
             else scope.reindex(index).fillna("").astype(str))
    reference = (pd.Series(True, index=index) if reference is None
                 else reference.reindex(index).fillna(False).astype(bool))
    columns: dict[str, np.ndarray] = {}
    why: dict[str, np.ndarray] = {}
    missing: list[str] = []
    groups = {key: np.flatnonzero(scope.to_numpy() == key) for key in scope.unique()}
    ref = reference.to_numpy()
    level_of = (levels.reindex(index).to_numpy() if levels is not None
                else np.zeros(len(index)))
    for component in methodology.components:
        reasons = np.full(len(index), None, dtype=object)
        if component.source not in raw.columns:
            missing.append(component.source)
            columns[component.id] = np.full(len(index), np.nan)
            explained = (gaps or {}).get(component.source)
            reasons[:] = (_texts(explained.reindex(index))
                          if isinstance(explained, pd.Series) else
                          explained or f"no data: nothing loaded produces {component.source}")
            why[component.id] = reasons
            continue
        transformed = _transformed(_numeric_column(raw, component.source), component.transform)
        scaled = np.full(len(index), np.nan)
        present = ~np.isnan(transformed)
        if component.scale == "fixed":
            assert component.goalposts is not None  # checked when the document was parsed
            goalposts = np.asarray(component.goalposts, dtype=float)
            low, high = _signed_log1p(goalposts) if component.transform == "log" else goalposts
            scaled[present] = rescale(transformed[present], float(low), float(high),
                                      component.polarity)
        else:
            for key, rows in groups.items():
                scale = relative_goalposts(transformed[rows[ref[rows]]],
                                           component.cap_percentiles)
                if scale is None and levels is not None:
                    scale = _deepest_scale(transformed, rows, level_of, component)
                if scale is None:
                    where = f" in {key}" if key else ""
                    reasons[rows[present[rows]]] = (
                        "relative scale cannot be formed: fewer than two localities with "
                        f"data at the finest level{where}, or all equal")
                    continue
                inside = rows[present[rows]]
                scaled[inside] = rescale(transformed[inside], *scale, component.polarity)
        columns[component.id] = scaled
        explained = (gaps or {}).get(component.source)
        absent = np.isnan(transformed)
        if isinstance(explained, pd.Series):
            reasons[absent] = _texts(explained.reindex(index))[absent]
        elif explained:
            reasons[absent] = explained
        reasons[absent & np.array([r is None for r in reasons])] = (
            f"no value of {component.source}")
        why[component.id] = reasons
    frame = pd.DataFrame(columns, index=index)
    return Normalised(frame, tuple(sorted(set(missing))), pd.DataFrame(why, index=index))


def _deepest_scale(transformed: np.ndarray, rows: np.ndarray, level_of: np.ndarray,
                   component: Any) -> tuple[float, float] | None:
    """Return the relative scale of the deepest level of `rows` with two or more values."""
    present = rows[~np.isnan(transformed[rows])]
    for level in sorted(set(level_of[present].tolist()), reverse=True):
        scale = relative_goalposts(transformed[present[level_of[present] == level]],
                                   component.cap_percentiles)
        if scale is not None:
            return scale
    return None


def _texts(values: pd.Series) -> np.ndarray:
    """Return values as an object array of strings, None where not a string."""
    return np.array([v if isinstance(v, str) else None for v in values.tolist()], dtype=object)


def score_localities(
    raw: pd.DataFrame, methodology: Methodology, *, parent: pd.Series | None = None,
    normalised: Normalised | None = None,
) -> ScoreTable:
    """Return all scores for raw inputs indexed by locality code, one column per source.

    Ranks are among the rows given (one admin level). Without `normalised`, relative
    components are scaled over these rows; pass `normalise_all` over every level and
    country (then sliced to these rows) to place each level on its children's scale.
    """
    if raw.index.has_duplicates:
        duplicated = raw.index[raw.index.duplicated()].unique().tolist()[:5]
        raise ValidationError("locality codes must be unique", {"duplicates": duplicated})
    plan = AggregationPlan.from_methodology(methodology)
    if normalised is None:
        normalised = normalise_all(raw, methodology)
    components = normalised.components.reindex(raw.index)
    result = aggregate(components.to_numpy(), plan)
    index = raw.index
    dimensions = pd.DataFrame(result.dimensions, index=index, columns=list(plan.dimension_ids))
    pillars = pd.DataFrame(result.pillars, index=index, columns=list(PILLARS))
    summary = _summary(components, dimensions, result.composite, plan, methodology, parent)
    summary["partial"] = summary["composite"].notna() & pillars.isna().any(axis=1)
    return ScoreTable(
        methodology=methodology,
        components=components,
        dimensions=dimensions,
        dimension_completeness=pd.DataFrame(
            result.dimension_completeness, index=index, columns=list(plan.dimension_ids)
        ),
        pillars=pillars,
        summary=summary,
        missing_sources=normalised.missing_sources,
        reasons=normalised.reasons.reindex(index),
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


def explain_missing(table: ScoreTable) -> list[dict[str, Any]]:
    """Return per locality what could not be scored and why (pillars, dimensions, inputs).

    {"missing_pillars": [...], "missing_dimensions": {dimension: [reasons]},
     "missing_components": {component: reason}}; empty lists and dicts when complete.
    """
    methodology = table.methodology
    component_ids = list(table.components.columns)
    dimension_ids = list(table.dimensions.columns)
    members = [[component_ids.index(c.id) for c in methodology.components
                if c.dimension == dim] for dim in dimension_ids]
    reasons = (table.reasons.reindex(columns=component_ids).to_numpy(dtype=object)
               if table.reasons is not None
               else np.full(table.components.shape, None, dtype=object))
    component_missing = table.components.isna().to_numpy()
    dim_missing = table.dimensions.isna().to_numpy()
    pillar_missing = table.pillars.reindex(columns=list(PILLARS)).isna().to_numpy()
    out = []
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in range(len(table.components)):
        gaps = np.flatnonzero(component_missing[row])
        # most localities share one pattern of gaps: explain each pattern once
        key = (tuple(gaps.tolist()), tuple(reasons[row, gaps].tolist()),
               dim_missing[row].tobytes(), pillar_missing[row].tobytes())
        if key in seen:
            out.append(seen[key])
            continue
        components = {component_ids[i]: str(reasons[row, i] or "no data") for i in gaps}
        dimensions = {}
        for d in np.flatnonzero(dim_missing[row]):
            why = sorted({components[component_ids[i]] for i in members[d]
                          if component_missing[row, i]})
            dimensions[dimension_ids[d]] = why or [
                "too few of its inputs have data (see missing_components)"]
        pillars = [PILLARS[p] for p in np.flatnonzero(pillar_missing[row])]
        seen[key] = {"missing_pillars": pillars, "missing_dimensions": dimensions,
                     "missing_components": components}
        out.append(seen[key])
    return out


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
