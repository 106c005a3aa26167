"""Hazard exposure against brute-force references on tiny rasters with hand-made geometry.

The reference computes each cell's covered fraction with shapely (intersection area / cell
area) and weights values by it: an independent route to exactextract's numbers.
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from exactextract import exact_extract
from rasterio.transform import from_origin

from geo.analysis.exposure import (
    aggregate_levels_to_parents,
    exposed_by_subgroup,
    hazard_exposure,
    run_exposure,
    weighted_quantile,
)
from geo.errors import ValidationError

NODATA = -9999.0
# 4 x 4 cells of 1 degree, x 0..4, y 0..4; row 0 is the top row (y 3..4)
HAZARD = np.array(
    [
        [0.2, 0.6, 1.8, 0.0],
        [0.4, 3.0, 0.1, 0.9],
        [0.0, 0.7, 2.5, NODATA],
        [1.1, 0.3, 0.0, 0.05],
    ],
    dtype=np.float32,
)


def write_raster(path: Path, data: np.ndarray, transform, crs: str = "EPSG:4326",
                 nodata: float | None = NODATA) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0],
                       count=1, dtype=str(data.dtype), crs=crs, transform=transform,
                       nodata=nodata) as dst:
        dst.write(data, 1)
    return str(path)


@pytest.fixture
def hazard_tif(tmp_path: Path) -> str:
    return write_raster(tmp_path / "hazard.tif", HAZARD, from_origin(0, 4, 1, 1))


def brute_force(poly: shapely.Geometry, data: np.ndarray, x0: float, y0: float, size: float,
                nodata: float | None = NODATA) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, coverage fractions) of the valid cells the polygon touches."""
    values, cover = [], []
    for row in range(data.shape[0]):
        for col in range(data.shape[1]):
            cell = shapely.box(x0 + col * size, y0 - (row + 1) * size,
                               x0 + (col + 1) * size, y0 - row * size)
            frac = shapely.intersection(cell, poly).area / cell.area
            if frac > 0 and data[row, col] != nodata:
                values.append(float(data[row, col]))
                cover.append(frac)
    return np.array(values), np.array(cover)


def localities(*geoms: shapely.Geometry, crs: str = "EPSG:4326") -> gpd.GeoDataFrame:
    codes = [f"L{i}" for i in range(len(geoms))]
    return gpd.GeoDataFrame({"name": codes}, geometry=list(geoms), crs=crs,
                            index=pd.Index(codes, name="code"))


SQUARE_1_5 = shapely.box(0, 3, 1.5, 4)  # cell (0,0) fully, half of cell (0,1)
VILLAGE = shapely.box(2.2, 1.2, 2.4, 1.4)  # 0.04 of cell (2,2), value 2.5
ODD = shapely.Polygon([(0.3, 0.2), (3.7, 0.6), (3.2, 3.9), (1.1, 2.8)])  # touches nodata cell


@pytest.mark.parametrize("poly", [SQUARE_1_5, VILLAGE, ODD, shapely.box(0, 0, 4, 4)])
def test_mean_max_share_match_brute_force(hazard_tif: str, poly: shapely.Geometry) -> None:
    out = hazard_exposure(localities(poly), hazard_tif, threshold=0.5)
    values, cover = brute_force(poly, HAZARD, 0, 4, 1)
    row = out.iloc[0]
    assert row["mean"] == pytest.approx(np.sum(values * cover) / cover.sum(), rel=1e-6)
    assert row["max"] == pytest.approx(values.max())
    assert row["share_area_over"] == pytest.approx(cover[values >= 0.5].sum() / cover.sum(),
                                                   rel=1e-6)


def test_square_over_one_and_a_half_cells_by_hand(hazard_tif: str) -> None:
    row = hazard_exposure(localities(SQUARE_1_5), hazard_tif, threshold=0.5).iloc[0]
    assert row["mean"] == pytest.approx((0.2 * 1 + 0.6 * 0.5) / 1.5, rel=1e-6)
    assert row["share_area_over"] == pytest.approx(0.5 / 1.5)
    assert row["max"] == pytest.approx(0.6)


