"""Benchmark: the map page with 20,000 localities in headless Chromium, against naive Folium.

Measures, in the system Chromium (cold browser context each time):

* navigation → first choropleth paint of the map page `/` (vector tiles; the page records
  `performance.now()` when the choropleth layer fires its first `load`), target < 2 s;
* click on a locality → its profile panel rendered (risk API + DOM), target < 300 ms, both as
  the driver sees it (Playwright's click → panel in the DOM) and inside the page;
* the same two on a Folium map embedding the same 20,000 polygons, values and class breaks as
  one GeoJSON layer (the naive way: style per feature and a GeoJsonPopup), served as a static
  file. That 94 MB page exhausts the Playwright driver's heap, so it runs in a Chromium started
  directly and times itself (double requestAnimationFrame after the script; a dispatched click
  → popup in the DOM), POSTing its numbers back.

Data: /tmp/benchdata/localities.gpkg (the bench-anchors polygons) when present, else 20,000
Voronoi cells with ~110 vertices generated deterministically (bench_ingest.make_localities);
loaded by `geo.ingest.load.ingest` into a fresh database of a private cluster, given a fake
succeeded score run (deterministic pseudo-random scores), and served by `riskatlas serve`.

Run: `.venv/bin/python bench/bench_map.py` (about five minutes; `--help` for options:
`--naive-runs 0` skips the slow naive map, `--trace` prints where the first paint's time
goes). Numbers depend on the machine's load: run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
ANCHOR_LOCALITIES = Path("/tmp/benchdata/localities.gpkg")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]
VIEWPORT = {"width": 1400, "height": 900}

FAKE_RUN_SQL = """
WITH run AS (
  INSERT INTO score_runs (methodology_id, status, data_versions, parameters, summary,
                          created_at, completed_at)
  VALUES (:methodology, 'succeeded', '{}', '{"bench": true}', '{}', now(), now())
  RETURNING id
), scored AS (
  SELECT l.id, l.parent_code,
         (hashtext(l.code) & 1023) / 102.3 AS hz,
         ((hashtext(l.code || 'v') & 1023) / 102.3) AS vu,
         ((hashtext(l.code || 'c') & 1023) / 102.3) AS co,
         (hashtext(l.code || 's') & 7) AS stressed
  FROM localities l
)
INSERT INTO score_results (run_id, locality_id, composite, pillars, dimensions, components,
  completeness, stressed_dimensions, compounded, hotspot, quadrant, rank, rank_in_parent,
  rank_low, rank_high, details)
SELECT run.id, s.id, cbrt(greatest(s.hz, 0.01) * greatest(s.vu, 0.01) * greatest(s.co, 0.01)),
  jsonb_build_object('hazard_exposure', s.hz, 'vulnerability', s.vu,
                     'lack_of_coping_capacity', s.co),
  jsonb_build_object('economic', jsonb_build_object('score', s.vu, 'stressed', s.vu >= 6.5,
                     'completeness', 1, 'pillar', 'vulnerability', 'label', 'Economic')),
  '{}'::jsonb, 1.0, s.stressed, s.stressed >= 3,
  (ARRAY['hot_99','hot_95','hot_90','not_significant','not_significant','not_significant',
         'cold_90','cold_95'])[1 + (s.stressed % 8)],
  'low_need_low_vulnerability',
  row_number() OVER (ORDER BY cbrt(greatest(s.hz, 0.01) * greatest(s.vu, 0.01)
                                   * greatest(s.co, 0.01)) DESC),
  1, NULL, NULL, '{}'::jsonb
FROM scored s CROSS JOIN run
"""


def free_port() -> int:
    """Return a free TCP port on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- data ------------------------------------------------------------------------------------


