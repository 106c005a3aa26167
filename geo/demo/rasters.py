"""Raster layers of the demo region: population (WorldPop-like) and three hazards."""

from __future__ import annotations

from typing import Any

import numpy as np
from rasterio import features
from scipy import ndimage

from geo.demo.admin import AdminUnits
from geo.demo.landscape import Landscape, smooth_noise

TOTAL_POPULATION = 1_200_000

# Each entry (less "file") is exactly the option set `ingest("hazard", path, **options)` takes.
HAZARDS: tuple[dict[str, Any], ...] = (
    {
        "file": "flood_depth.tif",
        "name": "Flood depth, 1-in-100-year river flood",
        "kind": "flood",
        "unit": "m",
        "polarity": "higher_is_worse",
        "threshold": 0.5,
        "level_thresholds": {"low": 0.1, "medium": 0.5, "high": 1.5},
        "description": "Synthetic flood depth along the Wadi Noor river and its tributary.",
    },
    {
        "file": "landslide_susceptibility.tif",
        "name": "Landslide susceptibility",
        "kind": "landslide",
        "unit": "index",
        "polarity": "higher_is_worse",
        "threshold": 0.6,
        "level_thresholds": {"low": 0.2, "medium": 0.4, "high": 0.6},
        "description": "Synthetic 0-1 index from the slope of a synthetic DEM and lithology.",
    },
    {
        "file": "drought_index.tif",
        "name": "Drought severity",
        "kind": "drought",
        "unit": "index",
        "polarity": "higher_is_worse",
        "threshold": 0.6,
        "level_thresholds": {"low": 0.3, "medium": 0.45, "high": 0.6},
        "description": "Synthetic 0-1 drought severity (0 none, 1 extreme); drier to the east.",
    },
)


def village_id_grid(land: Landscape, admin: AdminUnits) -> np.ndarray:
    """Return, per cell, 1 + the index of the village holding the cell centre (0 = outside)."""
    shapes = [(geom, index + 1) for index, geom in enumerate(admin.village_geom)]
    return features.rasterize(
        shapes, out_shape=land.grid.shape, transform=land.grid.transform, fill=0, dtype="int32"
    )


def _point_surface(land: Landscape, lon: np.ndarray, lat: np.ndarray, weight: np.ndarray,
                   sigma_cells: float) -> np.ndarray:
    """Return weights dropped on their cells and spread by a Gaussian kernel."""
    rows, cols = land.grid.cell_of(lon, lat)
    surface = np.zeros(land.grid.shape)
    np.add.at(surface, (rows, cols), weight)
    return ndimage.gaussian_filter(surface, sigma_cells, mode="constant")


def population_counts(
    rng: np.random.Generator, land: Landscape, admin: AdminUnits, village_ids: np.ndarray
) -> np.ndarray:
    """Return people per cell: dense towns, villages along river and roads, sparse hills."""
    is_town = admin.village_town >= 0
    towns = _point_surface(land, admin.village_lon[is_town], admin.village_lat[is_town],
                           admin.village_size[is_town], 6.0)
    villages = _point_surface(land, admin.village_lon[~is_town], admin.village_lat[~is_town],
                              admin.village_size[~is_town], 2.5)
    dispersed = (np.exp(-land.dist_road_km / 3.0) + 0.5 * np.exp(-land.dist_river_km / 5.0)
                 + 0.1) * np.exp(-land.slope_deg / 10.0)
    dispersed *= 0.08 * TOTAL_POPULATION / dispersed[village_ids > 0].sum()
    people = (towns + villages) * np.exp(0.35 * rng.standard_normal(land.grid.shape))
    people += dispersed * rng.lognormal(0.0, 0.8, size=land.grid.shape)
    # Only cells whose centre lies in a village count, so the raster and table sums agree.
    people = np.where(village_ids > 0, people, 0.0)
    people *= TOTAL_POPULATION / people.sum()
    return people


def flood_depth(rng: np.random.Generator, land: Landscape) -> np.ndarray:
    """Return flood depth (m): deep in a floodplain that widens downstream, 0 elsewhere."""
    width_km = 0.5 + 1.3 * land.river_position + 0.35 * smooth_noise(rng, land.grid.shape, 30)
    width_km = np.clip(width_km, 0.3, None)
    river = 3.0 * np.clip(1.0 - land.dist_river_km / width_km, 0.0, 1.0) ** 0.7
    wadi = 1.2 * np.clip(1.0 - land.dist_tributary_km / 0.35, 0.0, 1.0)
    ripple = 1.0 + 0.2 * smooth_noise(rng, land.grid.shape, 4)
    depth = np.clip(np.maximum(river, wadi) * ripple, 0.0, 3.0)
    return np.where(depth < 0.05, 0.0, depth)


def landslide_susceptibility(rng: np.random.Generator, land: Landscape) -> np.ndarray:
    """Return a 0-1 susceptibility: a logistic of slope, modulated by a synthetic lithology."""
    slope_term = 1.0 / (1.0 + np.exp(-(land.slope_deg - 14.0) / 3.5))
    lithology = 0.75 + 0.2 * smooth_noise(rng, land.grid.shape, 25)
    # Rivers undercut their banks: a little extra susceptibility on slopes right by the water.
    undercut = 0.15 * np.exp(-land.dist_river_km / 0.8) * (land.slope_deg > 8)
    return np.clip(slope_term * lithology + undercut, 0.0, 1.0)


def drought_index(rng: np.random.Generator, land: Landscape) -> np.ndarray:
    """Return a 0-1 drought severity: drier to the east, relieved near the river."""
    columns = np.linspace(0.0, 1.0, land.grid.width)[None, :]
    gradient = 0.2 + 0.55 * columns
    irrigation = 0.15 * np.exp(-land.dist_river_km / 3.0)
    noise = 0.08 * smooth_noise(rng, land.grid.shape, 35) + 0.02 * smooth_noise(
        rng, land.grid.shape, 3
    )
    return np.clip(gradient - irrigation + noise, 0.0, 1.0)


def hazard_arrays(rng: np.random.Generator, land: Landscape) -> dict[str, np.ndarray]:
    """Return each hazard raster keyed by its kind."""
    return {
        "flood": flood_depth(rng, land),
        "landslide": landslide_susceptibility(rng, land),
        "drought": drought_index(rng, land),
    }
