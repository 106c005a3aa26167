"""Score runs: compute every figure of the analysis over current data and store it immutably.

A run reads one snapshot (`run_inputs.load_inputs`), turns it into the raw component table
(exposure, conflict, access, indicators), scores each admin level separately (scaling is
relative to comparable units), adds hotspots, quadrants, rank intervals, subgroup gaps and
trends, and writes one `score_results` row per locality. Completed runs never change.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing as mp
import os
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from sqlalchemy import Engine, text

from geo.analysis import access, conflict, exposure
from geo.analysis.conflict import local_metric_crs
from geo.analysis.disaggregation import furthest_behind
from geo.analysis.exposure_store import ExposureStore, StoredExposure, start_exposure
from geo.analysis.hotspots import getis_ord_hotspots
from geo.analysis.methodology import Methodology, load_default_methodology, parse_methodology
from geo.analysis.monitoring import change_between_periods
from geo.analysis.robustness import weight_robustness
from geo.analysis.scoring import ScoreTable, need_vulnerability_quadrant, score_localities
from geo.errors import NotFoundError, ValidationError
from geo.jobs import create_job, fail_job, run_job
from geo.run_inputs import RunInputs, load_inputs
from geo.settings import Settings

log = logging.getLogger(__name__)
Progress = Callable[[float, str], None]

# Institution types pooled into the service families the default methodology scores.
ACCESS_FAMILIES: dict[str, tuple[str, ...]] = {
    "health_centre": ("health_centre", "hospital", "clinic", "health_post"),
    "school": ("school_primary", "school_secondary", "school_vocational"),
}
COVERAGE_RADIUS_KM = {"health_centre": 5.0, "school": 3.0}
SUBGROUP_SHARE_INDICATOR = "population_share"
MIN_LOCALITIES_FOR_HOTSPOTS = 8
# From this many localities in a level, Gi* runs beside the rest of the scoring.
HOTSPOTS_IN_BACKGROUND_FROM = 2000


# -- methodologies --------------------------------------------------------------------------
def ensure_methodology(engine: Engine, document: dict[str, Any] | None = None) -> int:
    """Store a methodology document (default: the shipped one) as a new version if it changed."""
    methodology = parse_methodology(document) if document else load_default_methodology()
    body = methodology.model_dump(mode="json")
    with engine.begin() as conn:
        latest = conn.execute(text(
            "SELECT id, version, document FROM methodologies WHERE name = :name "
            "ORDER BY version DESC LIMIT 1"), {"name": methodology.name}).first()
        if latest is not None and latest.document == body:
            return int(latest.id)
        version = (latest.version + 1) if latest is not None else 1
        return int(conn.execute(text(
            "INSERT INTO methodologies (name, version, document) VALUES (:name, :version, "
            "CAST(:doc AS jsonb)) RETURNING id"),
            {"name": methodology.name, "version": version, "doc": json.dumps(body)},
        ).scalar_one())


# -- run lifecycle --------------------------------------------------------------------------
def start_score_run(engine: Engine, methodology_id: int | None = None,
                    parameters: dict[str, Any] | None = None) -> tuple[int, uuid.UUID]:
    """Record a queued run and its job; return (run id, job id)."""
    methodology_id = methodology_id or ensure_methodology(engine)
    job_id = create_job(engine, "score", {"methodology_id": methodology_id,
                                          **(parameters or {})}, lock_key="score")
    try:
        with engine.begin() as conn:
            found = conn.execute(text("SELECT 1 FROM methodologies WHERE id = :id"),
                                 {"id": methodology_id}).scalar()
            if not found:
                raise NotFoundError(f"no methodology with id {methodology_id}")
            run_id = int(conn.execute(text(
                "INSERT INTO score_runs (methodology_id, status, parameters, data_versions, "
                "summary, job_id) VALUES (:m, 'queued', CAST(:p AS jsonb), '{}', '{}', :job) "
                "RETURNING id"),
                {"m": methodology_id, "p": json.dumps(parameters or {}), "job": job_id},
            ).scalar_one())
    except BaseException as exc:
        # The job must not stay queued, or it would hold the run lock for good.
        fail_job(engine, job_id, str(getattr(exc, "message", exc)))
        raise
    return run_id, job_id


def execute_score_run(
    engine: Engine, settings: Settings, run_id: int, job_id: uuid.UUID,
    executor: cf.Executor | None = None,
    listeners: list[Callable[[float, str], None]] | None = None,
) -> dict[str, Any]:
    """Run the whole analysis as job `job_id` and store run `run_id`; return its summary."""
    def work(report: Progress) -> dict[str, Any]:
        _set_run(engine, run_id, status="running")
        try:
            summary = compute_and_store(engine, settings, run_id, report, executor)
        except BaseException:
            _set_run(engine, run_id, status="failed")
            raise
        return {"run_id": run_id, **summary}

    return run_job(engine, job_id, work, listeners)


def _set_run(engine: Engine, run_id: int, **values: Any) -> None:
    assignments = ", ".join(f"{key} = :{key}" for key in values)
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE score_runs SET {assignments} WHERE id = :id"),
                     {**values, "id": run_id})


def compute_and_store(engine: Engine, settings: Settings, run_id: int, report: Progress,
                      executor: cf.Executor | None = None) -> dict[str, Any]:
    """Compute every figure for run `run_id` and store them; return the run summary."""
    timings: dict[str, float] = {}
    facts: dict[str, Any] = {}
    started = time.perf_counter()
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT m.document, r.parameters FROM score_runs r JOIN methodologies m "
            "ON m.id = r.methodology_id WHERE r.id = :id"), {"id": run_id}).one()
    methodology = parse_methodology(row.document)
    parameters = dict(row.parameters or {})
    report(0.02, "reading the data")
    inputs = load_inputs(engine)
    if inputs.localities.empty:
        raise ValidationError("there are no localities to score; load boundaries first")
    timings["read"] = time.perf_counter() - started
    raw, details = build_raw_table(inputs, parameters, executor, report, timings, settings,
                                   facts)
    report(0.75, "scoring")
    step = time.perf_counter()
    results = score_all_levels(inputs, raw, methodology, details)
    timings["score"] = time.perf_counter() - step
    report(0.9, "storing the results")
    step = time.perf_counter()
    store_results(engine, run_id, results)
    timings["store"] = time.perf_counter() - step
    summary = _summary(inputs, results, timings) | facts
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE score_runs SET status = 'succeeded', completed_at = now(), "
            "data_versions = CAST(:dv AS jsonb), summary = CAST(:s AS jsonb) WHERE id = :id"),
            {"dv": json.dumps(inputs.data_versions()), "s": json.dumps(summary, default=str),
             "id": run_id})
    report(1.0, "done")
    return summary


# -- raw components -------------------------------------------------------------------------
def build_raw_table(
    inputs: RunInputs, parameters: dict[str, Any], executor: cf.Executor | None,
    report: Progress, timings: dict[str, float], settings: Settings,
    facts: dict[str, Any] | None = None,
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
        _add_subgroups_and_trends(inputs, details, settings)
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
        entries = _records(table[["mean", "max", "p90", "share_area_over", "people",
                                  "people_exposed", "people_exposed_share"]])
        own = [v if isinstance(v, str) else None for v in table["hazard_level"].tolist()]
        worst = [v if isinstance(v, str) else None for v in
                 parent_levels.reindex(table.index).astype(object).tolist()]
        split = (dict(zip(by_subgroup.index, _records(by_subgroup, drop_missing=True),
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
    for code, entry in zip(table.index, _records(table), strict=True):
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
        for code, entry in zip(table.index, _records(table), strict=True):
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


# -- scoring --------------------------------------------------------------------------------
def score_all_levels(inputs: RunInputs, raw: pd.DataFrame, methodology: Methodology,
                     details: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Return one row per locality with every stored figure, each level scored on its own.

    details: per-locality details from build_raw_table (hazards, conflict, access,
    subgroup gaps and trends), merged into each row's details.
    """
    frames = []
    for _level, members in inputs.localities.groupby("level"):
        codes = members.index
        table = score_localities(raw.loc[codes], methodology, parent=members["parent_code"])
        frames.append(_level_results(inputs, members, raw.loc[codes], table, methodology))
    results = pd.concat(frames)
    results["details"] = [details.get(code, {}) | extra for code, extra in
                          zip(results.index, results["details"], strict=True)]
    return results


