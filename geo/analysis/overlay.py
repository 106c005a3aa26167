"""Points in localities, once per admin level: the one point-in-polygon rule of the analysis.

Localities of every admin level come together (a village, its district and its governorate
all contain the same event), so a point must count in one locality *per level*, not in one
locality overall. A point on the border between two localities of the same level counts
once, for the first of them in the given order, so that a level's counts add up to the
points inside it.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd

from geo.errors import ValidationError


def points_in_localities(points: gpd.GeoSeries | gpd.GeoDataFrame,
                         localities: gpd.GeoDataFrame, *, level: str = "level"
                         ) -> pd.DataFrame:
    """Return (point, locality) row positions: each point in at most one locality per level.

    `level` names the admin-level column of localities; without it the localities are
    taken as one level (a partition). Points outside every locality are left out.
    """
    geoms = points.geometry if isinstance(points, gpd.GeoDataFrame) else points
    if geoms.crs is None or localities.crs is None:
        raise ValidationError("points and localities need a CRS", {})
    if geoms.crs != localities.crs:
        geoms = geoms.to_crs(localities.crs)
    if len(geoms) == 0 or len(localities) == 0:
        return pd.DataFrame({"point": np.empty(0, np.int64), "locality": np.empty(0, np.int64)})
    point_ix, locality_ix = localities.sindex.query(geoms.to_numpy(), predicate="intersects")
    levels = (localities[level].to_numpy() if level in localities.columns
              else np.zeros(len(localities), dtype=np.int64))
    pairs = pd.DataFrame({"point": point_ix.astype(np.int64),
                          "locality": locality_ix.astype(np.int64),
                          "level": levels[locality_ix]})
    pairs = pairs.sort_values(["point", "level", "locality"], kind="stable")
    pairs = pairs.drop_duplicates(["point", "level"], keep="first")
    return pairs[["point", "locality"]].reset_index(drop=True)


def count_by_locality(pairs: pd.DataFrame, n_localities: int,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """Return per locality position the number (or weighted sum) of its points."""
    w = None if weights is None else np.asarray(weights, dtype=float)[pairs["point"].to_numpy()]
    return np.bincount(pairs["locality"].to_numpy(), weights=w, minlength=n_localities)