def test_village_smaller_than_a_cell_is_not_empty(hazard_tif: str) -> None:
    row = hazard_exposure(localities(VILLAGE), hazard_tif, threshold=2.0).iloc[0]
    assert row["mean"] == pytest.approx(2.5)
    assert row["p90"] == pytest.approx(2.5)
    assert row["share_area_over"] == 1.0


def test_p90_equal_weights_is_numpy_linear_percentile(hazard_tif: str) -> None:
    # whole cells only and distinct values: the weighted quantile reduces to numpy's
    poly = shapely.box(0, 2, 3, 4)  # rows 0-1, cols 0-2
    row = hazard_exposure(localities(poly), hazard_tif, threshold=1).iloc[0]
    assert row["p90"] == pytest.approx(np.percentile(HAZARD[:2, :3], 90), rel=1e-6)


def test_p90_matches_exactextract_quantile_on_partial_cells(hazard_tif: str) -> None:
    polys = [SQUARE_1_5, ODD, shapely.box(0.5, 0.5, 3.5, 3.5)]
    ours = hazard_exposure(localities(*polys), hazard_tif, threshold=1)
    ref = exact_extract(hazard_tif, localities(*polys), ["quantile(q=0.9)"], output="pandas")
    np.testing.assert_allclose(ours["p90"], ref["quantile_90"], rtol=1e-6)


def test_weighted_quantile_merges_equal_values() -> None:
    # distinct values 1 (weight 2) and 3 (weight 1): n = 2, s = [0, 1*1 + 1*2] = [0, 3],
    # h = 0.5 * 3 * 1 = 1.5 -> 1 + 1.5/3 * (3 - 1) = 2
    assert weighted_quantile(np.array([1.0, 3.0, 1.0]), np.ones(3), 0.5) == pytest.approx(2.0)
    assert np.isnan(weighted_quantile(np.array([]), np.array([]), 0.9))


def test_nodata_cells_are_left_out(hazard_tif: str) -> None:
    poly = shapely.box(3, 1, 4, 2)  # exactly the nodata cell
    row = hazard_exposure(localities(poly), hazard_tif, threshold=0.5,
                          level_thresholds={"low": 0.1}).iloc[0]
    assert np.isnan(row["mean"]) and np.isnan(row["share_area_over"])
    assert row["hazard_level"] is None


def test_polygon_outside_the_raster(hazard_tif: str) -> None:
    out = hazard_exposure(localities(shapely.box(10, 10, 11, 11), SQUARE_1_5), hazard_tif,
                          threshold=0.5)
    assert np.isnan(out.loc["L0", "mean"])
    assert out.loc["L1", "mean"] == pytest.approx((0.2 * 1 + 0.6 * 0.5) / 1.5, rel=1e-6)


def test_raster_in_utm_polygons_in_4326(tmp_path: Path) -> None:
    x0, y0, size = 500_000.0, 5_000_000.0, 100.0
    tif = write_raster(tmp_path / "utm.tif", HAZARD, from_origin(x0, y0, size, size),
                       crs="EPSG:32633")
    poly_utm = shapely.box(x0 + 50, y0 - 330, x0 + 260, y0 - 20)
    # densify so the 4326 polygon maps back onto the same square
    poly_4326 = gpd.GeoSeries([shapely.segmentize(poly_utm, 5)], crs="EPSG:32633").to_crs(4326)
    row = hazard_exposure(localities(poly_4326.iloc[0]), tif, threshold=0.5).iloc[0]
    values, cover = brute_force(poly_utm, HAZARD, x0, y0, size)
    assert row["mean"] == pytest.approx(np.sum(values * cover) / cover.sum(), rel=1e-3)
    assert row["share_area_over"] == pytest.approx(cover[values >= 0.5].sum() / cover.sum(),
                                                   rel=1e-3)


