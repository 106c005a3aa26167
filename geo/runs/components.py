"""The raw component table of a run: exposure, conflict, access, indicators, per locality.

Also the per-locality details computed beside it (subgroup gaps and trends), which do not
depend on the scores.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geo.analysis import access, conflict, exposure
from geo.analysis.conflict import local_metric_crs
from geo.analysis.coverage import country_keys, finest_localities, population_with_children
from geo.analysis.exposure_store import ExposureStore, StoredExposure, start_exposure
from geo.analysis.methodology import Methodology, load_default_methodology
from geo.analysis.overlay import count_by_locality, points_in_localities
from geo.ingest._vocabulary import INSTITUTION_FAMILIES
from geo.runs import cells
from geo.runs.inputs import RunInputs
from geo.runs.subgroups import SUBGROUP_SHARE_INDICATOR, add_subgroups_and_trends
from geo.settings import Settings

Progress = Callable[[float, str], None]



def build_raw_table(
    inputs: RunInputs, parameters: dict[str, Any], executor: cf.Executor | None,
    report: Progress, timings: dict[str, float], settings: Settings,
    facts: dict[str, Any] | None = None, methodology: Methodology | None = None,
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, Any]]:
    """Return the raw component table (one row per locality code), details and gaps.

    `gaps` maps a source to why its values are missing: a sentence for the whole run, or a
    Series of sentences per locality (None where the value is there).

    The exposure chunks run in worker processes while this process computes conflict,
    access, indicators and the subgroup gaps and trends (details only, independent of
    the scores), so those steps overlap the longest one instead of following it on one
    core. Timings are each step's own wall clock, so they overlap. `facts` receives how
    many hazard layers' exposure was reused from an earlier run.
    """
    methodology = methodology or load_default_methodology()
    codes = inputs.localities.index
    details: dict[str, dict[str, Any]] = {code: {} for code in codes}
    gaps: dict[str, Any] = {}
    context = RunContext.of(inputs)
    step = time.perf_counter()
    pending = _start_exposure(inputs, executor, report, settings)
    if facts is not None:
        facts["exposure_layers_reused"] = pending.reused if pending is not None else 0
    others = pd.DataFrame(index=codes)
    try:
        _other_columns(inputs, context, others, details, gaps, parameters, report, timings,
                       methodology)
        report(0.22, "subgroups and trends")
        other_step = time.perf_counter()
        _add_subgroups_and_trends(inputs, details, settings, methodology)
        timings["subgroups"] = time.perf_counter() - other_step
        if inputs.hazards and not inputs.institutions.empty:
            # samples the rasters at the institutions while the exposure chunks run
            _institution_exposure_column(inputs, context, others, gaps)
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    raw = pd.DataFrame(index=codes)
    if pending is not None:
        report(0.25, "exposure: waiting for the last chunks")
        _hazard_columns(inputs, pending.result(), raw, details, gaps)
    timings["exposure"] = time.perf_counter() - step
    # hazard columns first, as when the steps ran one after another
    return pd.concat([raw, others], axis=1), details, gaps


@dataclass
class RunContext:
    """Facts about the localities every step needs: country, finest level, population."""

    localities: gpd.GeoDataFrame
    country: pd.Series
    finest: pd.Series
    population: pd.Series

    @classmethod
    def of(cls, inputs: RunInputs) -> RunContext:
        """Return the context of a run's localities (population filled up from children)."""
        localities = inputs.localities
        population = population_with_children(localities)
        located = localities.set_geometry("geom").assign(population=population)
        return cls(located, country_keys(localities), finest_localities(localities), population)

    def per_locality(self, values: pd.Series | np.ndarray, reason: str) -> pd.Series:
        """Return reason where values are missing, None elsewhere (a gaps Series)."""
        missing = pd.isna(pd.Series(np.asarray(values), index=self.localities.index))
        return pd.Series(np.where(missing, reason, None), index=self.localities.index,
                         dtype=object)

    def countries_with(self, points: gpd.GeoDataFrame) -> set[str]:
        """Return the countries in which at least one of the points lies."""
        finest = self.localities[self.finest.to_numpy()]
        pairs = points_in_localities(points.set_geometry("geom"), finest)
        return set(self.country.reindex(finest.index[pairs["locality"].to_numpy()]))

    def name(self, country: str) -> str:
        """Return how a country key reads in a sentence."""
        return f"country {country}" if country else "these localities"


