"""Physical landscape of the synthetic demo region: grid, outline, river, towns, roads, terrain.

Everything here is pure: arrays and shapely geometries in, arrays and geometries out, with
randomness only from the `numpy.random.Generator` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from scipy import ndimage
from shapely.geometry import LineString, Point, Polygon

# An invented place on the eastern Mediterranean steppe: plausible latitudes, no real borders.
CENTRE_LON, CENTRE_LAT = 36.60, 32.25
GRID_WEST, GRID_NORTH = 36.27, 32.52
CELL_DEG = 0.001  # ~100 m, the WorldPop resolution
GRID_WIDTH, GRID_HEIGHT = 660, 540
NODATA = -9999.0
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320 * math.cos(math.radians(CENTRE_LAT))
# Coordinates are snapped to this grid so that shared edges are bit-identical.
PRECISION_DEG = 1e-6

TOWN_NAMES: tuple[tuple[str, str], ...] = (
    ("Madinat al-Noor", "مدينة النور"),
    ("Jisr al-Wadi", "جسر الوادي"),
    ("Tell Hamra", "تل حمراء"),
    ("Suq al-Khamis", "سوق الخميس"),
    ("Aïn Safa", "عين صفا"),
    ("Qaryat al-Jabal", "قرية الجبل"),
    ("Ras al-Ain", "رأس العين"),
    ("Deïr Sham", "دير شام"),
)


@dataclass(frozen=True)
class Grid:
    """The common raster grid of every demo raster (EPSG:4326)."""

    transform: Affine
    width: int
    height: int
    lon: np.ndarray  # cell-centre longitudes, shape (width,)
    lat: np.ndarray  # cell-centre latitudes, shape (height,)

    @property
    def shape(self) -> tuple[int, int]:
        """Return (rows, columns)."""
        return self.height, self.width

    def cell_of(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (row, col) of the cells holding the given points, clipped to the grid."""
        col = np.floor((lon - GRID_WEST) / CELL_DEG).astype(int)
        row = np.floor((GRID_NORTH - lat) / CELL_DEG).astype(int)
        return np.clip(row, 0, self.height - 1), np.clip(col, 0, self.width - 1)


@dataclass(frozen=True)
class Town:
    """A town: centre, expected population and whether it sits on the river."""

    name_en: str
    name_ar: str
    lon: float
    lat: float
    population: float
    on_river: bool


@dataclass(frozen=True)
class Landscape:
    """Geometry and terrain shared by every generated layer."""

    grid: Grid
    outline: Polygon
    river: LineString
    tributary: LineString
    roads: tuple[LineString, ...]
    towns: tuple[Town, ...]
    domain: np.ndarray  # bool: cells where rasters carry data (outline plus a margin)
    dist_river_km: np.ndarray
    dist_tributary_km: np.ndarray
    dist_road_km: np.ndarray
    river_position: np.ndarray  # 0..1 along the river of the nearest river cell
    dem: np.ndarray
    slope_deg: np.ndarray


def make_grid() -> Grid:
    """Return the demo raster grid."""
    transform = Affine(CELL_DEG, 0.0, GRID_WEST, 0.0, -CELL_DEG, GRID_NORTH)
    lon = GRID_WEST + CELL_DEG * (np.arange(GRID_WIDTH) + 0.5)
    lat = GRID_NORTH - CELL_DEG * (np.arange(GRID_HEIGHT) + 0.5)
    return Grid(transform, GRID_WIDTH, GRID_HEIGHT, lon, lat)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Return Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / field.std()


def to_km(dlon: np.ndarray | float, dlat: np.ndarray | float) -> np.ndarray | float:
    """Return the local metric length of a small lon/lat offset."""
    return np.hypot(np.asarray(dlon) * KM_PER_DEG_LON, np.asarray(dlat) * KM_PER_DEG_LAT)


def make_outline(rng: np.random.Generator) -> Polygon:
    """Return an irregular governorate outline of about 0.56° × 0.46°."""
    angles = np.linspace(0.0, 2.0 * math.pi, 96, endpoint=False)
    radius = np.ones_like(angles)
    for harmonic in range(2, 7):
        phase = rng.uniform(0, 2 * math.pi)
        radius += rng.uniform(0.02, 0.07) / harmonic * 2 * np.cos(harmonic * angles + phase)
    radius += 0.012 * rng.standard_normal(angles.size)  # a hand-drawn, not a smooth, border
    # Keep the outline inside the grid, with a margin for the hazard rasters' domain.
    radius *= min(1.0, 1.1 / radius.max())
    lon = CENTRE_LON + 0.28 * radius * np.cos(angles)
    lat = CENTRE_LAT + 0.23 * radius * np.sin(angles)
    return shapely.set_precision(Polygon(zip(lon, lat, strict=True)), PRECISION_DEG)


