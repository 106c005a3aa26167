"""Service access per locality: distance to facilities, coverage, density and 2SFCA.

Straight-line distances in a metric CRS (default: UTM zone of the localities' centre),
nearest facilities found with a k-d tree over every population sample point — the same
question PostGIS KNN answers per locality, asked once for all people at array speed.

People are represented by sample points: the centres of population-raster cells touching a
locality, weighted by population x the cell's covered fraction (exactextract), or the
locality's representative point weighted by its population column when there is no raster.
"""

from __future__ import annotations

from typing import Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from exactextract import exact_extract
from exactextract.operation import Operation
from pyproj import CRS, Transformer
from rasterio.transform import rowcol
from rasterio.windows import Window
from scipy.spatial import cKDTree

from geo.analysis.conflict import local_metric_crs
from geo.analysis.exposure import (
    MAX_BLOCK_CELLS,
    _raster_source,
    _read_band,
    _uses_mask,
    _WKBSource,
    over_threshold,
)
from geo.analysis.overlay import count_by_locality, points_in_localities
from geo.errors import ValidationError


def _metric(localities: gpd.GeoDataFrame, metric_crs: CRS | str | None) -> CRS:
    """Return the CRS distances are measured in."""
    return CRS.from_user_input(metric_crs) if metric_crs else local_metric_crs(localities)


def _xy(geoms: gpd.GeoSeries) -> np.ndarray:
    """Return an (n, 2) array of point coordinates."""
    return np.column_stack([geoms.x.to_numpy(), geoms.y.to_numpy()])


def population_points(localities: gpd.GeoDataFrame, population_path: str | None = None,
                      *, metric_crs: CRS | str | None = None) -> pd.DataFrame:
    """Return people sample points: columns code, x, y (metric CRS), weight (people), row.

    `row` is the locality's position in `localities`, so per-locality sums are bincounts
    rather than a group-by over millions of code strings.
    """
    metric = _metric(localities, metric_crs)
    if population_path is None:
        if "population" not in localities.columns:
            raise ValidationError("without a population raster, localities need a 'population'"
                                  " column", {"field": "population"})
        pts = localities.geometry.representative_point().to_crs(metric)
        xy = _xy(pts)
        weight = pd.to_numeric(localities["population"], errors="coerce").fillna(0.0)
        return pd.DataFrame({"code": localities.index, "x": xy[:, 0], "y": xy[:, 1],
                             "weight": weight.to_numpy(dtype=float),
                             "row": np.arange(len(localities))})
    rows, cx, cy, weight, raster_crs = _raster_cells(localities, population_path)
    x, y = Transformer.from_crs(raster_crs, metric, always_xy=True).transform(cx, cy)
    keep = weight > 0
    rows = rows[keep]
    return pd.DataFrame({"code": localities.index[rows], "x": np.asarray(x)[keep],
                         "y": np.asarray(y)[keep], "weight": weight[keep], "row": rows})


def population_points_by_level(localities: gpd.GeoDataFrame, population_path: str | None,
                                finest: pd.Series, *, metric_crs: CRS | str | None = None
                                ) -> pd.DataFrame:
    """Return people sample points for localities of several admin levels at once.

    Every person counts once as demand (column `demand`) in the 2SFCA: only the points of
    the finest localities (those nobody names as parent) are demand. With a raster, each
    locality has its own cells (a parent's are its children's, cut by its own outline).
    Without one, a parent has no better sample of its people than its children's points
    with their populations: those are repeated for every ancestor (demand False), so a
    district's distance is the population-weighted mean of its villages', not the
    distance from one point in its middle.
    """
    metric = _metric(localities, metric_crs)
    leaf = finest.reindex(localities.index).fillna(True).to_numpy(dtype=bool)
    if population_path is not None:
        points = population_points(localities, population_path, metric_crs=metric)
        points["demand"] = leaf[points["row"].to_numpy()]
        return points
    base = population_points(localities[leaf], None, metric_crs=metric)
    position = pd.Series(np.arange(len(localities)), index=localities.index)
    base["row"] = position.reindex(base["code"]).to_numpy()
    base["demand"] = True
    parent = localities["parent_code"]
    frames, current = [base], base
    for _ in range(12):  # a hierarchy is a handful of levels deep
        up = parent.reindex(current["code"]).to_numpy()
        keep = pd.notna(up) & pd.Series(up).isin(position.index).to_numpy()
        if not keep.any():
            break
        current = current[keep].assign(code=up[keep], demand=False)
        current["row"] = position.reindex(current["code"]).to_numpy()
        frames.append(current)
    return pd.concat(frames, ignore_index=True)


