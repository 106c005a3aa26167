"""Benchmark: raster upload → COG with `write_cog` against plain `rio cogeo create`.

Makes 5,000² and 10,000² float32 GeoTIFFs in /tmp, converts each with both tools in a
child process, and prints wall-clock seconds and the child's peak RSS (from `wait4`, so
each figure belongs to one child only). Run: `.venv/bin/python bench/bench_ingest_raster.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
SIZES = (5_000, 10_000)


def make_raster(path: Path, size: int) -> None:
    """Write a size×size float32 flood-depth-like GeoTIFF band by band (bounded memory)."""
    profile = dict(
        driver="GTiff", width=size, height=size, count=1, dtype="float32", nodata=-9999.0,
        crs="EPSG:4326", transform=from_origin(100.0, 10.0, 0.0005, 0.0005),
        tiled=True, blockxsize=512, blockysize=512, compress="deflate",
    )
    rng = np.random.default_rng(42)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            y = np.arange(top, top + rows)[:, None] / size
            x = np.arange(size)[None, :] / size
            depth = np.sin(6 * x) * np.cos(4 * y) * 3 + rng.normal(0, 0.2, (rows, size))
            depth = np.round(np.clip(depth, 0, None), 2).astype("float32")
            depth[:, : size // 20] = -9999.0  # a nodata strip, as along a coastline
            dst.write(depth, 1, window=Window(0, top, size, rows))


def measure(command: list[str]) -> tuple[float, float, str]:
    """Return (seconds, peak RSS in MB, stdout) of one child, RSS from its own rusage."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode != 0:
            raise RuntimeError(f"{command[:3]} failed: {err.read().decode()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read().decode()


def child_write_cog(source: Path, dest: Path, density_to_count: bool) -> None:
    """In the child: stage the upload and convert it with write_cog; print timings as JSON."""
    sys.path.insert(0, str(ROOT))
    from geo.ingest.files import open_upload
    from geo.ingest.rasters import write_cog

    workdir = Path(tempfile.mkdtemp(prefix="bench-stage-"))
    try:
        start = time.perf_counter()
        with open_upload(source, "bench.tif", max_bytes=10**10, workdir=workdir) as uploaded:
            staged = time.perf_counter()
            stats = write_cog(uploaded, dest, density_to_count=density_to_count)
            done = time.perf_counter()
        result = {"stage_s": staged - start, "write_cog_s": done - staged, "mean": stats.mean}
        sys.stdout.write(json.dumps(result) + "\n")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench(size: int, scratch: Path) -> list[tuple[str, int, float, float, str]]:
    """Return result rows for one raster size, both tools."""
    source = scratch / f"bench_{size}.tif"
    start = time.perf_counter()
    make_raster(source, size)
    made = time.perf_counter() - start
    sys.stdout.write(f"made {size:,}² float32 source in {made:.1f} s "
                     f"({source.stat().st_size / 1e6:.0f} MB on disk)\n")
    rows = []
    ours = [sys.executable, __file__, "--child", str(source), str(scratch / f"ours_{size}.tif")]
    seconds, rss, out = measure(ours)
    detail = json.loads(out.strip().splitlines()[-1])
    note = f"stage {detail['stage_s']:.1f} s + write_cog {detail['write_cog_s']:.1f} s"
    rows.append(("write_cog (+ staging copy)", size, seconds, rss, note))
    seconds, rss, out = measure([*ours, "--density"])
    detail = json.loads(out.strip().splitlines()[-1])
    note = f"stage {detail['stage_s']:.1f} s + write_cog {detail['write_cog_s']:.1f} s"
    rows.append(("write_cog density→count", size, seconds, rss, note))
    rio = [str(VENV_BIN / "rio"), "cogeo", "create", str(source),
           str(scratch / f"rio_{size}.tif"), "--cog-profile", "deflate", "--quiet"]
    seconds, rss, _ = measure(rio)
    rows.append(("rio cogeo create", size, seconds, rss, "defaults (in-memory < 120 Mpx)"))
    return rows


def main() -> None:
    """Run the benchmark at both sizes and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("SOURCE", "DEST"), help=argparse.SUPPRESS)
    parser.add_argument("--density", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_write_cog(Path(args.child[0]), Path(args.child[1]), args.density)
        return
    scratch = Path(tempfile.mkdtemp(prefix="bench-ingest-raster-", dir="/tmp"))
    try:
        rows = [row for size in SIZES for row in bench(size, scratch)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stdout.write(f"\n{'tool':<28}{'size':>8}{'seconds':>10}{'peak RSS MB':>14}  notes\n")
    for tool, size, seconds, rss, note in rows:
        sys.stdout.write(f"{tool:<28}{size:>8,}{seconds:>10.1f}{rss:>14.0f}  {note}\n")


if __name__ == "__main__":
    main()
