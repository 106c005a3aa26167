#!/usr/bin/env bash
# Serving benchmark: our MVT, PNG and item endpoints against the peers' numbers (tipg, titiler),
# on the same 20,000 polygons and COG, with the same tile lists and wrk settings.
#
#   bench/bench_serving.sh                          # full: 3 reps x 20 s, zooms 8,10,12,14
#   bench/bench_serving.sh --reps 1 --duration 5 --zooms 10,14     # quick look
#
# Steps: start the anchors' private PostGIS (../shared/bench-anchors/pg_cluster.sh up), migrate a
# database riskatlas_bench there, copy the bench localities into our schema (code = bench id),
# add one succeeded score run with scores derived from the bench columns, precompute the tile
# geometry, register the COG as hazard layer `bench_hazard`; then serve riskatlas twice:
#   1. tile caches off  -> ours-mvt, ours-png, ours-api (OGC item), ours-risk (risk profile,
#                          random over all 20,000 codes: mostly first lookups), ours-risk-hot2000
#                          (the same 2,000 codes again and again: repeat lookups from memory)
#   2. tile caches on   -> ours-mvt-cached, ours-png-cached
# and hand the URL templates to run_anchors.sh --targets-only; summarize.py prints the table.
# Options (passed through to run_anchors.sh): --reps N --duration S --zooms LIST --conns C
#   --with-peers   first measure tipg and titiler in the same run (same machine state), so the
#                  table compares side by side instead of against numbers taken at another time
# Env: SERVER=uvicorn (default; `uvicorn --factory api.main:create_app --workers $WORKERS
#      --no-access-log`, the way the peers are run) or SERVER=serve (`riskatlas serve`: one
#      process, access log on); WORKERS (2, like the peers); PORT (8090); KEEP_DB=1 to reuse
#      an already loaded riskatlas_bench.
# Only what this script starts is stopped on exit (the server by PID, the cluster if it was down).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
ANCHORS=${ANCHORS:-$(cd "$REPO/../shared/bench-anchors" && pwd)}
PY=$REPO/.venv/bin/python
PORT=${PORT:-8090}
WORKERS=${WORKERS:-2}
SERVER=${SERVER:-uvicorn}
BENCH_PGPORT=${BENCH_PGPORT:-55432}
BENCH_DSN=postgresql://postgres@127.0.0.1:$BENCH_PGPORT/bench
OURS_DSN=postgresql://postgres@127.0.0.1:$BENCH_PGPORT/riskatlas_bench
COG=${BENCH_DATA:-/tmp/benchdata}/hazard_cog.tif
DATA_DIR=$(mktemp -d /tmp/riskatlas-bench-XXXXXX)
OUT=${OUT:-/tmp/benchrun/serving-$(date +%Y%m%d-%H%M%S)}
PASS=(); PEERS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --with-peers) PEERS=1; shift;;
    --reps|--duration|--zooms|--conns|--threads|--light) PASS+=("$1" "$2"); shift 2;;
    --out) OUT=$2; shift 2;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
mkdir -p "$OUT"
log() { echo "[bench_serving $(date +%H:%M:%S)] $*" | tee -a "$OUT/bench.log"; }

SERVER_PID=""; PG_STARTED=0
cleanup() {
  stop_server
  [ "$PG_STARTED" = 1 ] && "$ANCHORS/pg_cluster.sh" down || true
  rm -rf "$DATA_DIR"
}
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID"
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$SERVER_PID" 2>/dev/null && kill -KILL "$SERVER_PID" || true
  fi
  SERVER_PID=""
}
trap cleanup EXIT INT TERM

# ------------------------------------------------------------------ peers (optional, same run)
if [ "$PEERS" = 1 ]; then
  log "peers: tipg and titiler"
  # run_anchors stops the cluster it (re)started when it ends; ours is brought up again below
  "$ANCHORS/run_anchors.sh" --no-db --no-raster --no-zonal "${PASS[@]+"${PASS[@]}"}" --out "$OUT"