def _other_columns(inputs: RunInputs, context: RunContext, raw: pd.DataFrame,
                   details: dict[str, dict[str, Any]], gaps: dict[str, Any],
                   parameters: dict[str, Any], report: Progress, timings: dict[str, float],
                   methodology: Methodology) -> None:
    report(0.1, "conflict")
    step = time.perf_counter()
    _conflict_columns(inputs, context, raw, details, gaps, parameters)
    timings["conflict"] = time.perf_counter() - step
    report(0.15, "service access")
    step = time.perf_counter()
    _access_columns(inputs, context, raw, details, gaps, methodology)
    timings["access"] = time.perf_counter() - step
    report(0.2, "indicators")
    step = time.perf_counter()
    _indicator_columns(inputs, context, raw, gaps)
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


# Per hazard kind, the raw measures a methodology may use (the worst layer of the kind).
HAZARD_MEASURES = ("people_exposed_share", "share_area_over", "mean", "max", "p90")


def _hazard_columns(inputs: RunInputs, tables: list[pd.DataFrame], raw: pd.DataFrame,
                    details: dict[str, dict[str, Any]], gaps: dict[str, Any]) -> None:
    population_path = inputs.population.path if inputs.population else None
    shares = _subgroup_shares(inputs)
    by_kind: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    for layer, table in zip(inputs.hazards, tables, strict=True):
        measures = table.copy()
        if not population_path:
            # without people, the share of the area over the threshold stands in
            measures["people_exposed_share"] = table["share_area_over"]
        by_kind.setdefault(layer.kind, []).append((layer.name, measures))
        parent_levels = exposure.aggregate_levels_to_parents(
            table["hazard_level"], inputs.localities["parent_code"])
        by_subgroup = (exposure.exposed_by_subgroup(table["people_exposed"], shares)
                       if not shares.empty and population_path else pd.DataFrame())
        entries = cells.records(table[["mean", "max", "p90", "share_area_over", "people",
                                  "people_covered", "people_exposed",
                                  "people_exposed_share"]])
        own = [v if isinstance(v, str) else None for v in table["hazard_level"].tolist()]
        worst = [v if isinstance(v, str) else None for v in
                 parent_levels.reindex(table.index).astype(object).tolist()]
        split = (dict(zip(by_subgroup.index, cells.records(by_subgroup, drop_missing=True),
                          strict=True)) if not by_subgroup.empty else {})
        fixed = {"version": layer.version, "kind": layer.kind, "unit": layer.unit,
                 "threshold": layer.exposure_threshold()}
        no_cells = table["mean"].isna().tolist()
        for code, entry, level, parent, empty in zip(table.index, entries, own, worst,
                                                     no_cells, strict=True):
            # A parent is rated by its worst child (ThinkHazard! style), when it has children.
            entry["level"] = parent or level
            entry.update(fixed)
            if empty:
                entry["no_data"] = "the layer has no valid cells over this locality"
            if code in split:
                entry["people_exposed_by_subgroup"] = split[code]
            details[code].setdefault("hazards", {})[layer.name] = entry
    for kind, layers in by_kind.items():
        names = ", ".join(name for name, _ in layers)
        for measure in HAZARD_MEASURES:
            source = f"hazard.{kind}.{measure}"
            # the worst layer of the kind where several are loaded; NaN only where none
            # of them has data over the locality
            raw[source] = pd.concat([t[measure] for _, t in layers], axis=1).max(axis=1)
            gaps[source] = pd.Series(
                np.where(raw[source].isna(), f"no data: the {kind} layer ({names}) has no "
                         "valid cells over this locality", None), index=raw.index, dtype=object)


def _subgroup_shares(inputs: RunInputs) -> pd.DataFrame:
    obs = inputs.observations
    shares = obs[(obs["indicator"] == SUBGROUP_SHARE_INDICATOR) & (obs["subgroup"] != "all")]
    if shares.empty:
        return pd.DataFrame()
    latest = shares.sort_values("period").drop_duplicates(["locality", "subgroup"], keep="last")
    table = latest.pivot(index="locality", columns="subgroup", values="value").astype(float)
    # Shares may be given in percent; the split needs fractions.
    return table / 100.0 if (table.max().max() or 0) > 1.0 else table


