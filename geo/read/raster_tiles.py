"""PNG tiles, TileJSON and legends of hazard layers, rendered by rio-tiler from their COGs."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np
from rasterio.io import MemoryFile
from rio_tiler.colormap import cmap as colormaps
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from sqlalchemy import Engine, text

from geo.errors import NotFoundError, ValidationError
from geo.read.tiles import (
    CachedTile,
    QueryGate,
    TileAddress,
    TileCache,
    make_etag,
    translate_query_errors,
)
from geo.settings import TileSettings

# A layer kind's natural colormap; a layer where higher is better gets it reversed.
KIND_COLORMAPS = {
    "flood": "blues", "drought": "ylorbr", "heat": "inferno", "landslide": "oranges",
    "cyclone": "purples", "earthquake": "reds",
}
DEFAULT_COLORMAP = "viridis"
LEGEND_STOPS = 11


@dataclass(frozen=True)
class HazardVersion:
    """The metadata of one stored version of a hazard layer that tiles need."""

    layer: str
    kind: str
    unit: str | None
    polarity: str
    threshold: float | None
    level_thresholds: dict[str, float] | None
    version: int
    path: str
    nodata: float | None
    statistics: dict[str, Any]

    def default_colormap(self) -> str:
        """Return the colormap used when the request names none."""
        name = KIND_COLORMAPS.get(self.kind, DEFAULT_COLORMAP)
        return f"{name}_r" if self.polarity == "higher_is_better" else name

    def default_rescale(self) -> tuple[float, float]:
        """Return the value range stretched over the colormap: p2..p98, else min..max."""
        stats = self.statistics or {}
        percentiles = stats.get("percentiles") or {}
        for low, high in ((percentiles.get("2"), percentiles.get("98")),
                          (stats.get("min"), stats.get("max"))):
            if (isinstance(low, int | float) and isinstance(high, int | float)
                    and math.isfinite(low) and math.isfinite(high) and low < high):
                return float(low), float(high)
        return 0.0, 1.0


_VERSION_SQL = text("""
    SELECT l.name, l.kind, l.unit, l.polarity, l.threshold, l.level_thresholds,
           v.version, v.path, v.nodata, v.statistics
    FROM raster_layers l JOIN raster_versions v ON v.layer_id = l.id
    WHERE l.name = :name AND l.role = 'hazard'
      AND (CAST(:version AS integer) IS NULL OR v.version = CAST(:version AS integer))
    ORDER BY v.version DESC LIMIT 1