def _level_results(inputs: RunInputs, members: gpd.GeoDataFrame, raw: pd.DataFrame,
                   table: ScoreTable, methodology: Methodology) -> pd.DataFrame:
    summary = table.summary
    out = pd.DataFrame(index=members.index)
    out["locality_id"] = members["id"]
    for column in ("composite", "completeness", "rank", "rank_in_parent"):
        out[column] = summary[column]
    out["stressed_dimensions"] = summary["stressed_count"]
    out["compounded"] = summary["compounded"]
    out["quadrant"] = need_vulnerability_quadrant(table.pillars)["quadrant"]
    hotspots = _start_hotspots(members, summary["composite"])
    robust = _robustness(table, methodology)
    out["rank_low"], out["rank_high"] = robust["rank_low"], robust["rank_high"]
    out["pillars"] = _records(table.pillars)
    out["dimensions"] = _dimension_records(table, methodology)
    out["components"] = _component_records(table, raw, methodology, inputs)
    stable = [_bool(v) for v in robust["top_decile_stable"].reindex(members.index).tolist()]
    out["details"] = [
        {"top_drivers": drivers, "top_decile_stable": flag}
        for drivers, flag in zip(_top_drivers(table.components.reindex(members.index)),
                                 stable, strict=True)]
    out["hotspot"] = hotspots()
    return out


