#!/usr/bin/env python3
"""Exposure step vs bare exactextract vs rasterstats, side by side in one run.

Data: the performance-anchor set of ../shared/bench-anchors/make_data.py (20,000 Voronoi
localities in /tmp/benchdata/localities.gpkg, a 10,000 x 10,000 float32 COG in
/tmp/benchdata/hazard_cog.tif). make_data.py also loads PostGIS; when the files are missing
this script builds the *same* polygons and raster by calling make_data's own functions
(same seed, so byte-identical geometry and raster) but skips the database part. That takes a
few minutes on 2 cores.

Compared, each on the same polygons and raster (wall clock, per run):
  exactextract-1   bare exact_extract(mean, max, count), one process, both strategies as the
                   anchor does (zonal_bench.py), best one reported
  exactextract-N   bare exact_extract split by centroid x-order over N processes, raster-
                   sequential (the anchor's extras.sh "zonal floor" experiment)
  ours-1           run_exposure(...) with executor=None workers=1 (in-process)
  ours-N           run_exposure(...) over a local ProcessPoolExecutor with N workers
  rasterstats      zonal_stats(mean, max, count) when importable, else skipped with a note

"ours" computes more than the bare call: mean, max, p90, share of area over the threshold
and the hazard level shares. Peak RSS is the max resident set of this process and of its
children (ru_maxrss), sampled after each case, so a later case never shows less than an
earlier one's child peak; the column is a ceiling, not a per-case exact figure.

    .venv/bin/python bench/bench_exposure.py --limit 4000
    .venv/bin/python bench/bench_exposure.py            # all 20,000 (a few minutes)
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import resource
import sys
import time
from collections.abc import Callable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

ANCHORS = "/work/shared/bench-anchors"
DATA = os.environ.get("BENCH_DATA", "/tmp/benchdata")


def make_data(outdir: str, n: int, raster_size: int, seed: int = 42) -> None:
    """Build make_data.py's polygons (GeoPackage) and COG without its PostGIS step."""
    sys.path.insert(0, ANCHORS)
    import make_data as md  # the anchor's own generator, so the inputs are identical

    os.makedirs(outdir, exist_ok=True)
    geoms, rng = md.make_polygons(n, 300_000.0, 80.0, seed)
    gdf = gpd.GeoDataFrame(
        {"id": np.arange(1, len(geoms) + 1, dtype=np.int64)}, geometry=list(geoms), crs="EPSG:4326"
    )
    gpkg = os.path.join(outdir, "localities.gpkg")
    if os.path.exists(gpkg):
        os.remove(gpkg)
    gdf.to_file(gpkg, layer="localities", driver="GPKG")
    md.make_raster(gdf.total_bounds, raster_size, seed, outdir)


def peak_rss_mb() -> float:
    """Return the larger of this process's and its children's peak RSS, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def _bare_part(raster: str, part: gpd.GeoDataFrame, strategy: str) -> pd.DataFrame:
    """Return the anchor's bare exact_extract call on one part."""
    from exactextract import exact_extract

    return exact_extract(raster, part, ["mean", "max", "count"], output="pandas", strategy=strategy)


def bare_exactextract(raster: str, gdf: gpd.GeoDataFrame, strategy: str) -> pd.DataFrame:
    """Return the anchor's bare call: exact_extract(mean, max, count) in one process."""
    return _bare_part(raster, gdf, strategy)


def bare_exactextract_split(raster: str, gdf: gpd.GeoDataFrame, workers: int,
                            strategy: str) -> int:
    """Return the number of rows from the anchor's split-over-processes exactextract run."""
    # split by x-order (bbox centres) so each process touches a compact part of the raster
    bounds = gdf.geometry.bounds
    order = np.argsort(((bounds.minx + bounds.maxx) / 2).to_numpy())
    parts = [gdf.iloc[ix] for ix in np.array_split(order, workers)]
    with mp.get_context("fork").Pool(workers) as pool:
        frames = pool.starmap(_bare_part, [(raster, p, strategy) for p in parts])
    return sum(len(f) for f in frames)


def rasterstats_run(raster: str, gdf: gpd.GeoDataFrame) -> Any:
    """Return rasterstats zonal_stats(mean, max, count) for all polygons."""
    from rasterstats import zonal_stats

    return zonal_stats(list(gdf.geometry), raster, stats=["mean", "max", "count"], nodata=-9999.0)


