"""Robustness: how much does a locality's rank depend on the chosen weights?

Monte Carlo over weights: every component, dimension and pillar weight is multiplied by
its own uniform factor in [1 - perturbation, 1 + perturbation] in each draw and the
aggregation re-run. Normalised components do not depend on weights and are reused.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from geo.analysis.methodology import Methodology
from geo.analysis.scoring import AggregationPlan, aggregate
from geo.errors import ValidationError


def _check_arguments(draws: int, perturbation: float, interval: tuple[float, float]) -> None:
    if draws < 1:
        raise ValidationError("draws must be at least 1", {"draws": draws})
    if not 0 <= perturbation < 1:
        raise ValidationError("perturbation must be in [0, 1)", {"perturbation": perturbation})
    if not 0 <= interval[0] <= interval[1] <= 100:
        raise ValidationError("interval must be percentiles lo <= hi in [0, 100]",
                              {"interval": list(interval)})


def ranks_worst_first(composites: np.ndarray) -> np.ndarray:
    """Return ranks along the last axis (1 = highest, ties share the best); NaN stays NaN."""
    missing = np.isnan(composites)
    # NaN sorts after every real score, so the real ones keep their ranks among themselves.
    keyed = np.where(missing, np.inf, -composites)
    ranks = rankdata(keyed, method="min", axis=-1).astype(float)
    ranks[missing] = np.nan
    return ranks


def simulate_composites(
    normalised: np.ndarray, plan: AggregationPlan, *, draws: int, perturbation: float,
    seed: int,
) -> np.ndarray:
    """Return a (draws x localities) array of composites under perturbed weights."""
    rng = np.random.default_rng(seed)
    composites = np.empty((draws, normalised.shape[0]))
    low, high = 1.0 - perturbation, 1.0 + perturbation

    def perturbed(weights: np.ndarray) -> np.ndarray:
        return weights * rng.uniform(low, high, weights.size)

    # A loop over draws (a few hundred), never over localities: each draw is a handful of
    # matrix products over all localities at once. Those products are thin (20,000 x 19
    # by 19 x 8): a second BLAS thread only adds hand-off cost (measured 4x slower), and
    # single-threaded BLAS sums each element in the same order, so results are unchanged.
    with _single_threaded_blas():
        for draw in range(draws):
            composites[draw] = aggregate(
                normalised, plan,
                component_weights=perturbed(plan.component_weights),
                dimension_weights=perturbed(plan.dimension_weights),
                pillar_weights=perturbed(plan.pillar_weights),
            ).composite
    return composites


def _single_threaded_blas() -> AbstractContextManager[object]:
    """Return a context limiting BLAS to one thread (a no-op without threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits  # installed with esda's scikit-learn
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def rank_interval(
    draw_ranks: np.ndarray, interval: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Return (low, high) percentiles of each column's ranks, NaN ignored.

    Same as np.nanpercentile with method "lower" / "higher", but one sort for both ends
    (nanpercentile is several times slower on 200 x 20,000 and warns on empty columns).
    """
    ordered = np.sort(draw_ranks, axis=0)  # NaN sorts last
    count = np.sum(~np.isnan(draw_ranks), axis=0)
    last = np.maximum(count - 1, 0)
    low_at = np.floor(last * interval[0] / 100.0).astype(int)
    high_at = np.ceil(last * interval[1] / 100.0).astype(int)
    low = np.take_along_axis(ordered, low_at[None, :], axis=0)[0]
    high = np.take_along_axis(ordered, high_at[None, :], axis=0)[0]
    low[count == 0] = np.nan
    high[count == 0] = np.nan
    return low, high


def _top_share(ranks: np.ndarray, top_share: float) -> np.ndarray:
    """Return, per draw and locality, whether the rank is within the top share of ranked."""
    ranked_count = np.sum(~np.isnan(ranks), axis=-1, keepdims=True)
    cutoff = np.ceil(top_share * ranked_count)
    return np.nan_to_num(ranks, nan=np.inf) <= cutoff


def weight_robustness(
    components: pd.DataFrame,
    methodology: Methodology,
    *,
    draws: int = 200,
    perturbation: float = 0.2,
    seed: int = 0,
    interval: tuple[float, float] = (5.0, 95.0),
    top_share: float = 0.1,
    stable_share: float = 0.9,
) -> pd.DataFrame:
    """Return per locality: rank, rank_low/rank_high interval, top_share_frequency, stability.

    `components` are the normalised components (ScoreTable.components). `top_decile`
    is the call made with the methodology's own weights; `top_decile_stable` says that
    call holds in at least `stable_share` of the draws. The interval uses the lower /
    higher order statistic so it never claims more precision than the draws give.
    """
    _check_arguments(draws, perturbation, interval)
    plan = AggregationPlan.from_methodology(methodology)
    normalised = components[list(plan.component_ids)].to_numpy(dtype=float)
    baseline_ranks = ranks_worst_first(aggregate(normalised, plan).composite)
    draw_ranks = ranks_worst_first(
        simulate_composites(normalised, plan, draws=draws, perturbation=perturbation, seed=seed)
    )
    rank_low, rank_high = rank_interval(draw_ranks, interval)
    frequency = _top_share(draw_ranks, top_share).mean(axis=0)
    top_call = _top_share(baseline_ranks, top_share)
    return pd.DataFrame(
        {
            "rank": pd.array(baseline_ranks, dtype="Float64").astype("Int64"),
            "rank_low": pd.array(rank_low, dtype="Float64").astype("Int64"),
            "rank_high": pd.array(rank_high, dtype="Float64").astype("Int64"),
            "top_decile": top_call,
            "top_decile_frequency": frequency,
            "top_decile_stable": top_call & (frequency >= stable_share),
        },
        index=components.index,
    )