def test_hazard_levels_by_share_of_area(hazard_tif: str) -> None:
    # Whole raster, 15 valid cells: >= 1.5 in 3 cells (1.8, 3.0, 2.5) = 20 %;
    # >= 3.0 in 1 cell = 6.7 %. With level_share 0.1: high (>= 3.0) fails, medium passes.
    # Top-left 2x2 block (0.2, 0.6, 0.4, 3.0): >= 3.0 in 1 of 4 cells = 25 % -> high.
    # Bottom-right cell (0.05): nothing over 0.1 -> very_low.
    levels = {"low": 0.1, "medium": 1.5, "high": 3.0}
    polys = [shapely.box(0, 0, 4, 4), shapely.box(0, 2, 2, 4), shapely.box(3, 0, 4, 1)]
    out = hazard_exposure(localities(*polys), hazard_tif, threshold=0.5,
                          level_thresholds=levels, level_share=0.1)
    assert list(out["hazard_level"]) == ["medium", "high", "very_low"]
    strict = hazard_exposure(localities(*polys), hazard_tif, threshold=0.5,
                             level_thresholds=levels, level_share=0.3)
    # 30 %: whole raster has >= 0.1 in 11/15 = 73 % (low), >= 1.5 in 20 % -> low
    assert list(strict["hazard_level"]) == ["low", "low", "very_low"]


def test_higher_is_better_polarity(hazard_tif: str) -> None:
    poly = shapely.box(0, 3, 4, 4)  # top row: 0.2, 0.6, 1.8, 0.0
    row = hazard_exposure(localities(poly), hazard_tif, threshold=0.5,
                          polarity="higher_is_better",
                          level_thresholds={"low": 1.0, "medium": 0.5, "high": 0.1}).iloc[0]
    assert row["share_area_over"] == pytest.approx(0.5)  # 0.2 and 0.0 are <= 0.5
    assert row["hazard_level"] == "high"  # 0.0 <= 0.1 in 1/4 >= 10 %


def test_population_on_a_coarser_grid(tmp_path: Path, hazard_tif: str) -> None:
    # 2 x 2 population cells of 2 degrees, 100 people each. Threshold 0.5 on the hazard:
    # top-left pop cell (hazard 0.2 0.6 / 0.4 3.0): 2 of 4 over -> 50 people exposed;
    # top-right (1.8 0.0 / 0.1 0.9): 2 of 4 -> 50; bottom-left (0.0 0.7 / 1.1 0.3): 2 -> 50;
    # bottom-right (2.5 nodata / 0.0 0.05): 1 of 3 valid -> 100 * 1/3.
    pop = write_raster(tmp_path / "pop.tif", np.full((2, 2), 100, dtype=np.float32),
                       from_origin(0, 4, 2, 2), nodata=-1)
    polys = [shapely.box(0, 0, 4, 4), shapely.box(0, 2, 2, 4), shapely.box(0, 3, 1, 4)]
    out = hazard_exposure(localities(*polys), hazard_tif, threshold=0.5, population_path=pop,
                          level_thresholds={"low": 0.1, "medium": 1.5, "high": 3.0})
    assert out["people"].tolist() == pytest.approx([400, 100, 25])
    assert out.loc["L0", "people_exposed"] == pytest.approx(150 + 100 / 3, rel=1e-5)
    assert out.loc["L1", "people_exposed"] == pytest.approx(50)
    # a quarter of a pop cell: 25 people carrying the cell's exposed fraction (0.5)
    assert out.loc["L2", "people_exposed"] == pytest.approx(12.5)
    assert out.loc["L1", "people_exposed_share"] == pytest.approx(0.5)


