"""Deprivation counted per person and per group: the Alkire-Foster (2011) method.

From household or person microdata (one row per person, a sampling weight, subgroup
attributes and one column per indicator), with indicator weights w_j summing to 1 and a
poverty cutoff k (a share of the weighted indicators):

- g0_ij = 1 where person i is deprived in indicator j (below its cutoff; see `deprived`);
- c_i = sum_j w_j g0_ij, the deprivation score; i is multidimensionally poor when c_i >= k;
- H  = q / n, the headcount ratio (weighted share of people who are poor);
- A  = sum_poor c_i / q, the intensity (average score among the poor);
- M0 = H x A = (1/n) sum_i c_i(k), the adjusted headcount ratio, c_i(k) = c_i if poor else 0;
- h_j = (1/n) sum_i g0_ij(k), the censored headcount of indicator j (poor and deprived in j),
  so that M0 = sum_j w_j h_j, and the contribution of j is w_j h_j / M0 (they sum to 1).

Every figure is weighted by the sampling weights and comes with a standard error by
linearisation (Taylor series) treating households as the primary sampling units, the
"ultimate cluster" variance a survey package gives without strata: for a ratio
R = sum w y / sum w x, e_i = w_i (y_i - R x_i) / sum w x, z_h = sum of e_i over household h,
Var(R) = m / (m - 1) sum_h z_h^2 over the m households of the group.

Source: S. Alkire and J. Foster (2011), "Counting and multidimensional poverty
measurement", Journal of Public Economics 95(7-8): 476-487; S. Alkire et al. (2015),
Multidimensional Poverty Measurement and Analysis, ch. 5 (OUP / OPHI).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from geo.analysis.uncertainty import measure_of_unit
from geo.errors import ValidationError

ALL = "all"
# Floating sums of weights like 1/3 + 1/3 must reach k = 2/3.
TOLERANCE = 1e-9


class Deprivation(BaseModel):
    """The methodology's Alkire-Foster settings: indicator weights and the poverty cutoff k."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    k: float = Field(default=1 / 3, gt=0.0, le=1.0,
                     description="poor when the weighted deprivation score reaches k")
    weights: dict[str, float] | None = Field(
        default=None, description="indicator code -> weight; default nested equal weights")
    intersections: bool = Field(default=True, description="also two-way subgroup intersections")


def deprived(values: pd.Series, *, polarity: str, cutoff: float | None,
             unit: str | None) -> pd.Series:
    """Return 1.0 where a person is deprived in the indicator, 0.0 where not, NaN if missing.

    An indicator published as a share (unit percent or share) is asked of each person as a
    0/1 answer: 1 = counted in the numerator. A higher-is-worse share (poverty) deprives at
    1, a higher-is-better one (school attendance) at 0. Any other indicator is a value
    compared with its cutoff, strictly, as in Alkire-Foster (y_ij < z_j deprives): below
    the cutoff when higher is better, above it when higher is worse.
    """
    numbers = pd.to_numeric(values, errors="coerce").astype(float)
    if measure_of_unit(unit) != "mean":
        flag = numbers == 1.0 if polarity == "higher_is_worse" else numbers == 0.0
    else:
        if cutoff is None or np.isnan(cutoff):
            raise ValidationError(f"indicator has no cutoff for household values (unit {unit!r})")
        flag = numbers > cutoff if polarity == "higher_is_worse" else numbers < cutoff
    return flag.astype(float).where(numbers.notna())


def is_binary(unit: str | None) -> bool:
    """Return True when the indicator's person-level value is a 0/1 answer."""
    return measure_of_unit(unit) != "mean"


def indicator_weights(indicators: pd.DataFrame, codes: Sequence[str],
                      settings: Deprivation) -> pd.Series:
    """Return the weight of each indicator in `codes`, summing to 1.

    Given weights are normalised over the indicators present; by default each
    human-security dimension present weighs the same and its indicators share it equally
    (the nested weights of the global MPI).
    """
    if settings.weights:
        weights = pd.Series({c: float(settings.weights[c]) for c in codes if c in settings.weights})
        if weights.empty or weights.sum() <= 0:
            raise ValidationError("none of the household indicators has a weight in the "
                                  "methodology's deprivation.weights",
                                  {"indicators": list(codes)})
        return weights / weights.sum()
    dimension = indicators.loc[list(codes), "dimension"]
    per_dimension = dimension.map(1.0 / dimension.value_counts()) / dimension.nunique()
    return per_dimension.astype(float)


