"""Conflict and violence per locality and time window (pure pandas/geopandas).

Events are dated points (ACLED/UCDP-like). A window is the `window_months` months ending on
`window_end` (inclusive); the previous window is the same length just before it.
"""

from __future__ import annotations

from datetime import date

import geopandas as gpd
import pandas as pd
from pyproj import CRS

from geo.analysis.overlay import count_by_locality, points_in_localities
from geo.errors import ValidationError

CONFLICT_COLUMNS: tuple[str, ...] = (
    "events", "fatalities", "events_per_100k", "fatalities_per_100k", "events_prev",
    "fatalities_prev", "change", "change_rel", "events_in_band",
)


def local_metric_crs(gdf: gpd.GeoDataFrame | gpd.GeoSeries) -> CRS:
    """Return the UTM CRS of the data's centre: metres, small distortion over a country."""
    if gdf.crs is None:
        raise ValidationError("data have no CRS; expected e.g. EPSG:4326", {})
    return gdf.estimate_utm_crs()


def _check_inputs(localities: gpd.GeoDataFrame, events: gpd.GeoDataFrame) -> None:
    """Raise ValidationError unless the inputs have the columns and CRS the analysis needs."""
    for name, frame in (("localities", localities), ("events", events)):
        if not isinstance(frame, gpd.GeoDataFrame) or frame.crs is None:
            raise ValidationError(f"{name} must be a GeoDataFrame with a CRS", {"field": name})
    if "population" not in localities.columns:
        raise ValidationError("localities need a 'population' column", {"field": "population"})
    missing = {"event_date", "fatalities"} - set(events.columns)
    if missing:
        raise ValidationError(f"events lack column(s) {sorted(missing)}",
                              {"missing": sorted(missing)})
    kinds = set(events.geom_type.dropna()) - {"Point"}
    if kinds:
        raise ValidationError(f"events must be points, found {sorted(kinds)}", {})


def window_bounds(window_end: date, window_months: int) -> tuple[pd.Timestamp, pd.Timestamp,
                                                                 pd.Timestamp]:
    """Return (previous start, start, end): windows are (prev_start, start] and (start, end]."""
    if window_months < 1:
        raise ValidationError("window_months must be >= 1", {"window_months": window_months})
    end = pd.Timestamp(window_end)
    start = end - pd.DateOffset(months=window_months)
    # both starts from the end: stepping twice from a clipped month end (30 Jun) would drift
    return end - pd.DateOffset(months=2 * window_months), start, end


def _positional(gdf: gpd.GeoDataFrame, crs: CRS | None = None) -> gpd.GeoDataFrame:
    """Return gdf's geometry alone on a 0..n-1 index (join results then map to codes)."""
    frame = gpd.GeoDataFrame(geometry=gdf.geometry.to_numpy(), crs=gdf.crs)
    return frame.to_crs(crs) if crs is not None else frame


def _pairs(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame, predicate: str,
           **kwargs: float) -> pd.DataFrame:
    """Return the (left, right) row positions of the pairs that satisfy predicate."""
    left_ix, right_ix = right.sindex.query(left.geometry, predicate=predicate, **kwargs)
    return pd.DataFrame({"left": left_ix, "right": right_ix})


def _counts(pairs: pd.DataFrame, fatalities: pd.Series, mask: pd.Series, index: pd.Index
            ) -> tuple[pd.Series, pd.Series]:
    """Return (events, fatalities) per locality for the events selected by mask.

    pairs: (event, locality) positions from `points_in_localities`, one locality per
    event and admin level, so an event counts in its village, district and region alike.
    """
    chosen = pairs[mask.to_numpy()[pairs["point"].to_numpy()]]
    events = count_by_locality(chosen, len(index))
    deaths = count_by_locality(chosen, len(index), fatalities.to_numpy(dtype=float))
    return (pd.Series(events.astype(int), index=index),
            pd.Series(deaths.astype(float), index=index))


def _events_in_band(localities: gpd.GeoDataFrame, events: gpd.GeoDataFrame, band_m: float,
                    metric: CRS) -> pd.Series:
    """Return per locality the events within band_m of it but outside it (metric CRS)."""
    locs, pts = _positional(localities, metric), _positional(events, metric)
    near = _pairs(pts, locs, "dwithin", distance=band_m)
    inside = _pairs(pts, locs, "intersects")
    near_keys = pd.MultiIndex.from_frame(near)
    spill = near[~near_keys.isin(pd.MultiIndex.from_frame(inside))]
    counts = spill.groupby("right").size().reindex(range(len(localities)), fill_value=0)
    return pd.Series(counts.to_numpy(), index=localities.index).astype(int)


