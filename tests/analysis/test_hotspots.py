"""Getis-Ord Gi* hot spots against esda called directly and the textbook formula."""

from __future__ import annotations

import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from esda.getisord import G_Local
from libpysal.weights import lat2W
from shapely.geometry import box

from geo.analysis.hotspots import (
    benjamini_hochberg,
    contiguity_weights,
    getis_ord_hotspots,
)
from geo.errors import ValidationError

# A 5 x 5 lattice with a hot top-left corner (values row by row, row 0 at the top).
HOT_CORNER = np.array(
    [[9, 9, 8, 2, 1],
     [9, 8, 3, 1, 2],
     [7, 2, 2, 1, 1],
     [1, 2, 1, 2, 1],
     [2, 1, 1, 1, 2]], dtype=float,
).ravel()
SEED = 20240601


def lattice(values: np.ndarray, size: int = 5, crs: str | None = "EPSG:3857") -> gpd.GeoDataFrame:
    # Cell i = row * size + col, the same numbering as libpysal's lat2W.
    cells = [box(col, -row, col + 1, -row + 1) for row in range(size) for col in range(size)]
    return gpd.GeoDataFrame(
        {"composite": values}, geometry=cells, crs=crs,
        index=pd.Index([f"C{i:02d}" for i in range(size * size)], name="code"),
    )


def esda_reference(values: np.ndarray, permutations: int = 999) -> G_Local:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return G_Local(values, lat2W(5, 5, rook=False), transform="B", star=True,
                       permutations=permutations, seed=SEED, n_jobs=1)