def _meander(
    rng: np.random.Generator, start: tuple[float, float], end: tuple[float, float],
    amplitude: float, n_vertices: int, max_frequency: float = 9.0,
) -> LineString:
    """Return a line from start to end that wanders sideways by a sum of random sine waves."""
    t = np.linspace(0.0, 1.0, n_vertices)
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    normal = (-dy / length, dx / length)
    offset = np.zeros_like(t)
    for frequency in rng.uniform(1.5, max_frequency, size=5):
        weight = amplitude / math.sqrt(frequency)
        offset += weight * np.sin(2 * math.pi * frequency * t + rng.uniform(0, 2 * math.pi))
    offset *= np.sin(math.pi * t) ** 0.3  # pinned at both ends
    lon = start[0] + dx * t + normal[0] * offset
    lat = start[1] + dy * t + normal[1] * offset
    return LineString(zip(lon, lat, strict=True))


def make_river(rng: np.random.Generator) -> LineString:
    """Return a meandering river crossing the region from north-west to south-east."""
    start = (CENTRE_LON - 0.42, CENTRE_LAT + rng.uniform(0.08, 0.14))
    end = (CENTRE_LON + 0.42, CENTRE_LAT - rng.uniform(0.10, 0.16))
    return _meander(rng, start, end, amplitude=0.025, n_vertices=600)


def make_tributary(rng: np.random.Generator, river: LineString) -> LineString:
    """Return a wadi that runs from the north-eastern hills into the river."""
    mouth = river.interpolate(rng.uniform(0.5, 0.6), normalized=True)
    source = (CENTRE_LON + rng.uniform(0.10, 0.18), CENTRE_LAT + rng.uniform(0.17, 0.21))
    return _meander(rng, source, (mouth.x, mouth.y), amplitude=0.012, n_vertices=200)


def dart_throw(
    rng: np.random.Generator, candidates: np.ndarray, min_km: float, limit: int,
    taken: np.ndarray | None = None,
) -> np.ndarray:
    """Return up to `limit` candidates (in order) at least `min_km` apart and from `taken`."""
    accepted: list[np.ndarray] = []
    others = np.empty((0, 2)) if taken is None else taken
    for candidate in candidates:
        pool = np.vstack([others, *accepted]) if accepted else others
        if pool.size and np.min(to_km(*(pool - candidate).T)) < min_km:
            continue
        accepted.append(candidate[None, :])
        if len(accepted) == limit:
            break
    return np.vstack(accepted) if accepted else np.empty((0, 2))


def _river_towns(rng: np.random.Generator, river: LineString, outline: Polygon) -> np.ndarray:
    """Return five town centres beside the river (a few hundred metres off the channel)."""
    inner = outline.buffer(-0.02)
    positions = np.sort(rng.uniform(0.12, 0.88, size=60))
    candidates = []
    for position in positions:
        on_river = river.interpolate(position, normalized=True)
        side = rng.choice([-1.0, 1.0]) * rng.uniform(0.003, 0.008)
        point = np.array([on_river.x + side * 0.6, on_river.y + side])
        if inner.contains(Point(point)):
            candidates.append(point)
    order = rng.permutation(len(candidates))
    return dart_throw(rng, np.array(candidates)[order], min_km=9.0, limit=5)


def make_towns(rng: np.random.Generator, river: LineString, outline: Polygon) -> tuple[Town, ...]:
    """Return eight towns: five along the river (the largest is the capital), three upland."""
    river_centres = _river_towns(rng, river, outline)
    inner = outline.buffer(-0.04)
    minx, miny, maxx, maxy = inner.bounds
    candidates = rng.uniform((minx, miny), (maxx, maxy), size=(400, 2))
    far_from_river = shapely.distance(shapely.points(candidates), river) > 0.07
    keep = shapely.contains_xy(inner, candidates[:, 0], candidates[:, 1]) & far_from_river
    upland = dart_throw(rng, candidates[keep], min_km=12.0, limit=3, taken=river_centres)
    sizes = np.sort(rng.lognormal(math.log(30_000), 0.5, size=len(river_centres) + len(upland)))
    sizes[-1] = rng.uniform(150_000, 190_000)  # the governorate capital
    sizes = sizes[::-1]
    centres = np.vstack([river_centres, upland])
    return tuple(
        Town(name_en, name_ar, float(lon), float(lat), float(size), index < len(river_centres))
        for index, ((name_en, name_ar), (lon, lat), size) in enumerate(
            zip(TOWN_NAMES, centres, sizes, strict=False)
        )
    )