def _per_100k(counts: pd.Series, population: pd.Series) -> pd.Series:
    """Return counts per 100,000 people; NaN where population is missing or zero."""
    pop = pd.to_numeric(population, errors="coerce").astype(float)
    return (counts / pop.where(pop > 0)) * 100_000


def relative_change(current: pd.Series, previous: pd.Series) -> pd.Series:
    """Return (current - previous) / previous; 0 when both are 0, NaN when only previous is."""
    cur, prev = current.astype(float), previous.astype(float)
    rel = (cur - prev) / prev.where(prev != 0)
    return rel.mask((prev == 0) & (cur == 0), 0.0)


def conflict_by_locality(
    localities: gpd.GeoDataFrame,
    events: gpd.GeoDataFrame,
    *,
    window_end: date,
    window_months: int = 12,
    band_km: float = 25,
    metric_crs: CRS | str | None = None,
) -> pd.DataFrame:
    """Return per-locality conflict figures for the window ending on window_end.

    Columns CONFLICT_COLUMNS: events and fatalities in the window and per 100k people,
    the same for the previous window, change (absolute, events) and change_rel (relative,
    NaN when there were no events before but some now), and events_in_band: events in the
    window within band_km of the locality but outside it (spill-over), measured in
    metric_crs (default: the UTM zone of the localities' centre). Missing fatalities
    count as 0. Localities of several admin levels may come together (column `level`):
    an event counts once in each level's locality that contains it.
    """
    _check_inputs(localities, events)
    events = events.to_crs(localities.crs) if events.crs != localities.crs else events
    dates = pd.to_datetime(events["event_date"], errors="coerce")
    if dates.isna().any():
        bad = list(events.index[dates.isna()][:5])
        raise ValidationError("some event_date values are not dates", {"rows": bad})
    prev_start, start, end = window_bounds(window_end, window_months)
    in_window = (dates > start) & (dates <= end)
    in_prev = (dates > prev_start) & (dates <= start)
    pairs = points_in_localities(events, localities)
    deaths = pd.to_numeric(events["fatalities"], errors="coerce").fillna(0.0)
    now_events, now_deaths = _counts(pairs, deaths, in_window, localities.index)
    prev_events, prev_deaths = _counts(pairs, deaths, in_prev, localities.index)
    metric = CRS.from_user_input(metric_crs) if metric_crs else local_metric_crs(localities)
    out = pd.DataFrame({
        "events": now_events,
        "fatalities": now_deaths,
        "events_per_100k": _per_100k(now_events, localities["population"]),
        "fatalities_per_100k": _per_100k(now_deaths, localities["population"]),
        "events_prev": prev_events,
        "fatalities_prev": prev_deaths,
        "change": now_events - prev_events,
        "change_rel": relative_change(now_events, prev_events),
        "events_in_band": _events_in_band(localities, events[in_window.to_numpy()],
                                          band_km * 1000.0, metric),
    }, index=localities.index)
    return out[list(CONFLICT_COLUMNS)]



def event_spans(localities: gpd.GeoDataFrame, events: gpd.GeoDataFrame, group: pd.Series
                ) -> pd.DataFrame:
    """Return per group (country) the first and last event date inside its localities.

    An event layer covers a country and a period only where it has events: the run reads
    zero events as "no violence" only inside that span, and as "no data" outside it.
    `localities` should be one partition (the finest level) so each event counts once.
    """
    if events.empty or localities.empty:
        return pd.DataFrame({"first": pd.Series(dtype="datetime64[ns]"),
                             "last": pd.Series(dtype="datetime64[ns]")})
    events = events.to_crs(localities.crs) if events.crs != localities.crs else events
    pairs = points_in_localities(events, localities)
    dates = pd.to_datetime(events["event_date"], errors="coerce").to_numpy()[
        pairs["point"].to_numpy()]
    keys = group.reindex(localities.index).to_numpy()[pairs["locality"].to_numpy()]
    frame = pd.DataFrame({"group": keys, "date": dates})
    return frame.groupby("group")["date"].agg(first="min", last="max")