def _start_hotspots(members: gpd.GeoDataFrame, composite: pd.Series
                    ) -> Callable[[], pd.Series]:
    """Start `_hotspots` and return a function that waits for its result.

    On many localities Gi* (999 permutations, a Python loop per locality inside esda)
    runs in a forked process while this one computes rank intervals and records, which
    take about as long; on few it runs here. The same code either way, so the same classes.
    """
    if len(members) < HOTSPOTS_IN_BACKGROUND_FROM:
        classes = _hotspots(members, composite)
        return lambda: classes
    context = mp.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    # fork: the child inherits members and composite, nothing is pickled on the way in
    child = context.Process(target=_send_hotspots, args=(send, members, composite),
                            daemon=True)
    child.start()
    send.close()

    def collect() -> pd.Series:
        try:
            result = receive.recv()
        except EOFError:
            raise RuntimeError("the hotspot process ended without a result") from None
        finally:
            receive.close()
            child.join()
        if isinstance(result, BaseException):
            raise result
        return result

    return collect


def _send_hotspots(send: Any, members: gpd.GeoDataFrame, composite: pd.Series) -> None:
    try:
        send.send(_hotspots(members, composite))
    except BaseException as exc:  # handed to the parent, which raises it
        send.send(exc)
    finally:
        send.close()


def _hotspots(members: gpd.GeoDataFrame, composite: pd.Series) -> pd.Series:
    scored = composite.notna()
    if scored.sum() < MIN_LOCALITIES_FOR_HOTSPOTS:
        return pd.Series(None, index=members.index, dtype=object)
    frame = members.loc[scored, ["geom"]].set_geometry("geom").assign(
        composite=composite[scored])
    classes = getis_ord_hotspots(frame, "composite")["hotspot_class"]
    return classes.reindex(members.index)


def _robustness(table: ScoreTable, methodology: Methodology) -> pd.DataFrame:
    empty = pd.DataFrame({"rank_low": np.nan, "rank_high": np.nan, "top_decile_stable": None},
                         index=table.components.index)
    if table.summary["composite"].notna().sum() < 2:
        return empty
    return weight_robustness(table.components, methodology).reindex(table.components.index)