def textbook_gi_star(values: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Gi* z-score (Getis & Ord 1995; Ord & Getis 1995) with binary weights and self."""
    weights = adjacency + np.eye(len(values))
    n = len(values)
    mean = values.mean()
    spread = np.sqrt((values**2).mean() - mean**2)
    weight_sum = weights.sum(axis=1)
    weight_squares = (weights**2).sum(axis=1)
    numerator = weights @ values - mean * weight_sum
    return numerator / (spread * np.sqrt((n * weight_squares - weight_sum**2) / (n - 1)))


def test_queen_weights_of_squares_are_lat2w() -> None:
    ours = contiguity_weights(lattice(HOT_CORNER)).full()[0]
    assert np.array_equal(ours, lat2W(5, 5, rook=False).full()[0])


def test_gi_star_matches_esda_called_directly() -> None:
    result = getis_ord_hotspots(lattice(HOT_CORNER), "composite", seed=SEED)
    reference = esda_reference(HOT_CORNER)
    np.testing.assert_allclose(result["gi_z"].to_numpy(), reference.Zs, atol=1e-12)
    np.testing.assert_array_equal(result["p_sim"].to_numpy(), reference.p_sim)


def test_gi_star_z_matches_the_textbook_formula() -> None:
    result = getis_ord_hotspots(lattice(HOT_CORNER), "composite", seed=SEED)
    expected = textbook_gi_star(HOT_CORNER, lat2W(5, 5, rook=False).full()[0])
    np.testing.assert_allclose(result["gi_z"].to_numpy(), expected, atol=1e-12)


def test_fdr_matches_a_brute_force_benjamini_hochberg() -> None:
    result = getis_ord_hotspots(lattice(HOT_CORNER), "composite", seed=SEED)
    p_values = np.minimum(2 * result["p_sim"].to_numpy(), 1.0)
    np.testing.assert_allclose(result["p_value"].to_numpy(), p_values)
    n = len(p_values)
    for alpha in (0.01, 0.05, 0.10):
        # BH: reject the k smallest, k = largest i with p_(i) <= i * alpha / n.
        ordered = np.sort(p_values)
        passing = [i for i in range(1, n + 1) if ordered[i - 1] <= i * alpha / n]
        cutoff = ordered[max(passing) - 1] if passing else -1.0
        assert set(np.flatnonzero(p_values <= cutoff)) == set(
            np.flatnonzero(result["p_fdr"].to_numpy() <= alpha)
        )


def test_benjamini_hochberg_known_values() -> None:
    # p sorted 0.01, 0.02, 0.03, 0.5 with n = 4: p * n / i = 0.04, 0.04, 0.04, 0.5
    np.testing.assert_allclose(
        benjamini_hochberg(np.array([0.03, 0.5, 0.01, 0.02])), [0.04, 0.5, 0.04, 0.04]
    )


def test_hot_corner_is_hot_and_far_corner_is_not() -> None:
    result = getis_ord_hotspots(lattice(HOT_CORNER), "composite", seed=SEED)
    classes = result["hotspot_class"]
    for code in ("C00", "C01", "C05", "C06"):
        assert classes[code].startswith("hot_"), (code, classes[code])
    assert not classes[["C18", "C19", "C23", "C24"]].str.startswith("hot_").any()
    assert set(classes) <= {"hot_99", "hot_95", "hot_90", "not_significant",
                            "cold_90", "cold_95", "cold_99"}


def test_without_fdr_more_or_equal_cells_are_significant() -> None:
    frame = lattice(HOT_CORNER)
    corrected = getis_ord_hotspots(frame, "composite", seed=SEED)
    uncorrected = getis_ord_hotspots(frame, "composite", seed=SEED, fdr=False)
    assert (uncorrected["hotspot_class"] != "not_significant").sum() >= (
        corrected["hotspot_class"] != "not_significant"
    ).sum()


def test_deterministic_for_a_seed() -> None:
    frame = lattice(HOT_CORNER)
    first = getis_ord_hotspots(frame, "composite", seed=7)
    second = getis_ord_hotspots(frame, "composite", seed=7)
    pd.testing.assert_frame_equal(first, second)


def test_all_equal_column_has_no_nan_and_no_spots() -> None:
    result = getis_ord_hotspots(lattice(np.full(25, 4.2)), "composite")
    assert not result[["gi_z", "p_sim", "p_value", "p_fdr"]].isna().any().any()
    assert (result["hotspot_class"] == "not_significant").all()
    assert (result["gi_z"] == 0).all()


def test_missing_values_are_no_data_and_the_rest_is_computed() -> None:
    values = HOT_CORNER.copy()
    values[24] = np.nan
    result = getis_ord_hotspots(lattice(values), "composite", seed=SEED)
    assert result.loc["C24", "hotspot_class"] == "no_data"
    assert np.isnan(result.loc["C24", "gi_z"])
    assert result.drop(index="C24")["gi_z"].notna().all()
    assert result.loc["C00", "hotspot_class"].startswith("hot_")


def test_island_gets_its_nearest_neighbour() -> None:
    frame = lattice(HOT_CORNER)
    island = gpd.GeoDataFrame(
        {"composite": [9.0]}, geometry=[box(10, 10, 11, 11)], crs=frame.crs,
        index=pd.Index(["ISL"], name="code"),
    )
    frame = pd.concat([frame, island])
    weights = contiguity_weights(frame)
    assert weights.islands == []
    # The nearest cell to (10.5, 10.5) is the top-right one, C04; the link goes both ways.
    assert weights.neighbors["ISL"] == ["C04"]
    assert "ISL" in weights.neighbors["C04"]
    result = getis_ord_hotspots(frame, "composite", seed=SEED)
    assert result["gi_z"].notna().all()


def test_single_outlier_is_not_a_hot_spot() -> None:
    # The island (9) is linked to C04 (1, the lowest value). Gi* counts the island's own
    # value, so z > 0, but the permutation test finds its neighbour unusually low: an
    # outlier, not a cluster of high values.
    frame = lattice(HOT_CORNER)
    island = gpd.GeoDataFrame({"composite": [9.0]}, geometry=[box(10, 10, 11, 11)],
                              crs=frame.crs, index=pd.Index(["ISL"], name="code"))
    result = getis_ord_hotspots(pd.concat([frame, island]), "composite", seed=SEED)
    assert result.loc["ISL", "gi_z"] > 0
    assert result.loc["ISL", "p_sim"] <= 0.01
    assert result.loc["ISL", "hotspot_class"] == "not_significant"


def test_geographic_crs_works() -> None:
    frame = lattice(HOT_CORNER, crs="EPSG:4326")
    result = getis_ord_hotspots(frame, "composite", seed=SEED)
    np.testing.assert_allclose(result["gi_z"].to_numpy(), esda_reference(HOT_CORNER).Zs)


def test_too_few_localities() -> None:
    frame = lattice(HOT_CORNER).iloc[:2]
    result = getis_ord_hotspots(frame, "composite")
    assert (result["hotspot_class"] == "not_significant").all()


def test_bad_inputs() -> None:
    with pytest.raises(ValidationError, match="GeoDataFrame"):
        getis_ord_hotspots(pd.DataFrame({"composite": [1.0]}), "composite")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="missing_column"):
        getis_ord_hotspots(lattice(HOT_CORNER), "missing_column")


# --- defect 10: configurable weights, Gi or Gi*, against esda's documented example --------

# esda's documentation of G_Local (esda/getisord.py docstring): six points, a binary
# DistanceBand of threshold 15 and y = [2, 3, 3.2, 5, 8, 7]. Its published z-scores:
SIX_POINTS = [(10, 10), (20, 10), (40, 10), (15, 20), (30, 20), (30, 30)]
SIX_VALUES = [2, 3, 3.2, 5, 8, 7]
ESDA_GI_Z = [-1.0136729, -0.04361589, 1.31558703, -0.31412676, 1.15373986, 1.77833941]
ESDA_GI_STAR_Z = [-1.39727626, -0.28917762, 0.65064964, -0.28917762, 1.23452088, 2.02424331]


def six_points() -> gpd.GeoDataFrame:
    from shapely.geometry import Point

    # a projected CRS in metres: the band of 15 units is 0.015 km
    return gpd.GeoDataFrame({"composite": SIX_VALUES},
                            geometry=[Point(x, y) for x, y in SIX_POINTS], crs="EPSG:3857",
                            index=pd.Index([f"P{i}" for i in range(6)], name="code"))


@pytest.mark.parametrize(("star", "published"), [(False, ESDA_GI_Z), (True, ESDA_GI_STAR_Z)])
def test_distance_band_gi_and_gi_star_match_esdas_published_example(
        star: bool, published: list[float]) -> None:
    result = getis_ord_hotspots(six_points(), "composite", weights="distance_band",
                                distance_km=0.015, star=star, permutations=99)
    np.testing.assert_allclose(result["gi_z"].to_numpy(), published, atol=1e-7)


def test_knn_weights_give_every_point_k_neighbours() -> None:
    from geo.analysis.hotspots import spatial_weights

    weights = spatial_weights(six_points(), "knn", k=2)
    assert all(len(weights.neighbors[key]) == 2 for key in weights.id_order)
    with pytest.raises(ValidationError, match="distance_km"):
        spatial_weights(six_points(), "distance_band")


def test_fdr_is_scipys_false_discovery_control() -> None:
    from scipy.stats import false_discovery_control

    p = np.array([0.001, 0.2, 0.03, 0.04, 0.5, 0.012])
    np.testing.assert_allclose(benjamini_hochberg(p), false_discovery_control(p, method="bh"))