fi

# ------------------------------------------------------------------ data: the anchors' cluster
if ! pg_isready -q -h 127.0.0.1 -p "$BENCH_PGPORT"; then
  "$ANCHORS/pg_cluster.sh" up | tee -a "$OUT/bench.log"; PG_STARTED=1
fi
ls "${BENCH_DATA:-/tmp/benchdata}"/tiles_z*.txt >/dev/null 2>&1 && [ -s "$COG" ] || {
  echo "bench data missing: run $ANCHORS/run_anchors.sh --targets-only once (it generates it)" >&2
  exit 3; }

if [ "${KEEP_DB:-0}" != 1 ] || ! psql "$OURS_DSN" -Atqc "SELECT 1" >/dev/null 2>&1; then
  log "loading riskatlas_bench"
  psql "postgresql://postgres@127.0.0.1:$BENCH_PGPORT/postgres" -qc "DROP DATABASE IF EXISTS riskatlas_bench WITH (FORCE)" -c "CREATE DATABASE riskatlas_bench"
  psql "$OURS_DSN" -qc "CREATE EXTENSION IF NOT EXISTS postgis"
  "$PY" -c "from geo.migrate import upgrade; upgrade('postgresql+psycopg://postgres@127.0.0.1:$BENCH_PGPORT/riskatlas_bench')"
  # localities: code = the bench id, so item URLs /items/{id} address them
  psql "$BENCH_DSN" -Atqc "COPY (SELECT id::text, name, 2, '{}', population, geom FROM public.localities ORDER BY id) TO STDOUT" \
    | psql "$OURS_DSN" -qc "COPY localities (code, name, level, names, population, geom) FROM STDIN"
  psql "$BENCH_DSN" -Atqc "COPY (SELECT id::text, risk_score, flood_score, heat_score FROM public.localities) TO STDOUT" \
    | psql "$OURS_DSN" -q -c "CREATE TEMP TABLE s (code text, risk float8, flood float8, heat float8)" \
        -c "COPY s FROM STDIN" -c "
      INSERT INTO methodologies (name, version, document) VALUES ('bench', 1, '{}');
      INSERT INTO score_runs (methodology_id, status, data_versions, parameters, summary,
          completed_at)
        SELECT id, 'succeeded', '{}', '{}', '{}', now() FROM methodologies WHERE name = 'bench';
      INSERT INTO score_results (run_id, locality_id, composite, pillars, dimensions, components,
          stressed_dimensions, compounded, hotspot, rank, details)
        SELECT (SELECT max(id) FROM score_runs), l.id, s.risk / 10,
          jsonb_build_object('hazard_exposure', s.flood / 10, 'vulnerability', s.heat / 10,
                             'lack_of_coping_capacity', (s.risk + s.flood) / 20),
          '{}', '{}', (s.risk > 60)::int + (s.flood > 60)::int + (s.heat > 60)::int,
          s.risk > 60 AND s.flood > 60,
          CASE WHEN s.risk > 80 THEN 'hot_99' WHEN s.risk < 20 THEN 'cold_95' ELSE 'not_significant' END,
          rank() OVER (ORDER BY s.risk DESC), '{}'
        FROM s JOIN localities l ON l.code = s.code;"
  "$PY" - "$OURS_DSN" "$COG" <<'EOF'
import json, sys, time
import rasterio
from rasterio.warp import transform_bounds
from sqlalchemy import create_engine, text
from geo.ingest.tile_geometry import refresh_tile_geometry

url, cog = sys.argv[1].replace("postgresql://", "postgresql+psycopg://"), sys.argv[2]
engine = create_engine(url)
started = time.monotonic()
with engine.begin() as conn:
    count = refresh_tile_geometry(conn)
print(f"tile geometry of {count} localities in {time.monotonic() - started:.1f} s")
with rasterio.open(cog) as src:
    west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    facts = {"crs": src.crs.to_string(), "w": src.width, "h": src.height,
             "res": json.dumps(list(src.res)), "nodata": src.nodata, "dtype": src.dtypes[0]}