def load_database(admin_url: str, scratch: Path) -> tuple[str, Path]:
    """Ingest 20,000 localities into a fresh database with a fake score run; return URL, source."""
    from bench_ingest import fresh_database, make_localities
    from sqlalchemy import text

    from geo.db import build_engine
    from geo.ingest.load import ingest
    from geo.migrate import upgrade
    from geo.runs.methodologies import ensure_methodology
    from geo.settings import DatabaseSettings, Settings, StorageSettings

    if ANCHOR_LOCALITIES.exists():
        source, options = ANCHOR_LOCALITIES, {"level": 2, "code_field": "id"}
    else:
        source, options = scratch / "localities.gpkg", {"level": 2}
        make_localities(source)
    url = fresh_database(admin_url, "riskatlas_bench_map")
    upgrade(url)
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=scratch / "data"))
    engine = build_engine(url, settings)
    try:
        started = time.perf_counter()
        result = ingest(engine, settings, "localities", source, source.name, options)
        log(f"ingested {result.get('rows', '?')} localities in "
            f"{time.perf_counter() - started:.1f} s")
        methodology = ensure_methodology(engine)
        with engine.begin() as conn:
            conn.execute(text(FAKE_RUN_SQL), {"methodology": methodology})
            # Ingestion prepares the tiles' outlines; without them the map would be empty.
            outlines = conn.execute(text("SELECT count(*) FROM locality_tile_geometry")).scalar()
            if not outlines:
                raise RuntimeError("ingestion left no tile outlines (locality_tile_geometry)")
    finally:
        engine.dispose()
    return url, source


def log(message: str) -> None:
    """Print a progress line at once."""
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


# --- serving ---------------------------------------------------------------------------------


def serve_app(url: str, data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start `riskatlas serve` on the database; return the process and its base URL."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, RISKATLAS_DATA_DIR=str(data_dir))
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "riskatlas"), "serve", "--port", str(port), "--no-migrate"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            return process, base
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise RuntimeError("riskatlas serve did not start")