def _numbers(frame: pd.DataFrame) -> np.ndarray:
    """Return frame as an object array of floats rounded like `_num`, None where missing."""
    columns = [pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
               for c in frame.columns]
    values = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    finite = np.isfinite(values)
    # Python's round, as `_num`: np.round (scale, rint, unscale) differs in about one
    # value in a million at 1e5 and above
    rounded = [round(v, 6) if ok else None
               for v, ok in zip(values.ravel().tolist(), finite.ravel().tolist(), strict=True)]
    return np.array(rounded, dtype=object).reshape(values.shape)


def _records(frame: pd.DataFrame, drop_missing: bool = False) -> list[dict[str, Any]]:
    """Return one {column: _num(value)} dict per row, built column-wise (no iterrows)."""
    names = [str(c) for c in frame.columns]
    rows = _numbers(frame).tolist()
    if drop_missing:
        return [{k: v for k, v in zip(names, row, strict=True) if v is not None}
                for row in rows]
    return [dict(zip(names, row, strict=True)) for row in rows]


def _bools(frame: pd.DataFrame) -> np.ndarray:
    """Return frame as an object array of bools, None where missing (like `_bool`)."""
    plain = frame.astype(object)
    return plain.where(frame.notna(), None).map(bool_or_none).to_numpy()


def bool_or_none(value: Any) -> bool | None:
    """Return value as a Python bool, None when missing."""
    return None if value is None else bool(value)


def _dimension_records(table: ScoreTable, methodology: Methodology) -> list[dict[str, Any]]:
    dims = list(table.dimensions.columns)
    meta = {d.id: d for d in methodology.dimensions}
    fixed = {dim: {"pillar": meta[dim].pillar, "human_security": meta[dim].human_security,
                   "label": meta[dim].label or meta[dim].human_security} for dim in dims}
    scores = _numbers(table.dimensions).tolist()
    stressed = _bools(table.stressed()[dims]).tolist()
    complete = _numbers(table.dimension_completeness[dims]).tolist()
    return [
        {dim: {"score": sc, "stressed": st, "completeness": co} | fixed[dim]
         for dim, sc, st, co in zip(dims, score_row, stressed_row, complete_row, strict=True)}
        for score_row, stressed_row, complete_row in zip(scores, stressed, complete,
                                                         strict=True)]


def _component_records(table: ScoreTable, raw: pd.DataFrame, methodology: Methodology,
                       inputs: RunInputs) -> list[dict[str, Any]]:
    layers = {f"hazard.{h.kind}.people_exposed_share": h for h in inputs.hazards}
    index = table.components.index
    components = methodology.components
    raw_values = _numbers(pd.DataFrame(
        {c.id: (raw[c.source].reindex(index) if c.source in raw.columns
                else pd.Series(np.nan, index=index)) for c in components}, index=index)).tolist()
    normalised = _numbers(table.components[[c.id for c in components]]).tolist()
    fixed = []
    for component in components:
        extra = {"unit": _unit(component.source), "source": component.source,
                 "dimension": component.dimension}
        if component.source in layers:
            extra.update(layer=layers[component.source].name,
                         version=layers[component.source].version)
        fixed.append((component.id, extra))
    return [
        {cid: {"raw": r, "normalised": nv} | extra
         for (cid, extra), r, nv in zip(fixed, raw_row, norm_row, strict=True)}
        for raw_row, norm_row in zip(raw_values, normalised, strict=True)]


def _unit(source: str) -> str:
    if source.endswith(("_share", "coverage_share")):
        return "share"
    if source.endswith("distance_km"):
        return "km"
    if source.endswith(("per_100k", "per_100k_change")):
        return "per 100k people"
    return "index" if source.endswith("sfca") else "value"