def make_roads(rng: np.random.Generator, towns: tuple[Town, ...]) -> tuple[LineString, ...]:
    """Return a valley road through the river towns and spurs to the upland towns."""
    river_towns = sorted((t for t in towns if t.on_river), key=lambda t: t.lon)
    roads = []
    for a, b in zip(river_towns, river_towns[1:], strict=False):
        roads.append(_meander(rng, (a.lon, a.lat), (b.lon, b.lat), 0.004, 60, 3.0))
    for town in (t for t in towns if not t.on_river):
        nearest = min(river_towns, key=lambda r: to_km(r.lon - town.lon, r.lat - town.lat))
        roads.append(
            _meander(rng, (town.lon, town.lat), (nearest.lon, nearest.lat), 0.006, 80, 4.0)
        )
    return tuple(roads)


def distance_km(grid: Grid, lines: list[LineString]) -> tuple[np.ndarray, np.ndarray]:
    """Return each cell's distance (km) to the lines and the index of its nearest line cell."""
    mask = features.rasterize(
        [(line, 1) for line in lines], out_shape=grid.shape, transform=grid.transform,
        all_touched=True, dtype="uint8",
    )
    sampling = (CELL_DEG * KM_PER_DEG_LAT, CELL_DEG * KM_PER_DEG_LON)
    distance, indices = ndimage.distance_transform_edt(
        mask == 0, sampling=sampling, return_indices=True
    )
    return distance, indices


def river_position(grid: Grid, river: LineString, nearest: np.ndarray) -> np.ndarray:
    """Return, per cell, how far (0 = upstream end, 1 = downstream) its nearest river cell is."""
    flat = np.ravel_multi_index((nearest[0], nearest[1]), grid.shape).ravel()
    # Only the few thousand river cells need locating, not every cell of the grid.
    river_cells, inverse = np.unique(flat, return_inverse=True)
    rows, cols = np.unravel_index(river_cells, grid.shape)
    points = shapely.points(grid.lon[cols], grid.lat[rows])
    positions = shapely.line_locate_point(river, points, normalized=True)
    return positions[inverse].reshape(grid.shape)


def make_dem(
    rng: np.random.Generator, grid: Grid, dist_river: np.ndarray, dist_tributary: np.ndarray
) -> np.ndarray:
    """Return a synthetic DEM (m): a valley falling west to east between steep-sided hills."""
    # The floor falls with longitude, not with position along the river: the nearest river
    # point jumps where two meanders are equally near, which would tear the surface.
    floor = 420.0 - 220.0 * np.linspace(0.0, 1.0, grid.width)[None, :]
    valley_sides = 700.0 * (1.0 - np.exp(-((dist_river / 2.0) ** 2)))
    wadi = -120.0 * np.exp(-((dist_tributary / 1.2) ** 2))
    broad = 140.0 * smooth_noise(rng, grid.shape, 40)
    # Rugged relief (escarpments, ravines) grows away from the valley floor.
    rugged = smooth_noise(rng, grid.shape, 6) * 70.0 + smooth_noise(rng, grid.shape, 14) * 220.0
    ruggedness = np.clip(dist_river / 6.0, 0.1, 1.0)
    return floor + valley_sides + wadi + broad + ruggedness * rugged


def slope_degrees(grid: Grid, dem: np.ndarray) -> np.ndarray:
    """Return the terrain slope in degrees."""
    dy_m = CELL_DEG * KM_PER_DEG_LAT * 1000.0
    dx_m = CELL_DEG * KM_PER_DEG_LON * 1000.0
    grad_y, grad_x = np.gradient(dem, dy_m, dx_m)
    return np.degrees(np.arctan(np.hypot(grad_x, grad_y)))


def make_domain(grid: Grid, outline: Polygon) -> np.ndarray:
    """Return the cells where rasters carry data: the outline plus ~1 km, like a model domain."""
    return features.rasterize(
        [(outline.buffer(0.01), 1)], out_shape=grid.shape, transform=grid.transform,
        dtype="uint8",
    ).astype(bool)


def make_landscape(rng: np.random.Generator) -> Landscape:
    """Return the whole physical landscape drawn from `rng`."""
    grid = make_grid()
    outline = make_outline(rng)
    river = make_river(rng)
    tributary = make_tributary(rng, river)
    towns = make_towns(rng, river, outline)
    roads = make_roads(rng, towns)
    dist_river, nearest = distance_km(grid, [river])
    dist_tributary, _ = distance_km(grid, [tributary])
    dist_road, _ = distance_km(grid, list(roads))
    position = river_position(grid, river, nearest)
    dem = make_dem(rng, grid, dist_river, dist_tributary)
    return Landscape(
        grid, outline, river, tributary, roads, towns, make_domain(grid, outline),
        dist_river, dist_tributary, dist_road, position, dem, slope_degrees(grid, dem),
    )