def test_population_in_another_crs(tmp_path: Path) -> None:
    # hazard in UTM 33N, population on the same cells expressed in UTM 32N... simpler and
    # still a real reprojection: population in EPSG:3857 over the same small area.
    x0, y0, size = 500_000.0, 5_000_000.0, 100.0
    hazard = np.zeros((20, 20), dtype=np.float32)
    hazard[:, 10:] = 1.0  # east half flooded
    tif = write_raster(tmp_path / "h.tif", hazard, from_origin(x0, y0, size, size),
                       crs="EPSG:32633", nodata=None)
    area = gpd.GeoSeries([shapely.box(x0, y0 - 2000, x0 + 2000, y0)], crs="EPSG:32633")
    left, bottom, right, top = area.to_crs(3857).total_bounds
    res = (right - left) / 40
    pop_tf = from_origin(left - 5 * res, top + 5 * res, res, res)
    pop = write_raster(tmp_path / "p.tif", np.ones((50, 50), dtype=np.float32), pop_tf,
                       crs="EPSG:3857", nodata=None)
    inner = gpd.GeoSeries([shapely.segmentize(shapely.box(x0 + 300, y0 - 1700, x0 + 1700,
                                                          y0 - 300), 20)], crs="EPSG:32633")
    row = hazard_exposure(localities(inner.to_crs(4326).iloc[0]), tif, threshold=0.5,
                          population_path=pop).iloc[0]
    # uniform population, half of the polygon flooded -> half the people exposed
    assert row["people_exposed_share"] == pytest.approx(0.5, abs=0.01)
    assert row["share_area_over"] == pytest.approx(0.5, abs=1e-3)


def test_run_exposure_process_pool_equals_in_process(hazard_tif: str) -> None:
    rng = np.random.default_rng(3)
    polys = [shapely.box(x, y, x + w, y + h) for x, y, w, h in
             zip(rng.uniform(0, 3, 40), rng.uniform(0, 3, 40), rng.uniform(0.05, 1, 40),
                 rng.uniform(0.05, 1, 40), strict=True)]
    gdf = localities(*polys)
    kwargs = dict(threshold=0.5, level_thresholds={"low": 0.1, "high": 1.5})
    local = run_exposure(gdf, hazard_tif, workers=1, **kwargs)
    with cf.ProcessPoolExecutor(2) as pool:
        pooled = run_exposure(gdf, hazard_tif, executor=pool, chunk_size=7, **kwargs)
    pd.testing.assert_frame_equal(local, pooled)
    assert list(local.index) == list(gdf.index)


@pytest.mark.slow
def test_run_exposure_on_dask_local_cluster_is_identical(hazard_tif: str, tmp_path: Path) -> None:
    distributed = pytest.importorskip("dask.distributed")
    pop = write_raster(tmp_path / "pop.tif", np.full((2, 2), 100, dtype=np.float32),
                       from_origin(0, 4, 2, 2), nodata=-1)
    rng = np.random.default_rng(5)
    polys = [shapely.box(x, y, x + 0.6, y + 0.4) for x, y in rng.uniform(0, 3.4, (30, 2))]
    gdf = localities(*polys)
    kwargs = dict(threshold=0.5, level_thresholds={"low": 0.1, "high": 1.5},
                  population_path=pop, chunk_size=8)
    local = run_exposure(gdf, hazard_tif, workers=2, **kwargs)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = run_exposure(gdf, hazard_tif, executor=client.get_executor(), **kwargs)
    pd.testing.assert_frame_equal(local, on_dask, check_exact=True)


def test_validation_errors(hazard_tif: str) -> None:
    gdf = localities(SQUARE_1_5)
    with pytest.raises(ValidationError, match="polarity"):
        hazard_exposure(gdf, hazard_tif, threshold=1, polarity="up")
    with pytest.raises(ValidationError, match="unknown hazard level"):
        hazard_exposure(gdf, hazard_tif, threshold=1, level_thresholds={"extreme": 3})
    with pytest.raises(ValidationError, match="no CRS"):
        hazard_exposure(gdf.set_crs(None, allow_override=True), hazard_tif, threshold=1)
    points = gpd.GeoDataFrame(geometry=[shapely.Point(1, 1)], crs=4326)
    with pytest.raises(ValidationError, match="Polygons"):
        hazard_exposure(points, hazard_tif, threshold=1)
    with pytest.raises(ValidationError, match="not found"):
        hazard_exposure(gdf, "/nonexistent.tif", threshold=1)


def test_aggregate_levels_to_parents() -> None:
    levels = pd.Series({"A1": "low", "A2": "high", "B1": "very_low", "B2": None, "C1": None})
    parent = pd.Series({"A1": "A", "A2": "A", "B1": "B", "B2": "B", "C1": "C"})
    out = aggregate_levels_to_parents(levels, parent)
    assert out.to_dict() == {"A": "high", "B": "very_low", "C": None}