def _conflict_columns(inputs: RunInputs, context: RunContext, raw: pd.DataFrame,
                      details: dict[str, dict[str, Any]], gaps: dict[str, Any],
                      parameters: dict[str, Any]) -> None:
    if inputs.events.empty:
        return
    window_end = parameters.get("window_end")
    dates = pd.to_datetime(inputs.events["event_date"])
    end = date.fromisoformat(window_end) if window_end else dates.max().date()
    months = int(parameters.get("window_months", 12))
    table = conflict.conflict_by_locality(
        context.localities, inputs.events.set_geometry("geom"),
        window_end=end, window_months=months, band_km=float(parameters.get("band_km", 25)),
    )
    population = context.population
    # The trend as a rate difference, never infinite (a relative change from 0 would be).
    table["events_per_100k_change"] = (
        (table["events"] - table["events_prev"]) / population.where(population > 0) * 100_000)
    # Zero events is a fact only where an event layer covers the place and the time: a
    # country with no event at all, a window after the newest event or a previous window
    # before the first one is "no data", not "peace".
    prev_start, start, stop = conflict.window_bounds(end, months)
    spans = conflict.event_spans(context.localities[context.finest.to_numpy()],
                                 inputs.events.set_geometry("geom"), context.country)
    first = context.country.map(spans["first"])
    last = context.country.map(spans["last"])
    no_events = first.isna()
    window_after = last.notna() & (last <= start)
    prev_before = first.notna() & (first > start)
    why_now = pd.Series(None, index=raw.index, dtype=object)
    why_now[window_after] = (f"no data: the conflict window ({start.date()} to {stop.date()}) "
                             "lies after the newest event loaded for this country")
    why_now[no_events] = "no data: no conflict event is loaded for this country"
    why_prev = why_now.copy()
    why_prev[prev_before & why_prev.isna()] = (
        f"no data: no event is loaded before {start.date()} for this country, so there is "
        "no previous window to compare")
    no_people = population.isna()
    for column in ("events_per_100k", "fatalities_per_100k"):
        table[column] = table[column].where(why_now.isna())
    table["events_per_100k_change"] = table["events_per_100k_change"].where(why_prev.isna())
    for source, column, why in (
            ("conflict.events_per_100k", "events_per_100k", why_now),
            ("conflict.fatalities_per_100k", "fatalities_per_100k", why_now),
            ("conflict.events_per_100k_change", "events_per_100k_change", why_prev),
            ("conflict.events", "events", why_now),
            ("conflict.fatalities", "fatalities", why_now),
            ("conflict.events_in_band", "events_in_band", why_now)):
        values = table[column].astype(float).where(why.isna())
        raw[source] = values
        reason = why.copy()
        if column.endswith(("_100k", "_change")):
            reason[no_people & reason.isna()] = "no data: no population for this locality"
        gaps[source] = reason.where(values.isna(), None)
    for code, entry, why in zip(table.index, cells.records(table), why_now.tolist(), strict=True):
        entry = entry | {"window_end": end.isoformat()}
        if isinstance(why, str):
            entry = {"no_data": why, "window_end": end.isoformat()}
        details[code]["conflict"] = entry


def _access_columns(inputs: RunInputs, context: RunContext, raw: pd.DataFrame,
                    details: dict[str, dict[str, Any]], gaps: dict[str, Any],
                    methodology: Methodology) -> None:
    if inputs.institutions.empty:
        return
    population_path = inputs.population.path if inputs.population else None
    localities = context.localities
    # People sample points are the same for every family: compute them once per run.
    metric = local_metric_crs(localities)
    points = access.population_points_by_level(localities, population_path, context.finest,
                                               metric_crs=metric)
    # one k-d tree of the people points serves the 2SFCA of every family
    people = (metric, points, cKDTree(points[["x", "y"]].to_numpy(dtype=float)))
    settings = methodology.access
    institutions = inputs.institutions.set_geometry("geom")
    for family, spec in settings.families.items():
        facilities = institutions[institutions["type"].isin(INSTITUTION_FAMILIES[family])]
        if facilities.empty:
            continue
        table = access_table(localities, facilities, people, spec.catchment_km,
                             decay=settings.decay,
                             sigma_km=spec.catchment_km * settings.gaussian_sigma_share)
        # A family's inventory covers the countries it has a facility in; elsewhere the
        # distance to a facility across the border is no measure of the place: no data.
        covered = context.country.isin(context.countries_with(facilities))
        reason = pd.Series(np.where(covered, None, f"no data: no {family} facility is loaded "
                                    "for this country"), index=raw.index, dtype=object)
        reason[reason.isna() & context.population.isna()] = (
            "no data: no population for this locality")
        for column in ("distance_km", "coverage_share", "sfca", "per_10k"):
            values = table[column].where(covered)
            raw[f"access.{family}.{column}"] = values
            gaps[f"access.{family}.{column}"] = reason.where(values.isna(), None).fillna(
                pd.Series(np.where(values.isna(), "no data: nobody lives here according to "
                                   "the population data", None), index=raw.index))
        for code, entry, ok in zip(table.index, cells.records(table), covered.tolist(),
                                   strict=True):
            details[code].setdefault("access", {})[family] = entry if ok else {
                "no_data": f"no {family} facility is loaded for this country"}


