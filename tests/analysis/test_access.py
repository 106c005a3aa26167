"""Access measures on hand-computed examples (2SFCA on a 3 x 3 grid, KD-tree distances)."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from geo.analysis.access import (
    facilities_per_10k,
    institutions_exposed,
    nearest_distance_popweighted,
    population_points,
    share_within_radius,
    two_step_fca,
    two_step_fca_by_locality,
)

UTM = "EPSG:32633"


def test_two_step_fca_on_a_3x3_grid_by_hand() -> None:
    # Demand: 3 x 3 grid, 1 km spacing, x,y in {0,1,2} km, 100 people each except the
    # centre (1,1) with 400. Supply: S1 at (0,0) capacity 10, S2 at (2,2) capacity 5.
    # Radius 1.5 km: S1 reaches (0,0),(1,0),(0,1),(1,1) [distance 0, 1, 1, 1.414];
    # S2 reaches (2,2),(1,2),(2,1),(1,1).
    # Step 1: R1 = 10 / (100+100+100+400) = 1/70; R2 = 5 / 700 = 1/140.
    # Step 2: (0,0),(1,0),(0,1) -> 1/70; (2,2),(1,2),(2,1) -> 1/140;
    # centre -> 1/70 + 1/140 = 3/140; corners (2,0),(0,2) reach nothing -> 0.
    xy = np.array([(x * 1000.0, y * 1000.0) for y in range(3) for x in range(3)])
    pop = np.full(9, 100.0)
    pop[4] = 400.0
    supply_xy = np.array([[0.0, 0.0], [2000.0, 2000.0]])
    access = two_step_fca(pop, xy, np.array([10.0, 5.0]), supply_xy, 1500.0)
    expected = {(0, 0): 1 / 70, (1, 0): 1 / 70, (0, 1): 1 / 70, (1, 1): 3 / 140,
                (2, 2): 1 / 140, (1, 2): 1 / 140, (2, 1): 1 / 140, (2, 0): 0.0, (0, 2): 0.0}
    for i, (x, y) in enumerate(xy / 1000):
        assert access[i] == pytest.approx(expected[(int(x), int(y))]), (x, y)


def test_two_step_fca_edge_cases() -> None:
    assert two_step_fca(np.array([5.0]), np.array([[0.0, 0.0]]), np.array([]),
                        np.empty((0, 2)), 100).tolist() == [0.0]
    # a catchment holding nobody has nothing to share out: ratio 0, never inf or NaN
    out = two_step_fca(np.array([0.0]), np.array([[0.0, 0.0]]), np.array([3.0]),
                       np.array([[10.0, 0.0]]), 100)
    assert out.tolist() == [0.0]


def squares() -> gpd.GeoDataFrame:
    # two 2 x 2 km localities side by side, in UTM, handed over in 4326
    geoms = [shapely.box(500_000, 5_000_000, 502_000, 5_002_000),
             shapely.box(502_000, 5_000_000, 504_000, 5_002_000)]
    gdf = gpd.GeoDataFrame({"population": [1000, 3000]}, geometry=geoms, crs=UTM,
                           index=pd.Index(["W", "E"], name="code"))
    return gdf.set_geometry(gdf.geometry.segmentize(100)).to_crs(4326)


def facilities(xy: list[tuple[float, float]], **cols: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(cols, geometry=gpd.points_from_xy(*zip(*xy, strict=True)),
                            crs=UTM).to_crs(4326)


@pytest.fixture
def pop_tif(tmp_path: Path) -> str:
    # 4 x 2 cells of 1 km over both squares; people only in the top-left cell of W (400)
    # and the bottom-right cell of E (900), 100 everywhere else
    data = np.full((2, 4), 100, dtype=np.float32)
    data[0, 0], data[1, 3] = 400, 900
    path = tmp_path / "pop.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=2, count=1, dtype="float32",
                       crs=UTM, transform=from_origin(500_000, 5_002_000, 1000, 1000),
                       nodata=-1) as dst:
        dst.write(data, 1)
    return str(path)


def test_population_points_from_raster(pop_tif: str) -> None:
    pts = population_points(squares(), pop_tif, metric_crs=UTM)
    totals = pts.groupby("code")["weight"].sum()
    assert totals["W"] == pytest.approx(400 + 300, rel=1e-3)
    assert totals["E"] == pytest.approx(900 + 300, rel=1e-3)
    top_left = pts[(pts.code == "W") & (pts.weight > 350)]
    assert top_left[["x", "y"]].to_numpy()[0] == pytest.approx([500_500, 5_001_500], abs=0.5)


def test_nearest_distance_weighted_by_population(pop_tif: str) -> None:
    # one clinic at the centre of W's top-left cell
    clinic = facilities([(500_500, 5_001_500)])
    dist = nearest_distance_popweighted(squares(), clinic, population_path=pop_tif,
                                        metric_crs=UTM)
    # W cells: (500.5,1501.5) 400 ppl at 0 m; (501.5,1501.5) 100 at 1000; (500.5,1500.5) 100
    # at 1000; (501.5,1500.5) 100 at sqrt(2) km -> (0 + 1e5 + 1e5 + 141421.36) / 700
    assert dist["W"] == pytest.approx((2e5 + 100 * np.hypot(1000, 1000)) / 700, rel=1e-4)
    # without a raster: representative point of W (its centre, 501000, 5001000) -> 707 m
    no_raster = nearest_distance_popweighted(squares(), clinic, metric_crs=UTM)
    assert no_raster["W"] == pytest.approx(np.hypot(500, 500), rel=1e-3)


def test_share_within_radius(pop_tif: str) -> None:
    clinic = facilities([(500_500, 5_001_500)])
    share = share_within_radius(squares(), clinic, 1200, population_path=pop_tif,
                                metric_crs=UTM)
    assert share["W"] == pytest.approx(600 / 700, rel=1e-4)  # all but the diagonal cell
    assert share["E"] == pytest.approx(0.0, abs=1e-9)  # float slivers of W's cells only


def test_facilities_per_10k() -> None:
    clinics = facilities([(501_000, 5_001_000), (501_500, 5_000_500), (503_000, 5_001_000)])
    per = facilities_per_10k(squares(), clinics)
    assert per["W"] == pytest.approx(20.0) and per["E"] == pytest.approx(10 / 3)


def test_two_step_fca_by_locality_without_raster() -> None:
    # centroids 2 km apart; radius 2.5 km -> the one clinic (capacity 8) serves 4000 people
    clinic = facilities([(501_000, 5_001_000)], capacity=[8])
    fca = two_step_fca_by_locality(squares(), clinic, 2500, capacity_column="capacity",
                                   metric_crs=UTM)
    assert fca["W"] == pytest.approx(8 / 4000) and fca["E"] == pytest.approx(8 / 4000)


def test_institutions_exposed_in_another_crs(tmp_path: Path) -> None:
    data = np.array([[0.0, 1.2], [0.6, -9999]], dtype=np.float32)
    path = tmp_path / "flood.tif"
    with rasterio.open(path, "w", driver="GTiff", width=2, height=2, count=1, dtype="float32",
                       crs=UTM, transform=from_origin(500_000, 5_002_000, 1000, 1000),
                       nodata=-9999) as dst:
        dst.write(data, 1)
    inst = facilities([(500_500, 5_001_500), (501_500, 5_001_500), (500_500, 5_000_500),
                       (501_500, 5_000_500), (600_000, 5_000_000)])
    out = institutions_exposed(inst, str(path), 0.5)
    # on nodata and off the raster: unknown (NaN), not "dry" (defect 3: missing is not 0)
    np.testing.assert_array_equal(out.to_numpy(), [0.0, 1.0, 1.0, np.nan, np.nan])


# --- defect 1: facility counts at every level ---------------------------------------------


def test_facilities_count_at_every_level() -> None:
    from tests.analysis.test_conflict import nested

    clinics = facilities([(505_000, 5_002_000), (505_000, 5_008_000), (515_000, 5_005_000)])
    per = facilities_per_10k(nested(), clinics)
    # G: 3 per 300k = 0.1 per 10k; D1: 2 per 200k; D2: 1 per 100k; V1, V2: 1 per 100k
    assert per.to_dict() == pytest.approx({"G": 0.1, "D1": 0.1, "D2": 0.1, "V1": 0.1,
                                           "V2": 0.1})


# --- defect 9: the enhanced 2SFCA (Luo & Qi 2009), distance decay in both steps ----------


def test_e2sfca_gaussian_reproduces_a_published_worked_example() -> None:
    # sdc-catchment's documentation, "Introduction to floating catchment areas", "A tiny
    # catchment": three consumers of 100 at x = 0, 1, 2 and two providers of capacity 10
    # at x = 0 and x = 2; Gaussian decay with scale 1 (exp(-d^2 / 2)), no distance bound.
    # Published: binary access 0.066667 for all three; Gaussian c1 0.065179,
    # c2 0.069641, c3 0.065179.
    consumers = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    providers = np.array([[0.0, 0.0], [2.0, 0.0]])
    people, capacity = np.full(3, 100.0), np.full(2, 10.0)
    binary = two_step_fca(people, consumers, capacity, providers, 3.0)
    np.testing.assert_allclose(binary, [0.066667] * 3, atol=5e-7)
    gaussian = two_step_fca(people, consumers, capacity, providers, 3.0, decay="gaussian",
                            sigma_m=1.0)
    np.testing.assert_allclose(gaussian, [0.065179, 0.069641, 0.065179], atol=5e-7)


def test_catchment_edge_is_strict_and_linear_decay_by_hand() -> None:
    consumers = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    providers = np.array([[0.0, 0.0], [2.0, 0.0]])
    people, capacity = np.full(3, 100.0), np.full(2, 10.0)
    # radius exactly 2: the consumer 2 units away is outside (d < r, as in Luo & Wang).
    # R1 = 10 / (100 + 100) = 0.05 = R2; c1 and c3 reach one provider, c2 both.
    strict = two_step_fca(people, consumers, capacity, providers, 2.0)
    np.testing.assert_allclose(strict, [0.05, 0.10, 0.05])
    # linear decay W = 1 - d / 2: W(0) = 1, W(1) = 0.5, W(2) = 0 (edge).
    # R1 = 10 / (100 * 1 + 100 * 0.5) = 1/15 = R2; c1 = 1/15, c2 = 2 * 0.5 / 15.
    linear = two_step_fca(people, consumers, capacity, providers, 2.0, decay="linear")
    np.testing.assert_allclose(linear, [1 / 15, 1 / 15, 1 / 15])


def test_people_count_once_as_demand_across_levels() -> None:
    # The same 100 people sampled for a village and again for its district: only one copy
    # is demand, so the single facility's capacity 10 is shared by 100 people, not 200.
    xy = np.array([[0.0, 0.0], [0.0, 0.0]])
    access = two_step_fca(np.array([100.0, 100.0]), xy, np.array([10.0]),
                          np.array([[0.0, 0.0]]), 5.0, demand_mask=np.array([True, False]))
    np.testing.assert_allclose(access, [0.1, 0.1])
