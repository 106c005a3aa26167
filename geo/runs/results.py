"""Scores per admin level and the stored record of each locality (pillars, dimensions,
components, hotspot, quadrant, rank interval, drivers), plus the run summary."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.analysis.hotspots import getis_ord_hotspots
from geo.analysis.methodology import Methodology
from geo.analysis.robustness import weight_robustness
from geo.analysis.scoring import ScoreTable, need_vulnerability_quadrant, score_localities
from geo.runs import cells
from geo.runs.inputs import RunInputs

MIN_LOCALITIES_FOR_HOTSPOTS = 8
# From this many localities in a level, Gi* runs beside the rest of the scoring.
HOTSPOTS_IN_BACKGROUND_FROM = 2000


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
    out["pillars"] = cells.records(table.pillars)
    out["dimensions"] = _dimension_records(table, methodology)
    out["components"] = _component_records(table, raw, methodology, inputs)
    stable = [cells.as_bool(v) for v in robust["top_decile_stable"].reindex(members.index).tolist()]
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


def run_summary(inputs: RunInputs, results: pd.DataFrame,
                timings: dict[str, float]) -> dict[str, Any]:
    """Return the run's summary: counts, hotspots, the top of the finest level, timings."""
    levels = inputs.localities["level"]
    finest = results[levels.reindex(results.index) == levels.max()]
    top = finest.sort_values("rank").head(10)
    return {
        "localities": len(results),
        "scored": int(results["composite"].notna().sum()),
        "compounded": int(results["compounded"].fillna(False).astype(bool).sum()),
        "hotspots": {str(k): int(v) for k, v in results["hotspot"].value_counts().items()},
        "top_finest_level": [{"code": code, "composite": cells.num(row["composite"])}
                             for code, row in top.iterrows()],
        "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