def ours(raster: str, gdf: gpd.GeoDataFrame, workers: int) -> pd.DataFrame:
    """Return run_exposure's table, in-process for one worker, else over a process pool."""
    from geo.analysis.exposure import run_exposure

    kwargs: dict[str, Any] = dict(
        threshold=5.0, level_thresholds={"low": 3.0, "medium": 5.0, "high": 7.0}
    )
    if workers == 1:
        return run_exposure(gdf, raster, executor=None, workers=1, **kwargs)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
        return run_exposure(gdf, raster, executor=pool, workers=workers, **kwargs)


def timed(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Return the best wall time over reps and the last result."""
    best, out = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--raster", default=os.path.join(DATA, "hazard_cog.tif"))
    ap.add_argument("--polygons", default=os.path.join(DATA, "localities.gpkg"))
    ap.add_argument("--limit", type=int, default=0, help="use the first N localities (0 = all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--make-data", action="store_true", help="only (re)build the data, then exit")
    ap.add_argument("--rasterstats-limit", type=int, default=2000,
                    help="rasterstats on the first K polygons, extrapolated linearly (0 = all)")
    a = ap.parse_args()

    if a.make_data or not (os.path.exists(a.raster) and os.path.exists(a.polygons)):
        print(f"building benchmark data in {DATA} (takes several minutes) ...", flush=True)
        make_data(DATA, 20_000, 10_000)
        if a.make_data:
            return
    gdf = gpd.read_file(a.polygons, layer="localities")
    if a.limit:
        gdf = gdf.iloc[: a.limit]
    gdf = gdf.set_index("id")
    n = len(gdf)
    print(f"{n} polygons x {a.raster}; {a.workers} workers; best of {a.reps}", flush=True)

    rows: list[dict[str, Any]] = []

    def record(name: str, seconds: float, note: str = "") -> None:
        rows.append(dict(case=name, seconds=seconds, peak_rss_mb=peak_rss_mb(), note=note))
        print(f"  {name:<22} {seconds:8.2f} s  {note}", flush=True)

    for strategy in ("feature-sequential", "raster-sequential"):
        s, _ = timed(lambda st=strategy: bare_exactextract(a.raster, gdf, st), a.reps)
        record(f"exactextract-1 {strategy[:4]}", s)
    s, _ = timed(lambda: ours(a.raster, gdf, 1), a.reps)
    record("ours-1", s)
    for strategy in ("feature-sequential", "raster-sequential"):
        s, _ = timed(lambda st=strategy: bare_exactextract_split(a.raster, gdf, a.workers, st),
                     a.reps)
        record(f"exactextract-{a.workers} {strategy[:4]}", s, "x-order split")
    s, _ = timed(lambda: ours(a.raster, gdf, a.workers), a.reps)
    record(f"ours-{a.workers}", s)
    try:
        import rasterstats  # noqa: F401
    except ImportError:
        rows.append(dict(case="rasterstats", seconds=np.nan, peak_rss_mb=np.nan,
                         note="skipped: rasterstats not installed"))
    else:
        sub = gdf.iloc[: a.rasterstats_limit] if a.rasterstats_limit else gdf
        s, _ = timed(lambda: rasterstats_run(a.raster, sub), 1)
        record("rasterstats", s * n / len(sub), f"{len(sub)} polygons, extrapolated to {n}")

    table = pd.DataFrame(rows).set_index("case")
    bare1 = min(table.loc[c, "seconds"] for c in table.index if c.startswith("exactextract-1 "))
    bare_n = min(table.loc[c, "seconds"] for c in table.index
                 if c.startswith(f"exactextract-{a.workers} "))
    base = {"1": bare1, str(a.workers): bare_n}
    # ours vs the *best* bare strategy on the same number of cores
    table["ratio_vs_best_bare_same_cores"] = [
        r.seconds / base[c.split("-")[1]] if c.startswith("ours") else np.nan
        for c, r in table.iterrows()
    ]
    if "rasterstats" in table.index and not np.isnan(table.loc["rasterstats", "seconds"]):
        table["rasterstats_over_this"] = table.loc["rasterstats", "seconds"] / table["seconds"]
    with pd.option_context("display.width", 140, "display.max_colwidth", 60):
        print(table.round(3).to_string())


if __name__ == "__main__":
    main()