def _top_drivers(components: pd.DataFrame, count: int = 3) -> list[list[str]]:
    """Return per row the `count` highest components, NaN skipped, ties as pandas orders them.

    The steps of `row.dropna().sort_values(ascending=False)` (pandas' nargsort: reverse,
    quicksort, reverse), on plain arrays: the same order, ties included, 50x faster.
    """
    values = components.to_numpy(dtype=float, na_value=np.nan)
    names = np.array([str(c) for c in components.columns], dtype=object)
    drivers = []
    for row in values:
        present = np.flatnonzero(~np.isnan(row))[::-1]
        order = present[row[present].argsort(kind="quicksort")][::-1]
        drivers.append(names[order[:count]].tolist())
    return drivers


def _plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return frame's rows as dicts: floats like `_num`, everything else like `_plain`."""
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column.dtype):
            columns[name] = _numbers(column.to_frame())[:, 0]
        elif isinstance(column.dtype, np.dtype) and column.dtype.kind in "biu":
            columns[name] = np.array(column.tolist(), dtype=object)  # never missing
        elif isinstance(column.dtype, pd.StringDtype | pd.Int64Dtype | pd.BooleanDtype):
            # a string (int, bool) or missing: _plain would return the value, or None
            plain = np.array(column.tolist(), dtype=object)
            plain[column.isna().to_numpy()] = None
            columns[name] = plain
        else:
            columns[name] = np.array([_plain(v) for v in column.tolist()], dtype=object)
    names = [str(c) for c in frame.columns]
    rows = zip(*(columns[c] for c in frame.columns), strict=True) if names else []
    return [dict(zip(names, row, strict=True)) for row in rows]


def _grouped(keys: pd.Series, records: list[Any]) -> dict[Any, list[Any]]:
    """Return records grouped by key, each group in the original order."""
    groups: dict[Any, list[Any]] = {}
    for key, record in zip(keys.tolist(), records, strict=True):
        groups.setdefault(key, []).append(record)
    return groups


def _add_subgroups_and_trends(inputs: RunInputs, details: dict[str, dict[str, Any]],
                              settings: Settings) -> None:
    obs = inputs.observations[inputs.observations["indicator"] != SUBGROUP_SHARE_INDICATOR]
    if obs.empty:
        return
    polarity = inputs.indicators["polarity"].to_dict()
    gaps = furthest_behind(obs, polarity=polarity,
                           populations=inputs.localities["population"],
                           k_min=settings.privacy.k_min)
    cells = gaps[gaps["subgroup"] != "all"]
    records = _plain_records(cells.drop(columns="locality"))
    for code, group in _grouped(cells["locality"], records).items():
        details.setdefault(code, {})["subgroups"] = group
    periods = sorted(obs["period"].astype(str).unique())
    if len(periods) >= 2:
        targets = inputs.indicators["target"].dropna().to_dict()
        trend = change_between_periods(obs, periods[-2], periods[-1], polarity=polarity,
                                       targets=targets)
        overall = trend[trend["subgroup"] == "all"]
        numbers = _numbers(overall[["baseline", "followup", "change", "progress"]]).tolist()
        flags = _bools(overall[["improved", "target_reached"]]).tolist()
        periods_used = {"baseline_period": periods[-2], "followup_period": periods[-1]}
        entries = [
            (indicator, {"baseline": b, "followup": f, "change": c, "improved": imp,
                         "progress": pr, "target_reached": reached} | periods_used)
            for indicator, (b, f, c, pr), (imp, reached) in
            zip(overall["indicator"].tolist(), numbers, flags, strict=True)]
        for code, group in _grouped(overall["locality"], entries).items():
            details.setdefault(code, {})["trend"] = dict(group)
        narrowed = trend[trend["subgroup"] != "all"].dropna(subset=["gap_narrowed"])
        keys = (narrowed["indicator"].astype(str) + "|" + narrowed["subgroup"].astype(str))
        pairs = list(zip(keys.tolist(), _bools(narrowed[["gap_narrowed"]])[:, 0].tolist(),
                         strict=True))
        for code, group in _grouped(narrowed["locality"], pairs).items():
            details.setdefault(code, {})["gaps_narrowed"] = dict(group)