def access_table(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                 people: tuple[Any, pd.DataFrame] | tuple[Any, pd.DataFrame, cKDTree],
                 radius_km: float, *, decay: str = "none", sigma_km: float | None = None
                 ) -> pd.DataFrame:
    """Return distance_km, coverage_share, per_10k, sfca and count per locality for one family.

    people: (metric CRS, population points) and optionally a k-d tree of those points.
    """
    radius_m = radius_km * 1000
    # every facility counts one: capacities of different kinds (beds, staff, none) do not
    # add up, and one left blank is unknown, not zero
    capacity = None
    metric, points = people[0], people[1]
    tree = people[2] if len(people) > 2 else None
    distance, coverage = access.distance_and_coverage(localities, facilities, radius_m,
                                                      metric_crs=metric, points=points)
    table = pd.DataFrame({
        "distance_km": distance / 1000,
        "coverage_share": coverage,
        "per_10k": access.facilities_per_10k(localities, facilities),
        # 2SFCA in facilities per 10,000 people, a readable scale.
        "sfca": access.two_step_fca_by_locality(
            localities, facilities, radius_m, capacity_column=capacity, metric_crs=metric,
            points=points, demand_tree=tree, decay=decay,  # type: ignore[arg-type]
            sigma_m=None if sigma_km is None else sigma_km * 1000) * 10_000,
    })
    table["count"] = access.facilities_inside(localities, facilities)
    return table


def _institution_exposure_column(inputs: RunInputs, context: RunContext, raw: pd.DataFrame,
                                 gaps: dict[str, Any]) -> None:
    """Add the share of a locality's institutions standing where a hazard is over threshold.

    Only institutions where some hazard layer has data count: one off every raster is
    unknown, not dry. NaN where a locality has none of those.
    """
    institutions = inputs.institutions.set_geometry("geom")
    flooded = np.zeros(len(institutions), dtype=bool)
    known = np.zeros(len(institutions), dtype=bool)
    # one thread per layer: the time goes into decompressing raster blocks, which GDAL
    # does without the GIL, so layers sample side by side on the machine's cores
    with cf.ThreadPoolExecutor(min(len(inputs.hazards), os.cpu_count() or 1)) as pool:
        exposed = pool.map(lambda layer: access.institutions_exposed(
            institutions, layer.path, layer.exposure_threshold(), polarity=layer.polarity),
            inputs.hazards)
        for flags in exposed:
            values = np.asarray(flags, dtype=float)
            known |= ~np.isnan(values)
            flooded |= np.nan_to_num(values, nan=0.0) > 0
    pairs = points_in_localities(institutions, context.localities)
    n = len(context.localities)
    in_known = count_by_locality(pairs, n, known.astype(float))
    in_hazard = count_by_locality(pairs, n, (flooded & known).astype(float))
    anywhere = count_by_locality(pairs, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(in_known > 0, in_hazard / in_known, np.nan)
    source = "access.institutions.exposed_share"
    raw[source] = pd.Series(share, index=raw.index)
    gaps[source] = pd.Series(np.where(
        anywhere == 0, "no data: no institution is loaded inside this locality",
        np.where(in_known == 0, "no data: no institution here stands where a hazard layer "
                 "has data", None)), index=raw.index, dtype=object)


# Indicator units read as shares of 1; goalposts of indicators are in percent.
SHARE_UNITS = {"share", "proportion", "fraction", "ratio"}


def _indicator_columns(inputs: RunInputs, context: RunContext, raw: pd.DataFrame,
                       gaps: dict[str, Any]) -> None:
    obs = inputs.observations
    overall = obs[obs["subgroup"] == "all"]
    if overall.empty:
        return
    latest = overall.sort_values("period").drop_duplicates(["locality", "indicator"], keep="last")
    table = latest.pivot(index="locality", columns="indicator", values="value").astype(float)
    table = aggregate_up(table, context.localities)
    units = inputs.indicators["unit"].to_dict() if "unit" in inputs.indicators else {}
    for indicator in table.columns:
        values = table[indicator]
        if str(units.get(indicator) or "").strip().lower() in SHARE_UNITS:
            values = values * 100.0  # read in percent, like the goalposts
        source = f"indicator.{indicator}"
        raw[source] = values
        gaps[source] = context.per_locality(
            values, f"no data: no survey observation of '{indicator}' for this locality "
            "or its sub-units")


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
