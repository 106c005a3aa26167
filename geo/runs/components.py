"""The raw component table of a run: exposure, conflict, access, indicators, per locality.

Also the per-locality details computed beside it (subgroup gaps and trends), which do not
depend on the scores.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geo.analysis import access, conflict, exposure
from geo.analysis.conflict import local_metric_crs
from geo.analysis.exposure_store import ExposureStore, StoredExposure, start_exposure
from geo.analysis.methodology import Methodology
from geo.runs import cells
from geo.runs.inputs import RunInputs
from geo.runs.subgroups import SUBGROUP_SHARE_INDICATOR, add_subgroups_and_trends
from geo.settings import Settings

Progress = Callable[[float, str], None]

# Institution types pooled into the service families the default methodology scores.
ACCESS_FAMILIES: dict[str, tuple[str, ...]] = {
    "health_centre": ("health_centre", "hospital", "clinic", "health_post"),
    "school": ("school_primary", "school_secondary", "school_vocational"),
}
COVERAGE_RADIUS_KM = {"health_centre": 5.0, "school": 3.0}


def build_raw_table(
    inputs: RunInputs, parameters: dict[str, Any], executor: cf.Executor | None,
    report: Progress, timings: dict[str, float], settings: Settings,
    facts: dict[str, Any] | None = None, methodology: Methodology | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Return the raw component table (one row per locality code) and per-locality details.

    The exposure chunks run in worker processes while this process computes conflict,
    access, indicators and the subgroup gaps and trends (details only, independent of
    the scores), so those steps overlap the longest one instead of following it on one
    core. Timings are each step's own wall clock, so they overlap. `facts` receives how
    many hazard layers' exposure was reused from an earlier run.
    """
    codes = inputs.localities.index
    details: dict[str, dict[str, Any]] = {code: {} for code in codes}
    step = time.perf_counter()
    pending = _start_exposure(inputs, executor, report, settings)
    if facts is not None:
        facts["exposure_layers_reused"] = pending.reused if pending is not None else 0
    others = pd.DataFrame(index=codes)
    try:
        _other_columns(inputs, others, details, parameters, report, timings)
        report(0.22, "subgroups and trends")
        other_step = time.perf_counter()
        _add_subgroups_and_trends(inputs, details, settings, methodology)
        timings["subgroups"] = time.perf_counter() - other_step
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    raw = pd.DataFrame(index=codes)
    if pending is not None:
        report(0.25, "exposure: waiting for the last chunks")
        _hazard_columns(inputs, pending.result(), raw, details)
    timings["exposure"] = time.perf_counter() - step
    # hazard columns first, as when the steps ran one after another
    return pd.concat([raw, others], axis=1), details


def _other_columns(inputs: RunInputs, raw: pd.DataFrame, details: dict[str, dict[str, Any]],
                   parameters: dict[str, Any], report: Progress,
                   timings: dict[str, float]) -> None:
    report(0.1, "conflict")
    step = time.perf_counter()
    _conflict_columns(inputs, raw, details, parameters)
    timings["conflict"] = time.perf_counter() - step
    report(0.15, "service access")
    step = time.perf_counter()
    _access_columns(inputs, raw, details)
    timings["access"] = time.perf_counter() - step
    report(0.2, "indicators")
    step = time.perf_counter()
    _indicator_columns(inputs, raw)
    timings["indicators"] = time.perf_counter() - step


def _start_exposure(inputs: RunInputs, executor: cf.Executor | None, report: Progress,
                    settings: Settings) -> StoredExposure | None:
    if not inputs.hazards:
        return None
    report(0.05, "exposure to " + ", ".join(layer.name for layer in inputs.hazards))
    localities = inputs.localities[["geom"]].set_geometry("geom")
    # Every missing layer in one pass over the localities (coverage computed once per grid);
    # layers whose inputs did not change since an earlier run come from the store.
    started = start_exposure(
        localities,
        [exposure.HazardLayer(layer.path, layer.exposure_threshold(), layer.polarity,
                              layer.level_thresholds, layer.level_share)
         for layer in inputs.hazards],
        population_path=inputs.population.path if inputs.population else None,
        store=ExposureStore(settings.storage.exposure_cache_dir), executor=executor)
    if started.reused:
        report(0.05, f"exposure: {started.reused} of {len(inputs.hazards)} layer(s) unchanged "
               "since an earlier run, reused")
    return started


