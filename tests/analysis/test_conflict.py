"""Conflict windows, rates, change and spill-over on hand-placed events."""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geo.analysis.conflict import conflict_by_locality, relative_change, window_bounds
from geo.errors import ValidationError

UTM = "EPSG:32633"  # work in metres, hand the data over in 4326 like the app does


def localities() -> gpd.GeoDataFrame:
    # A: 10 x 10 km square at x 500..510 km; B: its east neighbour 510..520 km;
    # C: far away (100 km east). Populations chosen so rates are round numbers.
    geoms = [shapely.box(500_000, 5_000_000, 510_000, 5_010_000),
             shapely.box(510_000, 5_000_000, 520_000, 5_010_000),
             shapely.box(600_000, 5_000_000, 610_000, 5_010_000)]
    gdf = gpd.GeoDataFrame({"population": [200_000, 50_000, 0]}, geometry=geoms, crs=UTM,
                           index=pd.Index(["A", "B", "C"], name="code"))
    return gdf.set_geometry(gdf.geometry.segmentize(500)).to_crs(4326)


def events(rows: list[tuple[float, float, str, float]]) -> gpd.GeoDataFrame:
    xs, ys, dates, deaths = zip(*rows, strict=True)
    gdf = gpd.GeoDataFrame({"event_date": pd.to_datetime(list(dates)), "fatalities": deaths},
                           geometry=gpd.points_from_xy(xs, ys), crs=UTM)
    return gdf.to_crs(4326)


EVENTS = events([
    (505_000, 5_005_000, "2024-03-01", 2),   # A, current window
    (505_000, 5_006_000, "2024-12-31", 0),   # A, current (window end is inclusive)
    (506_000, 5_005_000, "2023-12-31", 5),   # A, previous window (start is exclusive)
    (506_000, 5_004_000, "2023-06-01", 1),   # A, previous
    (507_000, 5_004_000, "2023-02-01", 1),   # A, previous
    (515_000, 5_005_000, "2024-06-01", 3),   # B, current: 5 km east of A's border
    (530_000, 5_005_000, "2024-06-01", 7),   # outside all: 10 km east of B, 20 km of A
    (505_000, 5_005_000, "2022-01-01", 9),   # too old for both windows
])


def test_windows_are_half_open() -> None:
    prev_start, start, end = window_bounds(date(2024, 12, 31), 12)
    assert (prev_start, start, end) == (pd.Timestamp("2022-12-31"), pd.Timestamp("2023-12-31"),
                                        pd.Timestamp("2024-12-31"))


def test_counts_rates_and_change() -> None:
    out = conflict_by_locality(localities(), EVENTS, window_end=date(2024, 12, 31))
    assert out.loc["A", "events"] == 2 and out.loc["A", "fatalities"] == 2
    assert out.loc["A", "events_prev"] == 3 and out.loc["A", "fatalities_prev"] == 7
    assert out.loc["A", "events_per_100k"] == pytest.approx(1.0)  # 2 / 200k * 100k
    assert out.loc["B", "fatalities_per_100k"] == pytest.approx(6.0)  # 3 / 50k * 100k
    assert out.loc["A", "change"] == -1
    assert out.loc["A", "change_rel"] == pytest.approx(-1 / 3)
    assert np.isnan(out.loc["B", "change_rel"])  # 1 event now, none before: undefined
    assert out.loc["C", "change_rel"] == 0.0  # none before, none now
    assert np.isnan(out.loc["C", "events_per_100k"])  # nobody lives there: no rate


def test_spill_over_band() -> None:
    out = conflict_by_locality(localities(), EVENTS, window_end=date(2024, 12, 31),
                               band_km=25)
    # A: B's event (5 km) and the outside one (20 km); its own events do not count
    assert out.loc["A", "events_in_band"] == 2
    # B: A's two current events (<= 10 km) and the outside one (10 km)
    assert out.loc["B", "events_in_band"] == 3
    assert out.loc["C", "events_in_band"] == 0
    narrow = conflict_by_locality(localities(), EVENTS, window_end=date(2024, 12, 31),
                                  band_km=8, metric_crs=UTM)
    assert narrow.loc["A", "events_in_band"] == 1  # only B's event 5 km away


def test_shorter_window() -> None:
    out = conflict_by_locality(localities(), EVENTS, window_end=date(2024, 12, 31),
                               window_months=6)
    # current: Jul..Dec 2024 -> only the 31 Dec event in A; previous: Jan..Jun 2024
    assert out.loc["A", "events"] == 1 and out.loc["A", "events_prev"] == 1
    assert out.loc["B", "events_prev"] == 1


def test_relative_change_is_nan_safe() -> None:
    rel = relative_change(pd.Series([0, 3, 0, 4]), pd.Series([0, 0, 2, 2]))
    assert rel.iloc[0] == 0 and np.isnan(rel.iloc[1])
    assert rel.iloc[2] == -1 and rel.iloc[3] == 1


def test_validation() -> None:
    with pytest.raises(ValidationError, match="population"):
        conflict_by_locality(localities().drop(columns="population"), EVENTS,
                             window_end=date(2024, 12, 31))
    with pytest.raises(ValidationError, match="fatalities"):
        conflict_by_locality(localities(), EVENTS.drop(columns="fatalities"),
                             window_end=date(2024, 12, 31))


# --- defect 1: an event counts in its locality at every admin level ----------------------


def nested() -> gpd.GeoDataFrame:
    # governorate G (20 x 10 km) holds districts D1 (west half) and D2 (east half); D1
    # holds villages V1 and V2 (its south and north halves). Loaded together, as a run does.
    boxes = {"G": (500_000, 5_000_000, 520_000, 5_010_000, 1),
             "D1": (500_000, 5_000_000, 510_000, 5_010_000, 2),
             "D2": (510_000, 5_000_000, 520_000, 5_010_000, 2),
             "V1": (500_000, 5_000_000, 510_000, 5_005_000, 3),
             "V2": (500_000, 5_005_000, 510_000, 5_010_000, 3)}
    gdf = gpd.GeoDataFrame(
        {"level": [b[4] for b in boxes.values()], "population": [300_000, 200_000, 100_000,
                                                                  100_000, 100_000]},
        geometry=[shapely.box(*b[:4]) for b in boxes.values()], crs=UTM,
        index=pd.Index(list(boxes), name="code"))
    return gdf.to_crs(4326)


def test_events_count_at_every_level() -> None:
    found = events([(505_000, 5_002_000, "2024-05-01", 1),   # V1, D1, G
                    (505_000, 5_007_000, "2024-05-01", 2),   # V2, D1, G
                    (515_000, 5_005_000, "2024-05-01", 4)])  # D2, G (no village loaded)
    out = conflict_by_locality(nested(), found, window_end=date(2024, 12, 31))
    assert out["events"].to_dict() == {"G": 3, "D1": 2, "D2": 1, "V1": 1, "V2": 1}
    assert out["fatalities"].to_dict() == {"G": 7, "D1": 3, "D2": 4, "V1": 1, "V2": 2}
    # before the fix every event went to one locality overall: the governorate
    assert out.loc["V1", "events_per_100k"] == pytest.approx(1.0)


def test_event_on_a_shared_border_counts_once_per_level() -> None:
    # on the border of V1 and V2 (y = 5,005 km): one of the two villages, D1 and G once each
    found = events([(505_000, 5_005_000, "2024-05-01", 1)])
    out = conflict_by_locality(nested(), found, window_end=date(2024, 12, 31))
    assert out.loc["G", "events"] == 1 and out.loc["D1", "events"] == 1
    assert out.loc["V1", "events"] + out.loc["V2", "events"] == 1
