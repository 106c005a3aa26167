"""Benchmark: the whole ingest (`geo.ingest.load.ingest`) of 20,000 localities and of rasters.

Starts a private PostgreSQL + PostGIS cluster (or uses `--admin-url`), and runs each case in
a child process against a fresh, migrated database, printing wall-clock seconds and the
child's peak RSS (from `wait4`, so each figure is one child's own). Cases:

* 20,000 locality polygons (Voronoi cells with ~110 vertices each) from
  /tmp/benchdata/localities.gpkg when present, else generated the same way;
* hazard GeoTIFFs of 5,000² and 10,000² float32 through the full hazard ingest (staging
  copy, checks, streaming statistics, COG, database rows), side by side with plain
  `rio cogeo create` on the same file, to show memory does not grow with raster size.

Run: `.venv/bin/python bench/bench_ingest.py` (a few minutes; needs ~3 GB in /tmp).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_ingest_raster import VENV_BIN, make_raster, measure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ANCHOR_LOCALITIES = Path("/tmp/benchdata/localities.gpkg")
RASTER_SIZES = (5_000, 10_000)
N_LOCALITIES = 20_000


# --- data ------------------------------------------------------------------------------


def make_localities(path: Path, count: int = N_LOCALITIES, seed: int = 7) -> None:
    """Write `count` Voronoi cells (~110 vertices each) over ~300 km² of UTM 32N as a GeoPackage."""
    import geopandas as gpd
    import numpy as np
    import shapely

    rng = np.random.default_rng(seed)
    x0, y0, size = 350_000.0, 4_950_000.0, 300_000.0
    points = shapely.multipoints(np.column_stack([rng.uniform(x0, x0 + size, count),
                                                  rng.uniform(y0, y0 + size, count)]))
    frame = shapely.box(x0, y0, x0 + size, y0 + size)
    cells = shapely.intersection(
        shapely.get_parts(shapely.voronoi_polygons(points, extend_to=frame)), frame)
    # A cell's perimeter is ~4.3 × the mean spacing; ~110 vertices means segments of /25.
    spacing = size / math.sqrt(count)
    cells = shapely.segmentize(cells, spacing * 4.3 / 110)
    gpd.GeoDataFrame(
        {"code": [f"BL{i:05d}" for i in range(len(cells))],
         "name": [f"Locality {i:05d}" for i in range(len(cells))],
         "population": rng.lognormal(7.5, 1.2, len(cells)).round()},
        geometry=cells, crs="EPSG:32632",
    ).to_crs("EPSG:4326").to_file(path, driver="GPKG")


# --- the child: one ingest into a fresh database ------------------------------------------


def fresh_database(admin_url: str, name: str) -> str:
    """Create an empty PostGIS database on the cluster and return its SQLAlchemy URL."""
    import psycopg

    plain = admin_url.replace("+psycopg", "")
    with psycopg.connect(plain.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    return url


def child_ingest(admin_url: str, kind: str, source: Path, options: dict[str, Any]) -> None:
    """In the child: migrate a fresh database, ingest one file, print timings as JSON."""
    from geo.db import build_engine
    from geo.ingest.load import ingest
    from geo.migrate import upgrade
    from geo.settings import DatabaseSettings, Settings, StorageSettings

    url = fresh_database(admin_url, f"bench_{kind}_{os.getpid()}")
    upgrade(url)
    data_dir = Path(tempfile.mkdtemp(prefix="bench-ingest-data-", dir="/tmp"))
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=data_dir, max_upload_bytes=10**11))
    engine = build_engine(url, settings)
    try:
        start = time.perf_counter()
        result = ingest(engine, settings, kind, source, source.name, options)
        seconds = time.perf_counter() - start
        stored = sum(p.stat().st_size for p in settings.storage.raster_dir.rglob("*.tif"))
        summary = {"ingest_s": seconds, "rows": result.get("rows"),
                   "version": result.get("version"), "cog_mb": stored / 1e6,
                   "warnings": len(result.get("warnings") or [])}
        sys.stdout.write(json.dumps(summary) + "\n")
    finally:
        engine.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- the parent -------------------------------------------------------------------------------


def start_cluster(root: Path) -> tuple[Any, str]:
    """Start a private cluster under `root` on a free port; return it and its admin URL."""
    from geo.embedded import EmbeddedCluster

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    cluster = EmbeddedCluster(root, port, database="riskatlas_bench")
    return cluster, cluster.ensure_running()


def run_case(admin_url: str, kind: str, source: Path, options: dict[str, Any]
             ) -> tuple[float, float, dict[str, Any]]:
    """Return (wall seconds, peak RSS MB, child summary) of one ingest child."""
    command = [sys.executable, __file__, "--child", admin_url, kind, str(source),
               json.dumps(options)]
    seconds, rss, out = measure(command)
    return seconds, rss, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    """Run every case and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--admin-url", help="Use this PostGIS cluster instead of a private one")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(RASTER_SIZES),
                        help="Raster sizes (cells per side)")
    args = parser.parse_args()
    if args.child:
        admin_url, kind, source, options = args.child
        child_ingest(admin_url, kind, Path(source), json.loads(options))
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir="/tmp"))
    scratch.chmod(0o755)  # the cluster runs as `postgres` when this runs as root
    cluster = None
    rows: list[tuple[str, str, float, float, str]] = []
    try:
        admin_url = args.admin_url
        if admin_url is None:
            cluster, admin_url = start_cluster(scratch / "pg")
        rows.append(bench_localities(admin_url, scratch))
        for size in args.sizes:
            rows.extend(bench_raster(admin_url, scratch, size))
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(f"\n{'case':<34}{'input':>14}{'seconds':>10}{'peak RSS MB':>14}  notes\n")
    for case, size, seconds, rss, note in rows:
        sys.stdout.write(f"{case:<34}{size:>14}{seconds:>10.1f}{rss:>14.0f}  {note}\n")