def _hazard_columns(inputs: RunInputs, tables: list[pd.DataFrame], raw: pd.DataFrame,
                    details: dict[str, dict[str, Any]]) -> None:
    population_path = inputs.population.path if inputs.population else None
    shares = _subgroup_shares(inputs)
    by_kind: dict[str, list[pd.Series]] = {}
    for layer, table in zip(inputs.hazards, tables, strict=True):
        share = table["people_exposed_share"] if population_path else table["share_area_over"]
        by_kind.setdefault(layer.kind, []).append(share)
        parent_levels = exposure.aggregate_levels_to_parents(
            table["hazard_level"], inputs.localities["parent_code"])
        by_subgroup = (exposure.exposed_by_subgroup(table["people_exposed"], shares)
                       if not shares.empty and population_path else pd.DataFrame())
        entries = cells.records(table[["mean", "max", "p90", "share_area_over", "people",
                                  "people_exposed", "people_exposed_share"]])
        own = [v if isinstance(v, str) else None for v in table["hazard_level"].tolist()]
        worst = [v if isinstance(v, str) else None for v in
                 parent_levels.reindex(table.index).astype(object).tolist()]
        split = (dict(zip(by_subgroup.index, cells.records(by_subgroup, drop_missing=True),
                          strict=True)) if not by_subgroup.empty else {})
        fixed = {"version": layer.version, "kind": layer.kind, "unit": layer.unit,
                 "threshold": layer.exposure_threshold()}
        for code, entry, level, parent in zip(table.index, entries, own, worst, strict=True):
            # A parent is rated by its worst child (ThinkHazard! style), when it has children.
            entry["level"] = parent or level
            entry.update(fixed)
            if code in split:
                entry["people_exposed_by_subgroup"] = split[code]
            details[code].setdefault("hazards", {})[layer.name] = entry
    for kind, series in by_kind.items():
        raw[f"hazard.{kind}.people_exposed_share"] = pd.concat(series, axis=1).max(axis=1)


def _subgroup_shares(inputs: RunInputs) -> pd.DataFrame:
    obs = inputs.observations
    shares = obs[(obs["indicator"] == SUBGROUP_SHARE_INDICATOR) & (obs["subgroup"] != "all")]
    if shares.empty:
        return pd.DataFrame()
    latest = shares.sort_values("period").drop_duplicates(["locality", "subgroup"], keep="last")
    table = latest.pivot(index="locality", columns="subgroup", values="value").astype(float)
    # Shares may be given in percent; the split needs fractions.
    return table / 100.0 if (table.max().max() or 0) > 1.0 else table


def _conflict_columns(inputs: RunInputs, raw: pd.DataFrame,
                      details: dict[str, dict[str, Any]], parameters: dict[str, Any]) -> None:
    if inputs.events.empty:
        return
    window_end = parameters.get("window_end")
    end = (date.fromisoformat(window_end) if window_end
           else pd.to_datetime(inputs.events["event_date"]).max().date())
    table = conflict.conflict_by_locality(
        inputs.localities.set_geometry("geom"), inputs.events.set_geometry("geom"),
        window_end=end, window_months=int(parameters.get("window_months", 12)),
        band_km=float(parameters.get("band_km", 25)),
    )
    population = inputs.localities["population"].astype(float)
    # The trend as a rate difference, never infinite (a relative change from 0 would be).
    table["events_per_100k_change"] = (
        (table["events"] - table["events_prev"]) / population.where(population > 0) * 100_000)
    raw["conflict.events_per_100k"] = table["events_per_100k"]
    raw["conflict.fatalities_per_100k"] = table["fatalities_per_100k"]
    raw["conflict.events_per_100k_change"] = table["events_per_100k_change"]
    for code, entry in zip(table.index, cells.records(table), strict=True):
        details[code]["conflict"] = entry | {"window_end": end.isoformat()}


def _access_columns(inputs: RunInputs, raw: pd.DataFrame,
                    details: dict[str, dict[str, Any]]) -> None:
    if inputs.institutions.empty:
        return
    population_path = inputs.population.path if inputs.population else None
    localities = inputs.localities.set_geometry("geom")
    # People sample points are the same for every family: compute them once per run.
    metric = local_metric_crs(localities)
    points = access.population_points(localities, population_path, metric_crs=metric)
    # one k-d tree of the people points serves the 2SFCA of every family
    people = (metric, points, cKDTree(points[["x", "y"]].to_numpy(dtype=float)))
    for family, types in ACCESS_FAMILIES.items():
        facilities = inputs.institutions[inputs.institutions["type"].isin(types)]
        if facilities.empty:
            continue
        table = access_table(localities, facilities.set_geometry("geom"), people,
                             COVERAGE_RADIUS_KM[family])
        for column in ("distance_km", "coverage_share", "sfca"):
            raw[f"access.{family}.{column}"] = table[column]
        for code, entry in zip(table.index, cells.records(table), strict=True):
            details[code].setdefault("access", {})[family] = entry
    exposed = _institutions_exposed(inputs)
    if exposed is not None:
        raw["access.institutions.exposed_share"] = exposed