def test_exposed_by_subgroup() -> None:
    exposed = pd.Series({"V1": 1000.0, "V2": 200.0})
    shares = pd.DataFrame({"sex=female": [0.5, 0.52], "age=0-14": [0.3, np.nan]},
                          index=["V1", "V2"])
    out = exposed_by_subgroup(exposed, shares)
    assert out.loc["V1", "sex=female"] == 500
    assert out.loc["V2", "sex=female"] == pytest.approx(104)
    assert np.isnan(out.loc["V2", "age=0-14"])
    with pytest.raises(ValidationError):
        exposed_by_subgroup(exposed, shares * 3)


# --- defects 3 and 4: misaligned grids, partial coverage ----------------------------------


def two_squares() -> gpd.GeoDataFrame:
    # W covers x 0..2, E covers x 2..4 (y 0..4)
    return gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 2, 4), shapely.box(2, 0, 4, 4)],
                            crs="EPSG:4326", index=pd.Index(["W", "E"], name="code"))


def test_two_rasters_on_misaligned_grids_in_one_run(tmp_path: Path) -> None:
    from geo.analysis.exposure import HazardLayer, run_exposure_layers

    # Same CRS, different origin and resolution: exactextract refused both in one call
    # ("Incompatible extents") and every score run failed with an internal error.
    first = write_raster(tmp_path / "a.tif", np.full((4, 4), 1.0, np.float32),
                         from_origin(0, 4, 1, 1))
    second = write_raster(tmp_path / "b.tif", np.full((6, 6), 2.0, np.float32),
                          from_origin(-0.3, 4.2, 0.75, 0.75))
    tables = run_exposure_layers(two_squares(), [HazardLayer(first, 0.5),
                                                 HazardLayer(second, 1.5)], workers=1)
    assert tables[0]["mean"].tolist() == pytest.approx([1.0, 1.0])
    assert tables[1]["mean"].tolist() == pytest.approx([2.0, 2.0])
    assert tables[1]["share_area_over"].tolist() == pytest.approx([1.0, 1.0])


def test_a_raster_covering_half_the_localities_is_no_data_elsewhere(tmp_path: Path) -> None:
    # The hazard covers x 0..2 only; population covers everything. E has no hazard data:
    # its share of people exposed is missing, not "0 % exposed".
    hazard = write_raster(tmp_path / "half.tif", np.full((4, 2), 1.0, np.float32),
                          from_origin(0, 4, 1, 1))
    people = write_raster(tmp_path / "people.tif", np.full((4, 4), 10.0, np.float32),
                          from_origin(0, 4, 1, 1))
    out = hazard_exposure(two_squares(), hazard, threshold=0.5, population_path=people)
    assert out.loc["W", "people_exposed_share"] == pytest.approx(1.0)
    assert np.isnan(out.loc["E", "people_exposed_share"])
    assert np.isnan(out.loc["E", "people_exposed"])
    assert out.loc["E", "people"] == pytest.approx(80.0)  # people are known, exposure not
    assert np.isnan(out.loc["E", "share_area_over"]) and np.isnan(out.loc["E", "mean"])


def test_share_is_over_the_people_where_the_layer_has_data(tmp_path: Path) -> None:
    # A locality straddling the raster's edge: half its people where the layer is (all
    # flooded), half off it. The share is of the people the layer sees (1.0), and the
    # covered people are reported beside it; not 0.5 as if the rest were dry.
    hazard = write_raster(tmp_path / "edge.tif", np.full((4, 3), 1.0, np.float32),
                          from_origin(0, 4, 1, 1))
    people = write_raster(tmp_path / "people.tif", np.full((4, 4), 10.0, np.float32),
                          from_origin(0, 4, 1, 1))
    out = hazard_exposure(two_squares(), hazard, threshold=0.5, population_path=people)
    assert out.loc["E", "people_exposed_share"] == pytest.approx(1.0)
    assert out.loc["E", "people_covered"] == pytest.approx(40.0)
