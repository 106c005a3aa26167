"""Service access per locality: distance to facilities, coverage, density and 2SFCA.

Straight-line distances in a metric CRS (default: UTM zone of the localities' centre),
nearest facilities found with a k-d tree over every population sample point — the same
question PostGIS KNN answers per locality, asked once for all people at array speed.

People are represented by sample points: the centres of population-raster cells touching a
locality, weighted by population x the cell's covered fraction (exactextract), or the
locality's representative point weighted by its population column when there is no raster.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from exactextract import exact_extract
from pyproj import CRS
from scipy.spatial import cKDTree

from geo.analysis.conflict import local_metric_crs
from geo.analysis.exposure import over_threshold
from geo.errors import ValidationError


def _metric(localities: gpd.GeoDataFrame, metric_crs: CRS | str | None) -> CRS:
    """Return the CRS distances are measured in."""
    return CRS.from_user_input(metric_crs) if metric_crs else local_metric_crs(localities)


def _xy(geoms: gpd.GeoSeries) -> np.ndarray:
    """Return an (n, 2) array of point coordinates."""
    return np.column_stack([geoms.x.to_numpy(), geoms.y.to_numpy()])


def population_points(localities: gpd.GeoDataFrame, population_path: str | None = None,
                      *, metric_crs: CRS | str | None = None) -> pd.DataFrame:
    """Return people sample points: columns code, x, y (metric CRS), weight (people)."""
    metric = _metric(localities, metric_crs)
    if population_path is None:
        if "population" not in localities.columns:
            raise ValidationError("without a population raster, localities need a 'population'"
                                  " column", {"field": "population"})
        pts = localities.geometry.representative_point().to_crs(metric)
        xy = _xy(pts)
        weight = pd.to_numeric(localities["population"], errors="coerce").fillna(0.0)
        return pd.DataFrame({"code": localities.index, "x": xy[:, 0], "y": xy[:, 1],
                             "weight": weight.to_numpy(dtype=float)})
    with rasterio.open(population_path) as ds:
        raster_crs = ds.crs
    polys = localities.to_crs(raster_crs) if localities.crs != raster_crs else localities
    frame = gpd.GeoDataFrame({"row": np.arange(len(polys))}, geometry=polys.geometry.to_numpy(),
                             crs=raster_crs)
    cells = exact_extract(population_path, frame, ["values", "coverage", "center_x", "center_y"],
                          include_cols=["row"], output="pandas")
    sizes = cells["values"].map(len).to_numpy()
    rows = np.repeat(cells["row"].to_numpy(), sizes)
    weight = np.concatenate([*cells["values"], []]) * np.concatenate([*cells["coverage"], []])
    pts = gpd.GeoSeries(gpd.points_from_xy(np.concatenate([*cells["center_x"], []]),
                                           np.concatenate([*cells["center_y"], []])),
                        crs=raster_crs).to_crs(metric)
    xy = _xy(pts)
    out = pd.DataFrame({"code": localities.index[rows], "x": xy[:, 0], "y": xy[:, 1],
                        "weight": weight})
    return out[out["weight"] > 0].reset_index(drop=True)


def _facility_xy(facilities: gpd.GeoDataFrame, metric: CRS) -> np.ndarray:
    """Return facility coordinates in the metric CRS, validating they are points."""
    kinds = set(facilities.geom_type.dropna()) - {"Point"}
    if kinds or facilities.crs is None:
        raise ValidationError("facilities must be points with a CRS", {"found": sorted(kinds)})
    return _xy(facilities.geometry.to_crs(metric))


def _weighted_by_locality(points: pd.DataFrame, values: np.ndarray, index: pd.Index) -> pd.Series:
    """Return the people-weighted mean of values per locality (NaN: no people)."""
    frame = pd.DataFrame({"code": points["code"], "w": points["weight"],
                          "wv": points["weight"] * values})
    sums = frame.groupby("code")[["w", "wv"]].sum().reindex(index)
    return sums["wv"] / sums["w"].where(sums["w"] > 0)


def nearest_distance_popweighted(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                                 *, population_path: str | None = None,
                                 metric_crs: CRS | str | None = None,
                                 points: pd.DataFrame | None = None) -> pd.Series:
    """Return per locality the people-weighted mean distance (m) to the nearest facility."""
    metric = _metric(localities, metric_crs)
    if points is None:
        points = population_points(localities, population_path, metric_crs=metric)
    if len(facilities) == 0:
        return pd.Series(np.nan, index=localities.index, name="distance_m")
    dist, _ = cKDTree(_facility_xy(facilities, metric)).query(points[["x", "y"]].to_numpy())
    return _weighted_by_locality(points, dist, localities.index).rename("distance_m")


def share_within_radius(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                        radius_m: float, *, population_path: str | None = None,
                        metric_crs: CRS | str | None = None,
                        points: pd.DataFrame | None = None) -> pd.Series:
    """Return per locality the share of people within radius_m of a facility (0..1)."""
    metric = _metric(localities, metric_crs)
    if points is None:
        points = population_points(localities, population_path, metric_crs=metric)
    if len(facilities) == 0:
        reached = np.zeros(len(points))
    else:
        dist, _ = cKDTree(_facility_xy(facilities, metric)).query(
            points[["x", "y"]].to_numpy(), distance_upper_bound=radius_m)
        reached = (dist <= radius_m).astype(float)
    return _weighted_by_locality(points, reached, localities.index).rename("share_within")


def facilities_per_10k(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame) -> pd.Series:
    """Return per locality the facilities inside it per 10,000 people (NaN: no people)."""
    if "population" not in localities.columns:
        raise ValidationError("localities need a 'population' column", {"field": "population"})
    pts = facilities.to_crs(localities.crs) if facilities.crs != localities.crs else facilities
    fac_ix, loc_ix = localities.sindex.query(pts.geometry, predicate="intersects")
    # a facility on a shared border counts once, for the first locality
    first = pd.Series(loc_ix).groupby(fac_ix).min()
    counts = pd.Series(np.bincount(first.to_numpy(), minlength=len(localities)),
                       index=localities.index)
    pop = pd.to_numeric(localities["population"], errors="coerce")
    return (counts / pop.where(pop > 0) * 10_000).rename("per_10k")


def two_step_fca(demand_pop: np.ndarray, demand_xy: np.ndarray, supply_capacity: np.ndarray,
                 supply_xy: np.ndarray, radius_m: float) -> np.ndarray:
    """Return the 2SFCA accessibility (capacity per person) of each demand point.

    Step 1: each supply j gets R_j = capacity_j / (people within radius_m of j).
    Step 2: each demand point i gets A_i = sum of R_j over supplies within radius_m of i.
    """
    demand_pop = np.asarray(demand_pop, dtype=float)
    access = np.zeros(len(demand_pop))
    if len(supply_xy) == 0 or len(demand_pop) == 0:
        return access
    lists = cKDTree(np.asarray(supply_xy)).query_ball_point(np.asarray(demand_xy), r=radius_m)
    sizes = np.fromiter((len(ix) for ix in lists), dtype=np.int64, count=len(lists))
    demand_ix = np.repeat(np.arange(len(lists)), sizes)
    supply_ix = np.fromiter((j for ix in lists for j in ix), dtype=np.int64, count=sizes.sum())
    people_in_reach = np.bincount(supply_ix, weights=demand_pop[demand_ix],
                                  minlength=len(supply_xy))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(people_in_reach > 0,
                         np.asarray(supply_capacity, dtype=float) / people_in_reach, 0.0)
    np.add.at(access, demand_ix, ratio[supply_ix])
    return access


def two_step_fca_by_locality(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                             radius_m: float, *, capacity_column: str | None = None,
                             population_path: str | None = None,
                             metric_crs: CRS | str | None = None,
                             points: pd.DataFrame | None = None) -> pd.Series:
    """Return per locality the people-weighted mean 2SFCA score (capacity per person)."""
    metric = _metric(localities, metric_crs)
    if points is None:
        points = population_points(localities, population_path, metric_crs=metric)
    capacity = (np.ones(len(facilities)) if capacity_column is None
                else pd.to_numeric(facilities[capacity_column], errors="coerce").fillna(0.0)
                .to_numpy())
    supply_xy = _facility_xy(facilities, metric) if len(facilities) else np.empty((0, 2))
    scores = two_step_fca(points["weight"].to_numpy(), points[["x", "y"]].to_numpy(), capacity,
                          supply_xy, radius_m)
    return _weighted_by_locality(points, scores, localities.index).rename("fca")


def institutions_exposed(institutions: gpd.GeoDataFrame, hazard_path: str, threshold: float,
                         *, polarity: str = "higher_is_worse") -> pd.Series:
    """Return per institution whether the hazard at its location is at/over the threshold.

    Points outside the raster or on nodata count as not exposed (unknown is not flooded).
    """
    if polarity not in ("higher_is_worse", "higher_is_better"):
        raise ValidationError(f"unknown polarity {polarity!r}", {"field": "polarity"})
    if institutions.crs is None:
        raise ValidationError("institutions have no CRS", {"field": "institutions"})
    if len(institutions) == 0:
        return pd.Series([], index=institutions.index, dtype=bool, name="exposed")
    with rasterio.open(hazard_path) as ds:
        pts = institutions.geometry.to_crs(ds.crs) if institutions.crs != ds.crs \
            else institutions.geometry
        coords = list(zip(pts.x.to_numpy(), pts.y.to_numpy(), strict=True))
        sampled = np.ma.concatenate(list(ds.sample(coords, indexes=1, masked=True)))
        left, bottom, right, top = ds.bounds
    values = sampled.astype(float).filled(np.nan)
    xs, ys = np.array([c[0] for c in coords]), np.array([c[1] for c in coords])
    outside = (xs < left) | (xs >= right) | (ys <= bottom) | (ys > top)
    values[outside] = np.nan
    hit = over_threshold(values, threshold, polarity)  # type: ignore[arg-type]
    return pd.Series(np.nan_to_num(hit, nan=0.0) > 0, index=institutions.index, name="exposed")

