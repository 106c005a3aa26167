"""Vector tiles of localities with their scores, built by PostGIS from precomputed geometry.

Localities are projected to Web Mercator once and simplified once per zoom band
(`geo.ingest.tile_geometry`), so a tile is one lean, prepared `ST_AsMVT` query over a GiST index.
Tiles of a score run are immutable, so an in-process LRU cache keyed by run serves repeats.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from geo.errors import DatabaseUnavailableError, NotFoundError, RiskAtlasError
from geo.ingest.tile_geometry import BANDS, ZoomBand, band_for_zoom, geometry_generation
from geo.settings import TileSettings

T = TypeVar("T")

LAYER_NAME = "localities"
EXTENT = 4096
BUFFER = 64
TILEJSON_MAX_ZOOM = 16
SCORE_FIELDS = {
    "code": "String", "name": "String", "level": "Number", "population": "Number",
    "population_withheld": "Boolean", "composite": "Number", "hazard_exposure": "Number",
    "vulnerability": "Number", "lack_of_coping_capacity": "Number",
    "stressed_dimensions": "Number", "compounded": "Boolean", "hotspot": "String",
    "rank": "Number",
}


class TileCoordinateError(RiskAtlasError):
    """A z/x/y address that is not a tile of the Web Mercator pyramid (HTTP 400)."""

    code = "invalid_tile"


class TilesBusyError(DatabaseUnavailableError):
    """Too many expensive tiles at once; the caller should retry shortly (HTTP 503)."""

    code = "busy"


class TileTimeoutError(DatabaseUnavailableError):
    """A tile took longer than the tile statement timeout (HTTP 503)."""

    code = "tile_timeout"


@dataclass(frozen=True)
class TileAddress:
    """A tile of the WebMercatorQuad pyramid."""

    z: int
    x: int
    y: int


_TILE_PART = re.compile(r"[0-9]{1,10}")


def parse_tile(z: str, x: str, y: str, max_zoom: int) -> TileAddress:
    """Return the tile address, or raise TileCoordinateError naming what is wrong."""
    values: dict[str, int] = {}
    for name, raw in (("z", z), ("y", y), ("x", x)):
        if not _TILE_PART.fullmatch(raw):
            raise TileCoordinateError(
                f"{name} must be a non-negative integer, got {raw[:40]!r}",
                [{"field": name, "problem": "not a non-negative integer"}],
            )
        values[name] = int(raw)
    zoom = values["z"]
    if zoom > max_zoom:
        raise TileCoordinateError(
            f"z must be between 0 and {max_zoom}, got {zoom}",
            [{"field": "z", "problem": f"outside 0..{max_zoom}"}],
        )
    size = 2**zoom
    for name in ("x", "y"):
        if values[name] >= size:
            raise TileCoordinateError(
                f"{name} must be between 0 and {size - 1} at zoom {zoom}, got {values[name]}",
                [{"field": name, "problem": f"outside 0..{size - 1}"}],
            )
    return TileAddress(zoom, values["x"], values["y"])


# -- the tile query -------------------------------------------------------------------------


def _pillar(name: str) -> str:
    # A pillar stored as anything but a JSON number is left out rather than failing the tile.
    return (f"CASE WHEN jsonb_typeof(r.pillars -> '{name}') = 'number' "
            f"THEN (r.pillars ->> '{name}')::float8 END AS {name}")


def _locality_tile_sql(band: ZoomBand) -> str:
    """Return the one MVT query of a band (psycopg placeholders; column from BANDS only)."""
    geom = band.column
    pillars = ", ".join(
        _pillar(name) for name in ("hazard_exposure", "vulnerability", "lack_of_coping_capacity")
    )
    return f"""
        SELECT ST_AsMVT(tile, '{LAYER_NAME}', {EXTENT}, 'geom', 'fid') FROM (
          SELECT g.locality_id AS fid, g.code, g.name, g.level,
                 CASE WHEN %(analyst)s OR g.population >= %(k_min)s THEN g.population END
                   AS population,
                 CASE WHEN NOT %(analyst)s AND g.population < %(k_min)s THEN true END
                   AS population_withheld,
                 r.composite, {pillars}, r.stressed_dimensions, r.compounded, r.hotspot, r.rank,
                 ST_AsMVTGeom(g.{geom}, ST_TileEnvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, {BUFFER},
                              true) AS geom
          FROM locality_tile_geometry g
          LEFT JOIN score_results r ON r.run_id = %(run_id)s AND r.locality_id = g.locality_id
          WHERE g.{geom} && ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => {BUFFER / EXTENT})
            AND (%(level)s::integer IS NULL OR g.level = %(level)s::integer)
        ) AS tile
    """


TILE_SQL: dict[str, str] = {band.column: _locality_tile_sql(band) for band in BANDS}


def query_locality_tile(
    conn: psycopg.Connection[Any], tile: TileAddress, run_id: int | None, level: int | None,
    analyst: bool, k_min: int,
) -> bytes:
    """Return the MVT bytes of one tile (empty when nothing is there)."""
    row = conn.execute(
        TILE_SQL[band_for_zoom(tile.z).column],  # type: ignore[arg-type]
        {"z": tile.z, "x": tile.x, "y": tile.y, "run_id": run_id, "level": level,
         "analyst": analyst, "k_min": k_min},
    ).fetchone()
    return bytes(row[0]) if row and row[0] is not None else b""


class TileConnections:
    """A few connections of the engine's pool kept for tile queries only.

    Kept checked out, in autocommit, with the short tile statement timeout set once per
    session: a tile is then one round trip of a server-side prepared statement, instead of
    checkout + ping + SET LOCAL + query + rollback. At most `size` exist (the gate's slots),
    so the rest of the pool stays free for other endpoints.
    """

    def __init__(self, engine: Engine, timeout_ms: int) -> None:
        self.engine = engine
        self.timeout_ms = timeout_ms
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Yield a tile connection; a broken one is discarded, never reused."""
        with self._lock:
            pooled = self._idle.pop() if self._idle else None
        if pooled is None:
            pooled = self._open()
        try:
            yield pooled.driver_connection
        except BaseException:
            driver = pooled.driver_connection
            if driver.closed or driver.info.transaction_status != TransactionStatus.IDLE:
                pooled.invalidate()
                raise
            self._give_back(pooled)
            raise
        self._give_back(pooled)

    def _open(self) -> Any:
        pooled = self.engine.raw_connection()
        driver: Any = pooled.driver_connection
        driver.rollback()
        driver.autocommit = True
        driver.prepare_threshold = 0
        driver.execute("SELECT set_config('statement_timeout', %s, false)", [str(self.timeout_ms)])
        return pooled

    def _give_back(self, pooled: Any) -> None:
        with self._lock:
            self._idle.append(pooled)

    def close(self) -> None:
        """Close the kept connections (their session settings must not return to the pool)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for pooled in idle:
            pooled.invalidate()


# -- caches -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedTile:
    """A rendered tile with its strong ETag."""

    body: bytes
    etag: str


def make_etag(body: bytes) -> str:
    """Return a strong ETag of the bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


class TileCache:
    """A thread-safe LRU of tiles bounded by entries, bytes and age."""

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._items: OrderedDict[Hashable, tuple[float, CachedTile]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CachedTile | None:
        """Return the cached tile, or None when absent or too old."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            if item[0] < time.monotonic():
                self._drop(key)
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, key: Hashable, tile: CachedTile) -> None:
        """Store the tile, evicting the least recently used ones beyond the bounds."""
        size = len(tile.body)
        if self.max_entries == 0 or size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                self._drop(key)
            self._items[key] = (time.monotonic() + self.ttl_s, tile)
            self._bytes += size
            while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._items)))

    def clear(self) -> None:
        """Forget every tile."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def _drop(self, key: Hashable) -> None:
        _, tile = self._items.pop(key)
        self._bytes -= len(tile.body)


class QueryGate:
    """At most `slots` expensive renders at once; a caller waits `wait_s`, then gets busy (503).

    Waiting happens in the event loop, not in worker threads, so a burst of slow tiles never
    starves the thread pool the other endpoints need.
    """

    def __init__(self, slots: int, wait_s: float, what: str) -> None:
        self._slots = anyio.Semaphore(slots)
        self._threads = anyio.CapacityLimiter(slots)
        self.wait_s = wait_s
        self.what = what

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """Return func(*args) computed in a worker thread once a slot is free."""
        try:
            with anyio.fail_after(self.wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise TilesBusyError(
                f"the server is busy rendering {self.what}; retry in a moment"
            ) from None
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._threads)
        finally:
            self._slots.release()


# -- runs --------------------------------------------------------------------------------------

_LATEST_RUN = text(
    "SELECT id FROM score_runs WHERE status = 'succeeded' "
    "ORDER BY completed_at DESC NULLS LAST, id DESC LIMIT 1"
)
_RUN_STATUS = text("SELECT status FROM score_runs WHERE id = :id")
_RUN_PATTERN = re.compile(r"[0-9]{1,9}")


def latest_run_id(conn: Connection) -> int | None:
    """Return the id of the newest succeeded score run, or None when there is none."""
    value = conn.execute(_LATEST_RUN).scalar()
    return None if value is None else int(value)


def check_run(conn: Connection, run: str) -> int:
    """Return the id of the named succeeded run, or raise NotFoundError."""
    if not _RUN_PATTERN.fullmatch(run):
        raise NotFoundError(f"no score run {run[:40]!r}; use a run id or 'latest'",
                            [{"field": "run", "problem": "unknown run"}])
    status = conn.execute(_RUN_STATUS, {"id": int(run)}).scalar()
    if status is None:
        raise NotFoundError(f"no score run {run}", [{"field": "run", "problem": "unknown run"}])
    if status != "succeeded":
        raise NotFoundError(f"score run {run} has not succeeded (it is {status})",
                            [{"field": "run", "problem": f"run is {status}"}])
    return int(run)


class RunResolver:
    """Resolve `run` parameters to run ids; succeeded runs are immutable, `latest` is re-read."""

    def __init__(self, engine: Engine, latest_ttl_s: float) -> None:
        self.engine = engine
        self.latest_ttl_s = latest_ttl_s
        self._latest: tuple[float, int | None] | None = None
        self._known: set[int] = set()

    def cached(self, run: str | None) -> tuple[bool, int | None]:
        """Return (True, id) when the answer is known without the database."""
        if run is None or run == "latest":
            if self._latest is not None and self._latest[0] > time.monotonic():
                return True, self._latest[1]
            return False, None
        if run.isascii() and run.isdigit() and int(run) in self._known:
            return True, int(run)
        return False, None

    def resolve(self, run: str | None) -> int | None:
        """Return the run id (None: no run yet and `latest` asked), or raise NotFoundError."""
        hit, value = self.cached(run)
        if hit:
            return value
        with self.engine.connect() as conn:
            if run is None or run == "latest":
                value = latest_run_id(conn)
                self._latest = (time.monotonic() + self.latest_ttl_s, value)
                return value
            value = check_run(conn, run)
        if len(self._known) < 100_000:
            self._known.add(value)
        return value

    def forget(self) -> None:
        """Forget the latest run, so the next request reads it again."""
        self._latest = None


# -- the service the HTTP layer calls ------------------------------------------------------------


@dataclass(frozen=True)
class TileResult:
    """A served tile: bytes, ETag, and the run it shows."""

    body: bytes
    etag: str
    run_id: int | None
    from_cache: bool


def translate_query_errors(func: Callable[[], T], what: str) -> T:
    """Return func(); a cancelled statement or an exhausted pool becomes a 503 domain error."""
    try:
        return func()
    except PoolTimeoutError:
        raise TilesBusyError(f"no database connection free for {what}; retry in a moment") from None
    except (DBAPIError, psycopg.Error) as exc:
        driver_error = exc.orig if isinstance(exc, DBAPIError) else exc
        if isinstance(driver_error, psycopg.errors.QueryCanceled):
            raise TileTimeoutError(
                f"{what} took too long and was cancelled; zoom in or retry later"
            ) from None
        if isinstance(driver_error, psycopg.OperationalError):
            raise DatabaseUnavailableError("the database is not reachable right now") from None
        raise


class TileService:
    """Vector tiles of localities: run resolution, cache, bounded rendering."""

    def __init__(self, engine: Engine, settings: TileSettings, k_min: int) -> None:
        self.engine = engine
        self.k_min = k_min
        self.connections: TileConnections | None = None
        self.configure(settings)

    def configure(self, settings: TileSettings) -> None:
        """Apply (new) settings: fresh cache, gate and run resolver."""
        self.settings = settings
        self.cache = TileCache(settings.cache_entries, settings.cache_bytes, settings.cache_ttl_s)
        self.gate = QueryGate(settings.max_concurrent_queries, settings.queue_timeout_s,
                              "vector tiles")
        self.runs = RunResolver(self.engine, settings.latest_run_ttl_s)
        if self.connections is not None:
            self.connections.close()
        self.connections = TileConnections(self.engine, settings.statement_timeout_ms)

    async def resolve_run(self, run: str | None) -> int | None:
        """Return the run id for the `run` parameter (cached when possible)."""
        hit, value = self.runs.cached(run)
        if hit:
            return value
        return await anyio.to_thread.run_sync(
            translate_query_errors, lambda: self.runs.resolve(run), "the score run"
        )

    async def locality_tile(
        self, tile: TileAddress, run: str | None, level: int | None, analyst: bool
    ) -> TileResult:
        """Return the tile of localities with the run's scores, from the cache when possible."""
        run_id = await self.resolve_run(run)
        # `analyst` is part of the key: a tile rendered for an analyst never reaches the public.
        key = (geometry_generation(), run_id, level, tile.z, tile.x, tile.y, analyst)
        cached = self.cache.get(key)
        if cached is not None:
            return TileResult(cached.body, cached.etag, run_id, True)
        rendered = await self.gate.run(self._render, tile, run_id, level, analyst)
        self.cache.put(key, rendered)
        return TileResult(rendered.body, rendered.etag, run_id, False)

    def _render(self, tile: TileAddress, run_id: int | None, level: int | None,
                analyst: bool) -> CachedTile:
        connections = self.connections
        assert connections is not None  # set by configure()

        def query() -> bytes:
            with connections.connection() as conn:
                return query_locality_tile(conn, tile, run_id, level, analyst, self.k_min)

        body = translate_query_errors(query, "the tile")
        return CachedTile(body, make_etag(body))

    def tilejson(self, tiles_url: str, run_id: int | None) -> dict[str, Any]:
        """Return the TileJSON 3.0 document of the localities layer."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
                "FROM (SELECT ST_Extent(geom) AS e FROM localities) s"
            )).first()
            levels = [int(v) for v in conn.execute(text(
                "SELECT DISTINCT level FROM locality_tile_geometry ORDER BY level")).scalars()]
        bounds = [-180.0, -85.0511, 180.0, 85.0511]
        if row is not None and row[0] is not None:
            bounds = [float(v) for v in row]
        center = [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, 6]
        return {
            "tilejson": "3.0.0",
            "name": LAYER_NAME,
            "description": "Localities with their composite, pillar and stress scores",
            "scheme": "xyz",
            "tiles": [tiles_url],
            "minzoom": 0,
            "maxzoom": TILEJSON_MAX_ZOOM,
            "bounds": bounds,
            "center": center,
            "vector_layers": [{
                "id": LAYER_NAME, "fields": SCORE_FIELDS, "minzoom": 0,
                "maxzoom": TILEJSON_MAX_ZOOM,
                "description": "one polygon per locality; filter by `level`",
            }],
            "run": run_id,
            "levels": levels,
        }