def _raster_cells(localities: gpd.GeoDataFrame, population_path: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, CRS]:
    """Return (locality row, centre x, centre y, people x covered fraction) of every cell.

    The raster is held in memory once (exposure's block source) and geometries go in as
    WKB: the stock GeoDataFrame path serialises every polygon to GeoJSON and reads the
    raster window by window.
    """
    with rasterio.Env(), rasterio.open(population_path) as ds:
        raster_crs = CRS.from_user_input(ds.crs)
        polys = localities.geometry
        polys = polys.to_crs(raster_crs) if CRS.from_user_input(polys.crs) != raster_crs \
            else polys
        wkbs = [bytes(b) for b in shapely.to_wkb(polys.to_numpy())]
        whole = Window(0, 0, ds.width, ds.height)
        source = _raster_source(ds, "population",
                                whole if ds.width * ds.height <= MAX_BLOCK_CELLS else None)
        ops = [Operation(stat, stat, source)
               for stat in ("values", "coverage", "center_x", "center_y")]
        cells = exact_extract(source, _WKBSource(wkbs, raster_crs.to_wkt()), ops,
                              output="pandas", strategy="feature-sequential",
                              include_cols=["row"])
    sizes = cells["values"].map(len).to_numpy()
    rows = np.repeat(cells["row"].to_numpy(dtype=np.int64), sizes)

    def flat(column: str) -> np.ndarray:
        return np.concatenate([*cells[column], np.empty(0)]).astype(float)

    weight = np.nan_to_num(flat("values") * flat("coverage"), nan=0.0)
    return rows, flat("center_x"), flat("center_y"), weight, raster_crs


def _facility_xy(facilities: gpd.GeoDataFrame, metric: CRS) -> np.ndarray:
    """Return facility coordinates in the metric CRS, validating they are points."""
    kinds = set(facilities.geom_type.dropna()) - {"Point"}
    if kinds or facilities.crs is None:
        raise ValidationError("facilities must be points with a CRS", {"found": sorted(kinds)})
    return _xy(facilities.geometry.to_crs(metric))


def _point_rows(points: pd.DataFrame, index: pd.Index) -> np.ndarray:
    """Return each point's locality position in index (-1: not a locality of index)."""
    if "row" in points.columns:
        rows = points["row"].to_numpy(dtype=np.int64)
        # trust the positions only if they were made for this index (checked on a sample)
        sample = np.linspace(0, len(rows) - 1, min(len(rows), 1000)).astype(np.int64)
        if len(rows) == 0 or (rows.min() >= 0 and rows.max() < len(index) and np.array_equal(
                index.take(rows[sample]).to_numpy(), points["code"].to_numpy()[sample])):
            return rows
    return index.get_indexer(points["code"])


def _weighted_by_locality(points: pd.DataFrame, values: np.ndarray, index: pd.Index) -> pd.Series:
    """Return the people-weighted mean of values per locality (NaN: no people).

    A pandas group-by sum (compensated, in point order) on integer locality positions:
    the same sums as grouping by code, without hashing millions of code strings.
    """
    rows = _point_rows(points, index)
    weight = points["weight"].to_numpy(dtype=float)
    frame = pd.DataFrame({"w": weight, "wv": weight * np.asarray(values, dtype=float)})
    sums = frame[rows >= 0].groupby(rows[rows >= 0]).sum()
    sums = sums.reindex(np.arange(len(index)))
    sums.index = index
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
    dist, _ = cKDTree(_facility_xy(facilities, metric)).query(points[["x", "y"]].to_numpy(),
                                                              workers=-1)
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
            points[["x", "y"]].to_numpy(), distance_upper_bound=radius_m, workers=-1)
        reached = (dist <= radius_m).astype(float)
    return _weighted_by_locality(points, reached, localities.index).rename("share_within")


def distance_and_coverage(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                          radius_m: float, *, points: pd.DataFrame,
                          metric_crs: CRS | str | None = None) -> tuple[pd.Series, pd.Series]:
    """Return nearest_distance_popweighted and share_within_radius from one k-d tree query.

    A person is within the radius exactly when the nearest facility is, so one query on
    all sample points answers both.
    """
    metric = _metric(localities, metric_crs)
    if len(facilities) == 0:
        return (pd.Series(np.nan, index=localities.index, name="distance_m"),
                _weighted_by_locality(points, np.zeros(len(points)), localities.index)
                .rename("share_within"))
    dist, _ = cKDTree(_facility_xy(facilities, metric)).query(points[["x", "y"]].to_numpy(),
                                                              workers=-1)
    return (_weighted_by_locality(points, dist, localities.index).rename("distance_m"),
            _weighted_by_locality(points, (dist <= radius_m).astype(float), localities.index)
            .rename("share_within"))


