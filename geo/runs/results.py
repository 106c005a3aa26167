"""Scores per admin level and the stored record of each locality (pillars, dimensions,
components, hotspot, quadrant, rank interval, drivers), plus the run summary."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.analysis.coverage import (
    absent_reason,
    country_keys,
    describe_levels,
    finest_localities,
    level_report,
    locality_coverage,
)
from geo.analysis.hotspots import getis_ord_hotspots
from geo.analysis.methodology import HotspotSettings, Methodology, load_default_methodology
from geo.analysis.robustness import weight_robustness
from geo.analysis.scoring import (
    ScoreTable,
    need_vulnerability_quadrant,
    normalise_all,
    score_localities,
)
from geo.ingest._vocabulary import type_summary
from geo.runs import cells
from geo.runs.inputs import RunInputs

MIN_LOCALITIES_FOR_HOTSPOTS = 8
# From this many localities in a level, Gi* runs beside the rest of the scoring.
HOTSPOTS_IN_BACKGROUND_FROM = 2000


def score_all_levels(inputs: RunInputs, raw: pd.DataFrame, methodology: Methodology,
                     details: dict[str, dict[str, Any]], gaps: dict[str, Any] | None = None,
                     ) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Return one row per locality with every stored figure, and what each level rests on.

    Components are normalised once over every level: fixed goalposts as they are, relative
    scales per country from its finest localities, so a parent (a one-unit level too) is
    scored on its children's scale. Ranks, hot spots and rank intervals are per level.
    details: per-locality details from build_raw_table, merged into each row's details.
    """
    localities = inputs.localities
    explained: dict[str, Any] = {}
    for component in methodology.components:
        source = component.source
        if source not in raw.columns:
            explained[source] = absent_reason(source)
        elif gaps is not None and source in gaps:
            explained[source] = gaps[source]
    normalised = normalise_all(raw, methodology, scope=country_keys(localities),
                               reference=finest_localities(localities), gaps=explained,
                               levels=localities["level"])
    frames, levels = [], []
    for level, members in localities.groupby("level"):
        codes = members.index
        table = score_localities(raw.loc[codes], methodology, parent=members["parent_code"],
                                 normalised=normalised)
        coverage = locality_coverage(table)
        frames.append(_level_results(inputs, members, raw.loc[codes], table, methodology,
                                     coverage))
        levels.append(level_report(int(level), table, coverage))
    results = pd.concat(frames)
    results["details"] = [details.get(code, {}) | extra for code, extra in
                          zip(results.index, results["details"], strict=True)]
    return results, levels