# -- storage --------------------------------------------------------------------------------
RESULT_COLUMNS = ("locality_id", "composite", "pillars", "dimensions", "components",
                  "completeness", "stressed_dimensions", "compounded", "hotspot", "quadrant",
                  "rank", "rank_in_parent", "rank_low", "rank_high", "details")
JSON_COLUMNS = {"pillars", "dimensions", "components", "details"}
INT_COLUMNS = {"locality_id", "stressed_dimensions", "rank", "rank_in_parent", "rank_low",
               "rank_high"}


def store_results(engine: Engine, run_id: int, results: pd.DataFrame) -> None:
    """COPY every locality's results of the run in one transaction."""
    with engine.begin() as conn:
        _fast_toast_compression(conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        columns = ("run_id", *RESULT_COLUMNS)
        # column-wise values, then rows encoded as they are sent: the server parses the
        # JSON of earlier rows (on another core) while later ones are encoded here
        values = [results[name].tolist() for name in RESULT_COLUMNS]
        with raw.cursor() as cursor, cursor.copy(
                f"COPY score_results ({', '.join(columns)}) FROM STDIN") as copy:
            for row in zip(*values, strict=True):
                copy.write_row((run_id, *(_cell(name, value)
                                          for name, value in zip(RESULT_COLUMNS, row,
                                                                 strict=True))))


def _fast_toast_compression(conn: Any) -> None:
    """Compress this transaction's large JSON values with lz4 where the server has it.

    pglz (the default) spends about as long compressing the results as parsing them;
    lz4 is several times faster. Only the on-disk form changes, never what is read back.
    """
    available = conn.execute(text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar()
    if available:
        conn.execute(text("SET LOCAL default_toast_compression = 'lz4'"))


def _cell(name: str, value: Any) -> Any:
    if name in JSON_COLUMNS:
        # our records are trees built fresh per row: the cycle check only costs time
        return json.dumps(value, default=_plain, allow_nan=False, check_circular=False,
                          separators=(",", ":"))  # jsonb keeps no whitespace anyway
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    if value is pd.NA:
        return None
    if name in INT_COLUMNS:
        return int(value)
    if name == "compounded":
        return bool(value)
    return value.item() if isinstance(value, np.generic) else value


def _num(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) or np.isinf(number) else round(number, 6)


def _bool(value: Any) -> bool | None:
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return bool(value)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and (np.isnan(value) or np.isinf(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp | date):
        return value.isoformat()
    return value


def _summary(inputs: RunInputs, results: pd.DataFrame, timings: dict[str, float]) -> dict:
    levels = inputs.localities["level"]
    finest = results[levels.reindex(results.index) == levels.max()]
    top = finest.sort_values("rank").head(10)
    return {
        "localities": len(results),
        "scored": int(results["composite"].notna().sum()),
        "compounded": int(results["compounded"].fillna(False).astype(bool).sum()),
        "hotspots": {str(k): int(v) for k, v in results["hotspot"].value_counts().items()},
        "top_finest_level": [{"code": code, "composite": _num(row["composite"])}
                             for code, row in top.iterrows()],
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }


# -- convenience ----------------------------------------------------------------------------
def run_scores(engine: Engine, settings: Settings, *, executor: cf.Executor | None = None,
               listeners: list[Callable[[float, str], None]] | None = None,
               parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start and run a score run with the current methodology; return its summary."""
    run_id, job_id = start_score_run(engine, parameters=parameters)
    return execute_score_run(engine, settings, run_id, job_id, executor, listeners)


def latest_run_id(engine: Engine) -> int | None:
    """Return the id of the newest succeeded run, or None."""
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT id FROM score_runs WHERE status = 'succeeded' "
            "ORDER BY completed_at DESC, id DESC LIMIT 1")).scalar()