def subgroup_memberships(records: pd.DataFrame, columns: Sequence[str],
                         intersections: bool = True) -> pd.DataFrame:
    """Return (record position, subgroup key) pairs: `all`, each key=value and two-way pairs."""
    position = np.arange(len(records))
    parts = [pd.DataFrame({"record": position, "subgroup": ALL})]
    values = {c: records[c].astype("string").str.strip().str.lower() for c in columns}
    for column in columns:
        known = values[column].notna().to_numpy()
        parts.append(pd.DataFrame({"record": position[known],
                                   "subgroup": (f"{column}=" + values[column][known]).to_numpy()}))
    if intersections:
        for first, second in combinations(sorted(columns), 2):
            known = (values[first].notna() & values[second].notna()).to_numpy()
            keys = (f"{first}=" + values[first][known] + f";{second}=" + values[second][known])
            parts.append(pd.DataFrame({"record": position[known], "subgroup": keys.to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def alkire_foster(
    records: pd.DataFrame,
    deprivations: pd.DataFrame,
    weights: pd.Series,
    k: float,
    group_keys: pd.DataFrame,
) -> pd.DataFrame:
    """Return H, A, M0, censored headcounts and contributions with standard errors per group.

    records: `weight` (sampling weight, > 0) and `cluster` (household id) per person.
    deprivations: g0 (0/1, no missing) per person, one column per indicator in `weights`.
    group_keys: rows of (`record` position, group columns ...): a person may be in many
    groups. Returns one row per group with n (people), population (sum of weights), poor
    (people), H, A, M0 and their `_se`, and `censored.<j>`, `uncensored.<j>`,
    `contribution.<j>` (with `_se`) per indicator j.
    """
    codes = list(weights.index)
    g0 = deprivations[codes].to_numpy(dtype=float)
    score = g0 @ weights.to_numpy(dtype=float)
    poor = (score >= k - TOLERANCE).astype(float)
    censored_score = score * poor
    per_person = {"one": np.ones(len(records)), "poor": poor, "c_k": censored_score}
    for index, code in enumerate(codes):
        per_person[f"censored.{code}"] = g0[:, index] * poor
        per_person[f"uncensored.{code}"] = g0[:, index]
        per_person[f"weighted.{code}"] = weights[code] * g0[:, index] * poor
    group_columns = [c for c in group_keys.columns if c != "record"]
    rows = group_keys["record"].to_numpy()
    long = pd.DataFrame({name: values[rows] for name, values in per_person.items()})
    long["w"] = records["weight"].to_numpy(dtype=float)[rows]
    long["cluster"] = records["cluster"].to_numpy()[rows]
    for column in group_columns:
        long[column] = group_keys[column].to_numpy()
    estimator = _RatioEstimator(long, group_columns)
    result = pd.DataFrame(index=estimator.index)
    result["n"] = estimator.count
    result["population"] = estimator.total("one")
    result["poor"] = pd.Series(estimator._sum(long["poor"].to_numpy(dtype=float)),
                               index=estimator.index).round().astype(int)
    for name, numerator, denominator in (("H", "poor", "one"), ("M0", "c_k", "one"),
                                         ("A", "c_k", "poor")):
        result[name], result[f"{name}_se"] = estimator.ratio(numerator, denominator)
    for code in codes:
        result[f"censored.{code}"], result[f"censored.{code}_se"] = estimator.ratio(
            f"censored.{code}", "one")
        result[f"uncensored.{code}"], result[f"uncensored.{code}_se"] = estimator.ratio(
            f"uncensored.{code}", "one")
        result[f"contribution.{code}"], result[f"contribution.{code}_se"] = estimator.ratio(
            f"weighted.{code}", "c_k")
    return result.reset_index()


class _RatioEstimator:
    """Weighted ratios sum(w y) / sum(w x) per group with cluster-linearised standard errors.

    Groups and (group, cluster) pairs are factorised once into integer codes; every sum is
    then one np.bincount (a groupby per statistic took seconds on a demo's 100,000 rows).
    """

    def __init__(self, long: pd.DataFrame, groups: list[str]) -> None:
        self.long = long
        grouped = long.groupby(groups, sort=True)
        codes = grouped.ngroup().to_numpy()
        self.index = grouped.size().index
        self.group = codes
        self.size = len(self.index)
        cluster_codes, cluster_names = pd.factorize(long["cluster"])
        pair = codes.astype(np.int64) * max(1, len(cluster_names)) + cluster_codes
        pairs, self.cluster = np.unique(pair, return_inverse=True)
        self.cluster_group = (pairs // max(1, len(cluster_names))).astype(np.int64)
        self.clusters = np.bincount(self.cluster_group, minlength=self.size).astype(float)
        self.count = pd.Series(np.bincount(codes, minlength=self.size), index=self.index)
        self.weight = long["w"].to_numpy(dtype=float)

    def _sum(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.group, weights=values, minlength=self.size)

    def total(self, column: str) -> pd.Series:
        """Return sum(w x) per group."""
        return pd.Series(self._sum(self.weight * self.long[column].to_numpy(dtype=float)),
                         index=self.index)

    def ratio(self, numerator: str, denominator: str) -> tuple[pd.Series, pd.Series]:
        """Return (estimate, standard error) of sum(w y) / sum(w x) per group."""
        y = self.long[numerator].to_numpy(dtype=float)
        x = self.long[denominator].to_numpy(dtype=float)
        top, bottom = self._sum(self.weight * y), self._sum(self.weight * x)
        with np.errstate(divide="ignore", invalid="ignore"):
            estimate = np.where(bottom > 0, top / bottom, np.nan)
            residual = self.weight * (y - estimate[self.group] * x) / bottom[self.group]
        per_cluster = np.bincount(self.cluster, weights=np.nan_to_num(residual),
                                  minlength=len(self.cluster_group))
        squares = np.bincount(self.cluster_group, weights=per_cluster ** 2, minlength=self.size)
        m = self.clusters
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = np.where((m > 1) & (bottom > 0), m / (m - 1.0) * squares, np.nan)
        return (pd.Series(estimate, index=self.index),
                pd.Series(np.sqrt(variance), index=self.index))


def locality_memberships(record_localities: pd.Series,
                         parents: Mapping[str, str | None]) -> pd.DataFrame:
    """Return (record position, locality) for the record's own locality and every ancestor."""
    position = np.arange(len(record_localities))
    codes = record_localities.to_numpy(dtype=object)
    parts = []
    seen = 0
    while True:
        known = np.array([c is not None and c == c for c in codes], dtype=bool)
        if not known.any() or seen > 12:
            break
        parts.append(pd.DataFrame({"record": position[known], "locality": codes[known]}))
        codes = np.array([parents.get(c) if k else None for c, k in zip(codes, known,
                                                                         strict=True)],
                         dtype=object)
        seen += 1
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"record": [], "locality": []})