def _level_results(inputs: RunInputs, members: gpd.GeoDataFrame, raw: pd.DataFrame,
                   table: ScoreTable, methodology: Methodology,
                   coverage: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    summary = table.summary
    out = pd.DataFrame(index=members.index)
    out["locality_id"] = members["id"]
    for column in ("composite", "completeness", "rank", "rank_in_parent"):
        out[column] = summary[column]
    out["stressed_dimensions"] = summary["stressed_count"]
    out["compounded"] = summary["compounded"]
    out["quadrant"] = need_vulnerability_quadrant(table.pillars)["quadrant"]
    hotspots = _start_hotspots(members, summary["composite"], methodology)
    robust = _robustness(table, methodology)
    out["rank_low"], out["rank_high"] = robust["rank_low"], robust["rank_high"]
    out["pillars"] = cells.records(table.pillars)
    out["dimensions"] = _dimension_records(table, methodology)
    out["components"] = _component_records(table, raw, methodology, inputs)
    stable = [cells.as_bool(v) for v in robust["top_decile_stable"].reindex(members.index).tolist()]
    coverage = coverage if coverage is not None else [{} for _ in range(len(members))]
    out["details"] = [
        {"top_drivers": drivers, "top_decile_stable": flag, "coverage": cover}
        for drivers, flag, cover in zip(_top_drivers(table.components.reindex(members.index)),
                                        stable, coverage, strict=True)]
    out["hotspot"] = hotspots()
    return out


def _start_hotspots(members: gpd.GeoDataFrame, composite: pd.Series,
                    methodology: Methodology | None = None) -> Callable[[], pd.Series]:
    """Start `_hotspots` and return a function that waits for its result.

    On many localities Gi* (999 permutations, a Python loop per locality inside esda)
    runs in a forked process while this one computes rank intervals and records, which
    take about as long; on few it runs here. The same code either way, so the same classes.
    """
    settings = (methodology or load_default_methodology()).hotspots
    if len(members) < HOTSPOTS_IN_BACKGROUND_FROM:
        classes = _hotspots(members, composite, settings)
        return lambda: classes
    context = mp.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    # fork: the child inherits members and composite, nothing is pickled on the way in
    child = context.Process(target=_send_hotspots, args=(send, members, composite, settings),
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


def _send_hotspots(send: Any, members: gpd.GeoDataFrame, composite: pd.Series,
                   settings: HotspotSettings) -> None:
    try:
        send.send(_hotspots(members, composite, settings))
    except BaseException as exc:  # handed to the parent, which raises it
        send.send(exc)
    finally:
        send.close()


def _hotspots(members: gpd.GeoDataFrame, composite: pd.Series,
              settings: HotspotSettings | None = None) -> pd.Series:
    settings = settings or HotspotSettings()
    scored = composite.notna()
    if scored.sum() < MIN_LOCALITIES_FOR_HOTSPOTS:
        return pd.Series(None, index=members.index, dtype=object)
    frame = members.loc[scored, ["geom"]].set_geometry("geom").assign(
        composite=composite[scored])
    classes = getis_ord_hotspots(
        frame, "composite", permutations=settings.permutations, fdr=settings.fdr,
        weights=settings.weights, distance_km=settings.distance_km, k=settings.k,
        star=settings.statistic == "gi_star")["hotspot_class"]
    return classes.reindex(members.index)


def _robustness(table: ScoreTable, methodology: Methodology) -> pd.DataFrame:
    empty = pd.DataFrame({"rank_low": np.nan, "rank_high": np.nan, "top_decile_stable": None},
                         index=table.components.index)
    if table.summary["composite"].notna().sum() < 2:
        return empty
    return weight_robustness(table.components, methodology).reindex(table.components.index)


def _dimension_records(table: ScoreTable, methodology: Methodology) -> list[dict[str, Any]]:
    dims = list(table.dimensions.columns)
    meta = {d.id: d for d in methodology.dimensions}
    fixed = {dim: {"pillar": meta[dim].pillar, "human_security": meta[dim].human_security,
                   "label": meta[dim].label or meta[dim].human_security} for dim in dims}
    scores = cells.numbers(table.dimensions).tolist()
    stressed = cells.bools(table.stressed()[dims]).tolist()
    complete = cells.numbers(table.dimension_completeness[dims]).tolist()
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
    raw_values = cells.numbers(pd.DataFrame(
        {c.id: (raw[c.source].reindex(index) if c.source in raw.columns
                else pd.Series(np.nan, index=index)) for c in components}, index=index)).tolist()
    normalised = cells.numbers(table.components[[c.id for c in components]]).tolist()
    reasons = (table.reasons[[c.id for c in components]].to_numpy(dtype=object).tolist()
               if table.reasons is not None else [[None] * len(components)] * len(index))
    fixed = []
    for component in components:
        extra = {"unit": _unit(component.source), "source": component.source,
                 "dimension": component.dimension, "scale": component.scale}
        if component.goalposts is not None:
            extra["goalposts"] = list(component.goalposts)
        if component.source in layers:
            extra.update(layer=layers[component.source].name,
                         version=layers[component.source].version)
        fixed.append((component.id, extra))
    records = []
    for raw_row, norm_row, why_row in zip(raw_values, normalised, reasons, strict=True):
        record = {}
        for (cid, extra), r, nv, why in zip(fixed, raw_row, norm_row, why_row, strict=True):
            entry = {"raw": r, "normalised": nv} | extra
            if nv is None:
                # "no data" is named, never shown as a score of 0
                entry["no_data"] = str(why) if why else "no data"
            record[cid] = entry
        records.append(record)
    return records


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


def run_summary(inputs: RunInputs, results: pd.DataFrame, timings: dict[str, float],
             levels: list[dict[str, Any]] | None = None,
             methodology: Methodology | None = None,
             raw: pd.DataFrame | None = None) -> dict[str, Any]:
    """Return the run's summary: counts, what each level rests on, the top, timings."""
    level = inputs.localities["level"]
    finest = results[level.reindex(results.index) == level.max()]
    top = finest.sort_values("rank").head(10)
    summary: dict[str, Any] = {
        "localities": len(results),
        "scored": int(results["composite"].notna().sum()),
        "compounded": int(results["compounded"].fillna(False).astype(bool).sum()),
        "hotspots": {str(k): int(v) for k, v in results["hotspot"].value_counts().items()},
        "top_finest_level": [{"code": code, "composite": cells.num(row["composite"])}
                             for code, row in top.iterrows()],
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    if levels is not None:
        # per admin level: how many localities were scored, partial or not, and why
        summary["levels"] = levels
        summary["explained"] = describe_levels(levels)
    if methodology is not None:
        summary["goalposts"] = {"fixed": [c.id for c in methodology.components
                                          if c.scale == "fixed"],
                                "relative": methodology.relative_components()}
        if raw is not None:
            summary["inputs_not_loaded"] = {
                c.source: absent_reason(c.source) for c in methodology.components
                if c.source not in raw.columns}
    counts = {str(k): int(v) for k, v in inputs.institutions["type"].value_counts().items()} \
        if not inputs.institutions.empty else {}
    summary["institutions"] = {"by_type": counts, **type_summary(counts)}
    return summary
