"""Exposure tables reused between runs: same inputs give the stored table, any change recomputes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from rasterio.transform import from_origin

from geo.analysis.exposure import HazardLayer, run_exposure_layers
from geo.analysis.exposure_store import ExposureStore, exposure_tables
from tests.analysis.test_exposure import HAZARD, localities, write_raster

LEVELS = {"low": 0.1, "medium": 1.5, "high": 3.0}


def _inputs(tmp_path: Path) -> tuple:
    hazard = write_raster(tmp_path / "hazard.tif", HAZARD, from_origin(0, 4, 1, 1))
    pop = write_raster(tmp_path / "pop.tif", np.full((2, 2), 100, dtype=np.float32),
                       from_origin(0, 4, 2, 2), nodata=-1)
    places = localities(shapely.box(0, 0, 4, 4), shapely.box(0, 2, 2, 4),
                        shapely.box(2.2, 1.2, 2.4, 1.4), shapely.box(10, 10, 11, 11))
    return hazard, pop, places


def test_a_stored_table_equals_a_fresh_one(tmp_path: Path) -> None:
    hazard, pop, places = _inputs(tmp_path)
    layer = HazardLayer(hazard, 0.5, level_thresholds=LEVELS)
    store = ExposureStore(tmp_path / "store")
    fresh = run_exposure_layers(places, [layer], population_path=pop, workers=1)[0]
    first, reused = exposure_tables(places, [layer], population_path=pop, store=store)
    assert reused == 0 and len(list((tmp_path / "store").glob("*.npz"))) == 1
    again, reused = exposure_tables(places, [layer], population_path=pop, store=store)
    assert reused == 1
    pd.testing.assert_frame_equal(again[0], fresh, check_dtype=False)
    pd.testing.assert_frame_equal(first[0], fresh, check_dtype=False)
    assert pd.isna(again[0].loc["L3", "mean"])  # outside the raster stays missing


def test_changed_inputs_are_recomputed(tmp_path: Path) -> None:
    hazard, pop, places = _inputs(tmp_path)
    store = ExposureStore(tmp_path / "store")
    layer = HazardLayer(hazard, 0.5, level_thresholds=LEVELS)
    exposure_tables(places, [layer], population_path=pop, store=store)
    # another threshold, other polygons, another population raster: each is new work
    assert exposure_tables(places, [HazardLayer(hazard, 1.0, level_thresholds=LEVELS)],
                           population_path=pop, store=store)[1] == 0
    moved = places.copy()
    moved.loc["L1", "geometry"] = shapely.box(0, 2, 2.5, 4)
    assert exposure_tables(moved, [layer], population_path=pop, store=store)[1] == 0
    assert exposure_tables(places, [layer], population_path=None, store=store)[1] == 0
    # a rewritten raster file (same path) is not mistaken for the old one
    write_raster(Path(hazard), HAZARD * 2, from_origin(0, 4, 1, 1))
    os.utime(hazard, ns=(1, 1))
    tables, reused = exposure_tables(places, [layer], population_path=pop, store=store)
    assert reused == 0
    assert tables[0].loc["L0", "max"] == np.nanmax(np.where(HAZARD < 0, np.nan, HAZARD * 2))


def test_a_damaged_table_is_recomputed(tmp_path: Path) -> None:
    hazard, pop, places = _inputs(tmp_path)
    store = ExposureStore(tmp_path / "store")
    layer = HazardLayer(hazard, 0.5, level_thresholds=LEVELS)
    exposure_tables(places, [layer], population_path=pop, store=store)
    (stored,) = (tmp_path / "store").glob("*.npz")
    stored.write_bytes(b"not a table")
    tables, reused = exposure_tables(places, [layer], population_path=pop, store=store)
    assert reused == 0 and tables[0].loc["L1", "people_exposed"] == 50