def composites(url: str) -> dict[str, float]:
    """Return {code: composite} of the latest run, for the naive map to show the same values."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT l.code, r.composite FROM score_results r "
                "JOIN localities l ON l.id = r.locality_id "
                "WHERE r.run_id = (SELECT max(id) FROM score_runs)"))
            return {code: float(value) for code, value in rows}
    finally:
        engine.dispose()


# Run inside the naive page: the Playwright driver runs out of heap on a 94 MB page, so the
# page times itself (paint, then a click on the locality -> its popup) and POSTs the numbers.
NAIVE_PROBE_JS = """
(function () {
  var target = %s;
  function report(result) {
    fetch('/result', {method: 'POST', body: JSON.stringify(result)});
  }
  requestAnimationFrame(function () { requestAnimationFrame(function () {
    var paint = performance.now();
    var map = window.map_naive, b = target.bbox;
    map.fitBounds([[b[1], b[0]], [b[3], b[2]]], {animate: false, maxZoom: 14});
    setTimeout(function () {
      var pt = map.latLngToContainerPoint([target.centroid[1], target.centroid[0]]);
      var rect = map.getContainer().getBoundingClientRect();
      var x = rect.left + pt.x, y = rect.top + pt.y;
      var node = document.elementFromPoint(x, y);
      var opts = {bubbles: true, cancelable: true, clientX: x, clientY: y, view: window};
      var started = performance.now();
      ['mousedown', 'mouseup', 'click'].forEach(function (type) {
        node.dispatchEvent(new MouseEvent(type, opts));
      });
      (function check() {
        if (document.querySelector('.leaflet-popup')) {
          requestAnimationFrame(function () {
            report({paint: paint, popup: performance.now() - started});
          });
        } else if (performance.now() - started > 60000) {
          report({paint: paint, popup: null});
        } else { requestAnimationFrame(check); }
      }());
    }, 1500);
  }); });
}());
"""


def write_naive_map(source: Path, out_dir: Path, values: dict[str, float],
                    classes: dict[str, Any], locality: dict[str, Any]) -> Path:
    """Write a Folium map embedding every polygon as one GeoJSON layer (local Leaflet)."""
    import branca.colormap
    import folium
    import geopandas as gpd

    from frontend.mapview import VENDOR_CSS, VENDOR_JS

    frame = gpd.read_file(source)
    frame = frame.rename(columns={"id": "code"}) if "code" not in frame else frame
    frame["code"] = frame["code"].astype(str)
    # The same values and class breaks as the vector-tile map, so both maps draw alike.
    frame["composite"] = frame["code"].map(values).fillna(0.0)
    frame = frame[["code", "composite", "geometry"]]
    colours = branca.colormap.StepColormap(
        classes["colours"], index=classes["breaks"],
        vmin=classes["breaks"][0], vmax=classes["breaks"][-1])
    minx, miny, maxx, maxy = frame.total_bounds
    fmap = folium.Map(location=[(miny + maxy) / 2, (minx + maxx) / 2], zoom_start=8, tiles=None)
    fmap._name, fmap._id = "map", "naive"  # a stable variable name: `map_naive`
    fmap.default_js = [("leaflet", VENDOR_JS["leaflet"])]
    fmap.default_css = [("leaflet_css", VENDOR_CSS["leaflet_css"])]
    fmap.fit_bounds([[miny, minx], [maxy, maxx]])
    folium.GeoJson(
        frame, name="localities",
        style_function=lambda f: {"fillColor": colours(f["properties"]["composite"]),
                                  "color": "#5a5a5a", "weight": 0.6, "fillOpacity": 1},
        popup=folium.GeoJsonPopup(fields=["code", "composite"]),
    ).add_to(fmap)
    target = {"bbox": locality["bbox"], "centroid": locality["centroid"]}
    fmap.get_root().script.add_child(folium.Element(NAIVE_PROBE_JS % json.dumps(target)))
    shutil.copytree(ROOT / "frontend" / "static" / "vendor", out_dir / "vendor")
    path = out_dir / "naive.html"
    fmap.save(str(path))
    log(f"naive Folium page: {path.stat().st_size / 1e6:.0f} MB of HTML")
    return path


def serve_directory(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve a directory over HTTP in a thread; POST /result puts JSON on `server.results`."""
    results: queue.Queue[dict[str, Any]] = queue.Queue()
    handler = functools.partial(QuietHandler, results, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.results = results  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """A static file handler that does not log every request and takes the probe's result."""

    def __init__(self, results: queue.Queue[dict[str, Any]], *args: Any, **kwargs: Any) -> None:
        self.results = results
        super().__init__(*args, **kwargs)

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        """Take the naive page's measurement."""
        length = int(self.headers.get("Content-Length", "0"))
        self.results.put(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        """Stay quiet."""


# --- measuring -------------------------------------------------------------------------------


def click_point(page: Any, bbox: list[float], centroid: list[float]) -> tuple[float, float]:
    """Fit the map to a locality and return the page coordinates of its centroid."""
    page.evaluate("b => window.__benchMap.fitBounds([[b[1], b[0]], [b[3], b[2]]], "
                  "{animate: false, maxZoom: 14})", bbox)
    page.wait_for_timeout(1500)  # tiles / SVG of the new view
    point = page.evaluate("ll => window.__benchMap.latLngToContainerPoint(ll)",
                          [centroid[1], centroid[0]])
    box = page.locator(".folium-map").bounding_box()
    return box["x"] + point["x"], box["y"] + point["y"]


TIMELINE_JS = """() => performance.getEntriesByType('resource').map(e => [
    Math.round(e.startTime), Math.round(e.responseEnd), e.name.replace(location.origin, '')])"""


def measure_ours(browser: Any, base: str, locality: dict[str, Any],
                 trace: bool = False) -> tuple[float, float, float]:
    """Return (first paint ms, panel ms wall-clock, panel ms in page) on the map page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(base + "/", wait_until="commit")
    page.wait_for_function("window.__raFirstPaint !== undefined", timeout=120_000)
    first_paint = page.evaluate("window.__raFirstPaint")
    if trace:
        # Where the time to first paint goes: each request's start and end, ms after navigation.
        log(f"first paint at {first_paint:.0f} ms; requests (start-end ms):")
        for start, end, name in page.evaluate(TIMELINE_JS):
            if start <= first_paint:
                log(f"  {start:>6}-{end:<6} {name[:110]}")
    page.evaluate("() => { window.__benchMap = riskatlas.map; }")
    x, y = click_point(page, locality["bbox"], locality["centroid"])
    code = locality["code"]
    started = time.perf_counter()
    page.mouse.click(x, y)
    page.wait_for_selector(f"#ra-panel-title[data-code='{code}']", timeout=30_000)
    wall = (time.perf_counter() - started) * 1000
    in_page = page.evaluate("window.__raPanelMs")
    context.close()
    return first_paint, wall, in_page


def measure_naive(server: Any, url: str, scratch: Path) -> tuple[float, float | None]:
    """Return (first paint ms, popup ms in page) of the naive page, in a fresh Chromium."""
    profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=scratch))
    process = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_ARGS, f"--user-data-dir={profile}",
         f"--window-size={VIEWPORT['width']},{VIEWPORT['height']}", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        result = server.results.get(timeout=600)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(profile, ignore_errors=True)
    log(f"naive: first paint {result['paint']:.0f} ms, popup {result['popup'] or 0:.0f} ms")
    return float(result["paint"]), result["popup"]


def run(repeats: int, naive_runs: int, trace: bool) -> None:
    """Build the data, serve both maps, measure, print the table."""
    from bench_ingest import start_cluster
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="riskatlas-bench-map-", dir="/tmp"))
    scratch.chmod(0o755)
    cluster, admin_url = start_cluster(scratch / "pg")
    process = None
    try:
        url, source = load_database(admin_url, scratch)
        process, base = serve_app(url, scratch / "data")
        ranking = urllib.request.urlopen(base + "/api/v1/rankings?limit=1", timeout=60).read()
        locality = json.loads(ranking)["items"][0]
        classes = json.loads(urllib.request.urlopen(
            base + "/api/v1/map/classes?score=composite", timeout=60).read())
        naive = write_naive_map(source, scratch / "naive", composites(url), classes, locality)
        static_server, static_base = serve_directory(scratch / "naive")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            ours = [measure_ours(browser, base, locality, trace and i == 0)
                    for i in range(repeats)]
            browser.close()
        log("ours (paint, panel wall, panel in page): "
            + "; ".join(f"{a:.0f}/{b:.0f}/{c:.0f}" for a, b, c in ours))
        theirs = []
        for _ in range(naive_runs):
            try:
                theirs.append(measure_naive(static_server, f"{static_base}/{naive.name}",
                                            scratch))
            except queue.Empty:
                log("naive run gave no result within 10 minutes")
        static_server.shutdown()
        report(ours, theirs)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        cluster.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def report(ours: list[tuple[float, float, float]],
           theirs: list[tuple[float, float | None]]) -> None:
    """Print medians and ratios (naive / ours: how many times slower the naive map is)."""
    paint = statistics.median(r[0] for r in ours)
    panel_wall = statistics.median(r[1] for r in ours)
    panel_page = statistics.median(r[2] for r in ours)
    log(f"\nmap of 20,000 localities, headless Chromium, cold context, median of {len(ours)} "
        f"runs (naive: {len(theirs)})")
    log(f"{'':<46}{'vector tiles (ours)':>20}{'naive Folium GeoJSON':>22}{'ratio':>8}")
    popups = [r[1] for r in theirs if r[1] is not None]
    naive_paint = statistics.median(r[0] for r in theirs) if theirs else None
    naive_popup = statistics.median(popups) if popups else None
    rows = [("navigation -> first choropleth paint (ms)", paint, naive_paint),
            ("click -> panel / popup shown, in page (ms)", panel_page, naive_popup),
            ("click -> panel shown, via the driver (ms)", panel_wall, None)]
    for label, mine, other in rows:
        other_text = f"{other:>22.0f}{other / mine:>8.1f}" if other else f"{'-':>22}{'-':>8}"
        log(f"{label:<46}{mine:>20.0f}{other_text}")
    if len(ours) > 1:
        # The first visitor after a start also waits for the server's per-run caches (map
        # options, class breaks, tiles); later visitors, each with a cold browser, do not.
        log(f"first visit after the server started: paint {ours[0][0]:.0f} ms; later visits "
            f"(cold browser, warm server): median {statistics.median(r[0] for r in ours[1:]):.0f}"
            " ms")
    log(f"targets: first paint < 2000 ms: {'met' if paint < 2000 else 'MISSED'}; "
        f"panel < 300 ms: {'met' if panel_wall < 300 else 'MISSED'} (driver wall clock)")
    log("all runs (ours: paint, panel via driver, panel in page): "
        + "; ".join(f"{a:.0f}/{b:.0f}/{c:.0f}" for a, b, c in ours))
    log("all runs (naive: paint, popup): "
        + "; ".join(f"{a:.0f}/{b if b is None else round(b)}" for a, b in theirs))


def main() -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="Runs of the vector-tile map (median reported)")
    parser.add_argument("--naive-runs", type=int, default=None,
                        help="Runs of the naive Folium map (default: --repeats; 0 skips it)")
    parser.add_argument("--trace", action="store_true",
                        help="Print the request timeline up to the first paint of the first run")
    args = parser.parse_args()
    naive_runs = args.repeats if args.naive_runs is None else args.naive_runs
    run(args.repeats, naive_runs, args.trace)


if __name__ == "__main__":
    main()