""")


def find_hazard_version(engine: Engine, layer: str, version: int | None) -> HazardVersion:
    """Return the requested (default: newest) version of a hazard layer, or raise NotFoundError."""
    with engine.connect() as conn:
        row = conn.execute(_VERSION_SQL, {"name": layer, "version": version}).first()
    if row is None:
        what = f"hazard layer {layer[:80]!r}" + (f" version {version}" if version else "")
        raise NotFoundError(f"no {what}", [{"field": "layer", "problem": "unknown layer"}])
    return HazardVersion(
        layer=row.name, kind=row.kind, unit=row.unit, polarity=row.polarity,
        threshold=row.threshold, level_thresholds=row.level_thresholds, version=row.version,
        path=row.path, nodata=row.nodata, statistics=row.statistics or {},
    )


def parse_colormap(name: str | None, layer: HazardVersion) -> str:
    """Return a known colormap name (the request's or the layer's default)."""
    if name is None or name == "":
        return layer.default_colormap()
    lowered = name.lower()
    if lowered not in colormaps.list():
        raise ValidationError(
            f"unknown colormap {name[:40]!r}; use a rio-tiler colormap such as viridis, "
            "blues, ylorrd or inferno",
            [{"field": "colormap", "problem": "unknown colormap"}],
        )
    return lowered


def parse_rescale(value: str | None, layer: HazardVersion) -> tuple[float, float]:
    """Return (low, high) from 'low,high', or the layer's default range."""
    if value is None or value == "":
        return layer.default_rescale()
    parts = value.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValidationError(
            f"rescale must be two numbers 'low,high', got {value[:40]!r}",
            [{"field": "rescale", "problem": "expected low,high"}],
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValidationError(
            f"rescale needs finite numbers with low < high, got {value[:40]!r}",
            [{"field": "rescale", "problem": "low must be below high"}],
        )
    return low, high


def legend(layer: HazardVersion, colormap: str, rescale: tuple[float, float]) -> dict[str, Any]:
    """Return the legend: colour stops over the value range, unit and class thresholds."""
    colours = colormaps.get(colormap)
    low, high = rescale
    stops = []
    for step in range(LEGEND_STOPS):
        fraction = step / (LEGEND_STOPS - 1)
        colour: Any = colours[round(fraction * 255)]
        red, green, blue = colour[0], colour[1], colour[2]
        stops.append({"value": low + (high - low) * fraction,
                      "color": f"#{red:02x}{green:02x}{blue:02x}"})
    return {
        "layer": layer.layer, "version": layer.version, "kind": layer.kind, "unit": layer.unit,
        "polarity": layer.polarity, "colormap": colormap, "rescale": list(rescale),
        "stops": stops, "threshold": layer.threshold,
        "level_thresholds": layer.level_thresholds, "nodata": "transparent",
    }


class ReaderPool:
    """Open COG readers kept per path; each is used by one thread at a time.

    GDAL dataset handles are not thread-safe, so a reader is checked out exclusively and
    returned afterwards; opening a COG (header, overviews) costs more than reading a tile.
    """

    def __init__(self, max_paths: int, per_path: int) -> None:
        self.max_paths = max_paths
        self.per_path = per_path
        self._idle: OrderedDict[str, list[Reader]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def reader(self, path: str) -> Iterator[Reader]:
        """Yield an open reader of the COG at path."""
        with self._lock:
            idle = self._idle.get(path)
            reader = idle.pop() if idle else None
        if reader is None:
            reader = Reader(path)
        try:
            yield reader
        except BaseException:
            reader.close()
            raise
        self._return(path, reader)

    def _return(self, path: str, reader: Reader) -> None:
        evicted: list[Reader] = []
        with self._lock:
            idle = self._idle.setdefault(path, [])
            self._idle.move_to_end(path)
            if len(idle) < self.per_path:
                idle.append(reader)
            else:
                evicted.append(reader)
            while len(self._idle) > self.max_paths:
                _, old = self._idle.popitem(last=False)
                evicted.extend(old)
        for old_reader in evicted:
            old_reader.close()

    def close(self) -> None:
        """Close every idle reader."""
        with self._lock:
            readers = [reader for idle in self._idle.values() for reader in idle]
            self._idle.clear()
        for reader in readers:
            reader.close()


def transparent_png(size: int) -> bytes:
    """Return a fully transparent square PNG of size x size pixels."""
    with MemoryFile() as memory:
        with memory.open(driver="PNG", width=size, height=size, count=4, dtype="uint8") as dst:
            dst.write(np.zeros((4, size, size), dtype="uint8"))
        return bytes(memory.read())


def render_png(reader: Reader, tile: TileAddress, colormap: str,
               rescale: tuple[float, float], size: int, zlevel: int = 6) -> bytes | None:
    """Return the PNG of one tile (nodata transparent), or None when it misses the raster."""
    if not reader.tile_exists(tile.x, tile.y, tile.z):
        return None
    try:
        image = reader.tile(tile.x, tile.y, tile.z, tilesize=size, indexes=1)
    except TileOutsideBounds:
        return None
    image = image.rescale(in_range=(rescale,))
    return bytes(image.render(img_format="PNG", colormap=colormaps.get(colormap), ZLEVEL=zlevel))


class RasterTileService:
    """Hazard layer tiles: layer lookup (briefly cached), open readers, cache, bounded renders."""

    def __init__(self, engine: Engine, settings: TileSettings) -> None:
        self.engine = engine
        self.readers = ReaderPool(settings.open_rasters, settings.max_concurrent_rasters)
        self.configure(settings)

    def configure(self, settings: TileSettings) -> None:
        """Apply (new) settings: fresh cache and gate."""
        self.settings = settings
        self.cache = TileCache(settings.cache_entries, settings.cache_bytes, settings.cache_ttl_s)
        self.gate = QueryGate(settings.max_concurrent_rasters, settings.queue_timeout_s,
                              "raster tiles")
        self._layers: dict[tuple[str, int | None], tuple[float, HazardVersion]] = {}
        empty = transparent_png(settings.raster_tile_size)
        self._empty = CachedTile(empty, make_etag(empty))

    async def find_layer(self, name: str, version: int | None) -> HazardVersion:
        """Return the layer version, without a thread hop when it was looked up recently."""
        hit = self._layers.get((name, version))
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        return await anyio.to_thread.run_sync(self.layer, name, version)

    def layer(self, name: str, version: int | None) -> HazardVersion:
        """Return the layer version; the newest version is re-read after a short time."""
        key = (name, version)
        hit = self._layers.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        found = translate_query_errors(
            lambda: find_hazard_version(self.engine, name, version), "the hazard layer")
        if len(self._layers) > 1000:
            self._layers.clear()
        # A pinned version never changes; the newest one does when a layer is uploaded again.
        ttl = self.settings.cache_ttl_s if version is not None else self.settings.latest_run_ttl_s
        self._layers[key] = (time.monotonic() + ttl, found)
        return found

    async def tile(self, layer: HazardVersion, tile: TileAddress, colormap: str,
                   rescale: tuple[float, float]) -> CachedTile:
        """Return the PNG tile, from the cache when this version's tile was rendered before."""
        key = ("png", layer.path, tile.z, tile.x, tile.y, colormap, rescale)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        rendered = await self.gate.run(self._render, layer.path, tile, colormap, rescale)
        self.cache.put(key, rendered)
        return rendered

    def _render(self, path: str, tile: TileAddress, colormap: str,
                rescale: tuple[float, float]) -> CachedTile:
        # A vanished or unreadable COG is a server fault: it surfaces as a logged 500
        # whose body names no path.
        with self.readers.reader(path) as reader:
            body = render_png(reader, tile, colormap, rescale, self.settings.raster_tile_size,
                              self.settings.png_zlevel)
        if body is None:
            return self._empty
        return CachedTile(body, make_etag(body))

    def tilejson(self, layer: HazardVersion, tiles_url: str) -> dict[str, Any]:
        """Return the TileJSON 3.0 document of a hazard layer version."""
        with self.readers.reader(layer.path) as reader:
            geographic = reader.tms.rasterio_geographic_crs
            bounds = [float(v) for v in reader.get_geographic_bounds(geographic)]
            minzoom, maxzoom = int(reader.minzoom), int(reader.maxzoom)
        return {
            "tilejson": "3.0.0", "name": layer.layer, "scheme": "xyz", "tiles": [tiles_url],
            "minzoom": minzoom, "maxzoom": maxzoom, "bounds": bounds,
            "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, minzoom],
            "description": f"{layer.kind} hazard layer, version {layer.version}",
            "version_of_layer": layer.version, "unit": layer.unit,
        }