def facilities_per_10k(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame) -> pd.Series:
    """Return per locality the facilities inside it per 10,000 people (NaN: no people).

    A facility counts in one locality per admin level (`level` column), see
    `geo.analysis.overlay`.
    """
    if "population" not in localities.columns:
        raise ValidationError("localities need a 'population' column", {"field": "population"})
    counts = pd.Series(facilities_inside(localities, facilities), index=localities.index)
    pop = pd.to_numeric(localities["population"], errors="coerce")
    return (counts / pop.where(pop > 0) * 10_000).rename("per_10k")


def facilities_inside(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame
                      ) -> np.ndarray:
    """Return per locality the number of facilities inside it (every admin level counts)."""
    pairs = points_in_localities(facilities, localities)
    return count_by_locality(pairs, len(localities)).astype(int)


Decay = Literal["none", "gaussian", "linear"]


def decay_weights(distance: np.ndarray, radius: float, decay: Decay = "none",
                  sigma: float | None = None) -> np.ndarray:
    """Return the distance-decay weight of each distance (0 at or beyond the catchment).

    none: 1 inside the catchment (the original 2SFCA of Luo & Wang 2003); gaussian:
    exp(-d^2 / (2 sigma^2)), sigma default radius / 2; linear: 1 - d / radius (both the
    enhanced 2SFCA family of Luo & Qi 2009). The catchment edge is strict: d < radius.
    """
    d = np.asarray(distance, dtype=float)
    inside = d < radius
    if decay == "none":
        weight = np.ones_like(d)
    elif decay == "gaussian":
        s = radius / 2 if sigma is None else sigma
        weight = np.exp(-(d * d) / (2.0 * s * s))
    elif decay == "linear":
        weight = 1.0 - d / radius
    else:
        raise ValidationError(f"unknown distance decay {decay!r}", {"field": "decay"})
    return np.where(inside, weight, 0.0)


def two_step_fca(demand_pop: np.ndarray, demand_xy: np.ndarray, supply_capacity: np.ndarray,
                 supply_xy: np.ndarray, radius_m: float, *,
                 demand_tree: cKDTree | None = None, decay: Decay = "none",
                 sigma_m: float | None = None, demand_mask: np.ndarray | None = None
                 ) -> np.ndarray:
    """Return the (enhanced) 2SFCA accessibility (capacity per person) of each demand point.

    Step 1: each supply j gets R_j = capacity_j / sum_k P_k W(d_kj) over the people k
    within the catchment (d_kj < radius_m). Step 2: each demand point i gets
    A_i = sum_j R_j W(d_ij) over the supplies within the catchment of i. W is the decay
    (`decay_weights`; 1 everywhere with decay none), applied in both steps as in Luo & Qi
    (2009). demand_mask: the points that count as demand in step 1 (each person once:
    points repeated for several admin levels are False except at one level); step 2 is
    computed for every point. demand_tree: a k-d tree of demand_xy already built.
    """
    demand_pop = np.asarray(demand_pop, dtype=float)
    access = np.zeros(len(demand_pop))
    if len(supply_xy) == 0 or len(demand_pop) == 0:
        return access
    demand_xy = np.asarray(demand_xy, dtype=float)
    supply_xy = np.asarray(supply_xy, dtype=float)
    # every (supply, demand) pair within the radius: one sorted list per supply (a few
    # thousand) rather than one per demand point (millions)
    tree = demand_tree if demand_tree is not None else cKDTree(demand_xy)
    lists = tree.query_ball_point(supply_xy, r=radius_m, return_sorted=True, workers=-1)
    sizes = np.fromiter((len(ix) for ix in lists), dtype=np.int64, count=len(lists))
    supply_ix = np.repeat(np.arange(len(lists)), sizes)
    demand_ix = (np.concatenate([np.asarray(ix, dtype=np.int64) for ix in lists])
                 if sizes.sum() else np.empty(0, dtype=np.int64))
    gap = demand_xy[demand_ix] - supply_xy[supply_ix]
    weight = decay_weights(np.hypot(gap[:, 0], gap[:, 1]), radius_m, decay, sigma_m)
    counted = weight if demand_mask is None else weight * np.asarray(
        demand_mask, dtype=bool)[demand_ix]
    people_in_reach = np.bincount(supply_ix, weights=demand_pop[demand_ix] * counted,
                                  minlength=len(supply_xy))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(people_in_reach > 0,
                         np.asarray(supply_capacity, dtype=float) / people_in_reach, 0.0)
    access += np.bincount(demand_ix, weights=ratio[supply_ix] * weight,
                          minlength=len(demand_pop))
    return access