def bench_localities(admin_url: str, scratch: Path) -> tuple[str, str, float, float, str]:
    """Return the result row of the 20,000-locality ingest."""
    if ANCHOR_LOCALITIES.exists():
        source, options = ANCHOR_LOCALITIES, {"level": 2, "code_field": "id"}
        origin = "bench-anchors gpkg"
    else:
        source, options, origin = scratch / "localities.gpkg", {"level": 2}, "generated"
        make_localities(source)
    seconds, rss, detail = run_case(admin_url, "localities", source, options)
    note = (f"{origin}, {source.stat().st_size / 1e6:.0f} MB; ingest {detail['ingest_s']:.1f} s "
            "(+ fresh db and migrations)")
    return "ingest localities", f"{detail['rows']:,} polys", seconds, rss, note


def bench_raster(admin_url: str, scratch: Path, size: int
                 ) -> list[tuple[str, str, float, float, str]]:
    """Return result rows of the full hazard ingest and of `rio cogeo create` at one size."""
    source = scratch / f"hazard_{size}.tif"
    start = time.perf_counter()
    make_raster(source, size)
    sys.stdout.write(f"made {size:,}² float32 source in {time.perf_counter() - start:.1f} s "
                     f"({source.stat().st_size / 1e6:.0f} MB on disk)\n")
    seconds, rss, detail = run_case(admin_url, "hazard", source,
                                    {"name": f"bench-{size}", "kind": "flood", "unit": "m"})
    ours = ("ingest hazard (full path)", f"{size:,}²", seconds, rss,
            f"ingest {detail['ingest_s']:.1f} s, COG {detail['cog_mb']:.0f} MB")
    rio = [str(VENV_BIN / "rio"), "cogeo", "create", str(source), str(scratch / "rio.tif"),
           "--cog-profile", "deflate", "--quiet"]
    rio_seconds, rio_rss, _ = measure(rio)
    rio_mb = (scratch / "rio.tif").stat().st_size / 1e6
    (scratch / "rio.tif").unlink()
    source.unlink()
    return [ours, ("rio cogeo create (deflate)", f"{size:,}²", rio_seconds, rio_rss,
                   f"COG {rio_mb:.0f} MB; defaults (in-memory < 120 Mpx)")]


if __name__ == "__main__":
    main()