def access_table(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                 people: tuple[Any, pd.DataFrame] | tuple[Any, pd.DataFrame, cKDTree],
                 radius_km: float) -> pd.DataFrame:
    """Return distance_km, coverage_share, per_10k, sfca and count per locality for one family.

    people: (metric CRS, population points) and optionally a k-d tree of those points.
    """
    radius_m = radius_km * 1000
    capacity = "capacity" if facilities["capacity"].notna().any() else None
    metric, points = people[0], people[1]
    tree = people[2] if len(people) > 2 else None
    distance, coverage = access.distance_and_coverage(localities, facilities, radius_m,
                                                      metric_crs=metric, points=points)
    table = pd.DataFrame({
        "distance_km": distance / 1000,
        "coverage_share": coverage,
        "per_10k": access.facilities_per_10k(localities, facilities),
        # 2SFCA in facilities (or capacity units) per 10,000 people, a readable scale.
        "sfca": access.two_step_fca_by_locality(
            localities, facilities, radius_m, capacity_column=capacity, metric_crs=metric,
            points=points, demand_tree=tree) * 10_000,
    })
    inside = gpd.sjoin(facilities[["geom"]].set_geometry("geom"),
                       localities[["geom"]].reset_index(), predicate="within")
    table["count"] = inside.groupby("code").size().reindex(table.index, fill_value=0)
    return table


def _institutions_exposed(inputs: RunInputs) -> pd.Series | None:
    if not inputs.hazards:
        return None
    institutions = inputs.institutions.set_geometry("geom")
    flooded = np.zeros(len(institutions), dtype=bool)
    # one thread per layer: the time goes into decompressing raster blocks, which GDAL
    # does without the GIL, so layers sample side by side on the machine's cores
    with cf.ThreadPoolExecutor(min(len(inputs.hazards), os.cpu_count() or 1)) as pool:
        exposed = pool.map(lambda layer: access.institutions_exposed(
            institutions, layer.path, layer.exposure_threshold(), polarity=layer.polarity),
            inputs.hazards)
        for flags in exposed:
            flooded |= np.asarray(flags)
    located = gpd.sjoin(institutions.assign(exposed=flooded),
                        inputs.localities[["geom"]].set_geometry("geom").reset_index(),
                        predicate="within")
    return located.groupby("code")["exposed"].mean().reindex(inputs.localities.index)


def _indicator_columns(inputs: RunInputs, raw: pd.DataFrame) -> None:
    obs = inputs.observations
    overall = obs[obs["subgroup"] == "all"]
    if overall.empty:
        return
    latest = overall.sort_values("period").drop_duplicates(["locality", "indicator"], keep="last")
    table = latest.pivot(index="locality", columns="indicator", values="value").astype(float)
    table = aggregate_up(table, inputs.localities)
    for indicator in table.columns:
        raw[f"indicator.{indicator}"] = table[indicator]


def aggregate_up(values: pd.DataFrame, localities: pd.DataFrame) -> pd.DataFrame:
    """Fill parents without their own value by the population-weighted mean of their children."""
    result = values.reindex(localities.index)
    population = localities["population"].astype(float)
    for level in sorted(localities["level"].unique(), reverse=True)[1:]:
        children = localities[localities["level"] > level]
        for column in result.columns:
            child_values = result.loc[children.index, column]
            weights = population.loc[children.index].fillna(1.0).where(child_values.notna())
            weighted = (child_values * weights).groupby(children["parent_code"]).sum(min_count=1)
            total = weights.groupby(children["parent_code"]).sum(min_count=1)
            parent_mean = (weighted / total.replace(0, np.nan)).dropna()
            parents = localities.index[localities["level"] == level]
            fill = parent_mean.reindex(parents)
            result.loc[parents, column] = result.loc[parents, column].fillna(fill)
    return result


def _add_subgroups_and_trends(inputs: RunInputs, details: dict[str, dict[str, Any]],
                              settings: Settings, methodology: Methodology | None) -> None:
    # Who is behind, trends beyond noise, Alkire-Foster and compounded groups: geo.runs.subgroups
    add_subgroups_and_trends(inputs, details, settings, methodology)