def two_step_fca_by_locality(localities: gpd.GeoDataFrame, facilities: gpd.GeoDataFrame,
                             radius_m: float, *, capacity_column: str | None = None,
                             population_path: str | None = None,
                             metric_crs: CRS | str | None = None,
                             points: pd.DataFrame | None = None,
                             demand_tree: cKDTree | None = None, decay: Decay = "none",
                             sigma_m: float | None = None) -> pd.Series:
    """Return per locality the people-weighted mean 2SFCA score (capacity per person).

    demand_tree: a k-d tree of the points' x, y when the caller keeps one for reuse. A
    `demand` column in points marks the points that count as demand (see two_step_fca).
    """
    metric = _metric(localities, metric_crs)
    if points is None:
        points = population_points(localities, population_path, metric_crs=metric)
    capacity = (np.ones(len(facilities)) if capacity_column is None
                else pd.to_numeric(facilities[capacity_column], errors="coerce").fillna(0.0)
                .to_numpy())
    supply_xy = _facility_xy(facilities, metric) if len(facilities) else np.empty((0, 2))
    mask = points["demand"].to_numpy(dtype=bool) if "demand" in points.columns else None
    scores = two_step_fca(points["weight"].to_numpy(), points[["x", "y"]].to_numpy(), capacity,
                          supply_xy, radius_m, demand_tree=demand_tree, decay=decay,
                          sigma_m=sigma_m, demand_mask=mask)
    return _weighted_by_locality(points, scores, localities.index).rename("fca")


def institutions_exposed(institutions: gpd.GeoDataFrame, hazard_path: str, threshold: float,
                         *, polarity: str = "higher_is_worse") -> pd.Series:
    """Return per institution 1.0 / 0.0: is the hazard at its location at/over the threshold.

    Points outside the raster or on nodata are NaN: unknown, neither flooded nor dry.
    """
    if polarity not in ("higher_is_worse", "higher_is_better"):
        raise ValidationError(f"unknown polarity {polarity!r}", {"field": "polarity"})
    if institutions.crs is None:
        raise ValidationError("institutions have no CRS", {"field": "institutions"})
    if len(institutions) == 0:
        return pd.Series([], index=institutions.index, dtype=float, name="exposed")
    with rasterio.Env(), rasterio.open(hazard_path) as ds:
        pts = institutions.geometry.to_crs(ds.crs) if institutions.crs != ds.crs \
            else institutions.geometry
        xs, ys = pts.x.to_numpy(dtype=float), pts.y.to_numpy(dtype=float)
        values = _sample_by_block(ds, xs, ys)
        left, bottom, right, top = ds.bounds
    outside = (xs < left) | (xs >= right) | (ys <= bottom) | (ys > top)
    values[outside] = np.nan
    hit = over_threshold(values, threshold, polarity)  # type: ignore[arg-type]
    return pd.Series(hit.astype(float), index=institutions.index, name="exposed")


def _sample_by_block(ds: rasterio.DatasetReader, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Return band 1 at each point (NaN: off the raster or no data), like ds.sample.

    The same cells as `ds.sample(masked=True)` (rows and columns from rowcol), but each
    internal block holding points is read once, not once per point: thousands of 1x1
    reads decompress the same COG tiles again and cost Python overhead each.
    """
    values = np.full(len(xs), np.nan)
    if len(xs) == 0:
        return values
    rows, cols = (np.asarray(a, dtype=np.int64) for a in rowcol(ds.transform, xs, ys))
    inside = np.flatnonzero((rows >= 0) & (rows < ds.height) & (cols >= 0) & (cols < ds.width))
    block_h, block_w = ds.block_shapes[0]
    use_mask = _uses_mask(ds)
    block = (rows[inside] // block_h) * (ds.width // block_w + 1) + cols[inside] // block_w
    for key in np.unique(block):
        at = inside[block == key]
        row0, col0 = int(rows[at[0]] // block_h * block_h), int(cols[at[0]] // block_w * block_w)
        window = Window(col0, row0, min(block_w, ds.width - col0), min(block_h, ds.height - row0))
        values[at] = _read_band(ds, window, use_mask)[rows[at] - row0, cols[at] - col0]
    return values