with engine.begin() as conn:
    layer = conn.execute(text(
        "INSERT INTO raster_layers (name, role, kind, unit, polarity, threshold, level_share) "
        "VALUES ('bench_hazard', 'hazard', 'flood', 'index', 'higher_is_worse', 5, 0.1) "
        "RETURNING id")).scalar_one()
    conn.execute(text(
        "INSERT INTO raster_versions (layer_id, version, path, crs, width, height, resolution, "
        "nodata, dtype, value_kind, statistics, footprint) VALUES (:layer, 1, :path, :crs, :w, "
        ":h, CAST(:res AS jsonb), :nodata, :dtype, 'hazard', "
        "'{\"min\": 0, \"max\": 10}', ST_MakeEnvelope(:west, :south, :east, :north, 4326))"),
        {"layer": layer, "path": cog, **facts, "west": west, "south": south, "east": east,
         "north": north})
    conn.execute(text("ANALYZE"))
engine.dispose()
EOF
fi

# ------------------------------------------------------------------ our server
start_server() {  # extra env assignments...
  local url=http://127.0.0.1:$PORT
  if [ "$SERVER" = serve ]; then
    env "$@" DATABASE_URL="$OURS_DSN" RISKATLAS_DATA_DIR="$DATA_DIR" \
      setsid "$REPO/.venv/bin/riskatlas" serve --port "$PORT" --no-migrate >>"$OUT/server.log" 2>&1 &
  else
    env "$@" DATABASE_URL="$OURS_DSN" RISKATLAS_DATA_DIR="$DATA_DIR" \
      setsid "$REPO/.venv/bin/uvicorn" --factory api.main:create_app --app-dir "$REPO" \
      --host 127.0.0.1 --port "$PORT" --workers "$WORKERS" --no-access-log --log-level warning \
      >>"$OUT/server.log" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$url/healthz" 2>/dev/null && break; sleep 0.2; done
  curl -fsS -o /dev/null "$url/healthz" || { echo "our server did not start; see $OUT/server.log" >&2; exit 4; }
  log "riskatlas up on :$PORT ($SERVER, pid $SERVER_PID) $*"
}
BASE=http://127.0.0.1:$PORT
MVT="$BASE/tiles/localities/{z}/{x}/{y}.mvt"
PNG="$BASE/tiles/hazards/bench_hazard/{z}/{x}/{y}.png?rescale=0,10&colormap=viridis"
ITEM="$BASE/ogc/collections/localities/items/{id}"
# The risk profile: the first lookup of a code reads PostGIS, repeats come from memory; wrk
# picks codes at random from all 20,000, so the run mixes both as real polling clients would.
RISK="$BASE/api/v1/localities/{id}/risk"

cd "$REPO"
start_server RISKATLAS_TILES_CACHE_ENTRIES=0
"$ANCHORS/run_anchors.sh" --targets-only "${PASS[@]+"${PASS[@]}"}" --out "$OUT" \
  --target ours-mvt="$MVT" --target ours-png="$PNG" --target ours-api="$ITEM" \
  --target ours-risk="$RISK"
# A dashboard polling the same 2,000 codes: after the first pass every lookup is a repeat.
"$ANCHORS/run_anchors.sh" --targets-only "${PASS[@]+"${PASS[@]}"}" --out "$OUT" --ids 1-2000 \
  --target ours-risk-hot2000="$RISK"
stop_server
start_server RISKATLAS_TILES_CACHE_ENTRIES=100000
"$ANCHORS/run_anchors.sh" --targets-only "${PASS[@]+"${PASS[@]}"}" --out "$OUT" \
  --target ours-mvt-cached="$MVT" --target ours-png-cached="$PNG"
stop_server
"${BENCH_VENV:-/tmp/benchvenv}/bin/python" "$ANCHORS/summarize.py" "$OUT" | tee "$OUT/summary.txt"
log "done: $OUT"
