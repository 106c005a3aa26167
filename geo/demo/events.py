"""Point layers of the demo region: ACLED-style conflict events and the institution inventory."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from geo.demo.admin import GOVERNORATE_EN, AdminUnits
from geo.demo.landscape import CELL_DEG, KM_PER_DEG_LAT, KM_PER_DEG_LON, Landscape

N_EVENTS = 1_500
EVENTS_START = dt.date(2023, 10, 1)
EVENTS_END = dt.date(2026, 9, 30)
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")

EVENT_TYPES = ("Battles", "Violence against civilians", "Explosions/Remote violence", "Riots",
               "Protests", "Strategic developments")
SUB_EVENT_TYPES: dict[str, tuple[str, ...]] = {
    "Battles": ("Armed clash", "Government regains territory",
                "Non-state actor overtakes territory"),
    "Violence against civilians": ("Attack", "Abduction/forced disappearance",
                                   "Sexual violence"),
    "Explosions/Remote violence": ("Shelling/artillery/missile attack",
                                   "Remote explosive/landmine/IED", "Air/drone strike",
                                   "Grenade"),
    "Riots": ("Violent demonstration", "Mob violence"),
    "Protests": ("Peaceful protest", "Protest with intervention",
                 "Excessive force against protesters"),
    "Strategic developments": ("Arrests", "Looting/property destruction",
                               "Disrupted weapons use", "Headquarters or base established"),
}
ACTORS: dict[str, tuple[str, ...]] = {
    "Battles": ("Military Forces of Xyland (2019-)", "Wadi Noor Liberation Front",
                "Unidentified Armed Group (Xyland)"),
    "Violence against civilians": ("Unidentified Armed Group (Xyland)",
                                   "Wadi Noor Liberation Front", "Al-Jabal Militia"),
    "Explosions/Remote violence": ("Military Forces of Xyland (2019-)",
                                   "Unidentified Armed Group (Xyland)"),
    "Riots": ("Rioters (Xyland)",),
    "Protests": ("Protesters (Xyland)",),
    "Strategic developments": ("Police Forces of Xyland (2019-)",
                               "Military Forces of Xyland (2019-)",
                               "Wadi Noor Liberation Front"),
}
# Mean fatalities per event type; counts are over-dispersed (negative binomial).
FATALITY_MEANS = (2.2, 0.8, 1.6, 0.1, 0.02, 0.05)

INSTITUTION_COUNTS: dict[str, int] = {
    "health_centre": 45, "hospital": 5, "school_primary": 110, "school_secondary": 40,
    "school_vocational": 8, "ngo": 40, "youth_centre": 14, "local_administration": 9,
    "water_point": 30,
}
# How strongly each type follows population (exponent on people per cell): schools and
# water points spread into small places, NGOs and vocational schools stay in towns.
PLACEMENT_EXPONENT = {
    "health_centre": 0.6, "school_primary": 0.4, "school_secondary": 0.8,
    "school_vocational": 1.2, "ngo": 1.2, "youth_centre": 1.0, "water_point": 0.3,
}
CAPACITY_RANGE = {
    "health_centre": (30, 120), "hospital": (60, 300), "school_primary": (150, 900),
    "school_secondary": (200, 1200), "school_vocational": (80, 400), "ngo": (50, 2000),
    "youth_centre": (40, 300), "local_administration": (15, 120), "water_point": (20, 400),
}
NGO_NAMES = ("Al-Amal Relief Society", "Sawa Community Association", "Noor Youth Initiative",
             "Wadi Noor Women's Union", "Al-Birr Charity", "Hand in Hand Development",
             "Ajyal Education Network", "Al-Khair Cooperative", "Green Valley Farmers",
             "Basma Disability Rights Group")
SENSITIVE_NGOS = ("Al-Aman Women's Shelter", "Family Protection Safe House")


@dataclass(frozen=True)
class Hotspot:
    """A centre of conflict activity with its own mix of event types and bursts."""

    lon: float
    lat: float
    spread_km: float
    type_mix: tuple[float, ...]  # probability of each of EVENT_TYPES
    bursts: tuple[tuple[int, int], ...]  # (day offset of the centre, duration sd in days)


def _hotspots(rng: np.random.Generator, admin: AdminUnits) -> list[Hotspot]:
    """Return four hotspots in three districts: an armed front, a raid zone and town unrest."""
    sizes = np.bincount(admin.village_district, weights=admin.village_size)
    capital_district = int(np.argmax(sizes))
    others = rng.choice([d for d in range(len(sizes)) if d != capital_district], 2, replace=False)
    mixes = {
        "front": (0.45, 0.1, 0.3, 0.0, 0.0, 0.15),
        "raids": (0.15, 0.45, 0.2, 0.0, 0.0, 0.2),
        "unrest": (0.02, 0.08, 0.02, 0.3, 0.5, 0.08),
    }
    plan = [(others[0], "front", 3.0), (others[0], "front", 2.0), (others[1], "raids", 4.0),
            (capital_district, "unrest", 1.5)]
    days = (EVENTS_END - EVENTS_START).days
    hotspots = []
    for district, kind, spread in plan:
        villages = np.flatnonzero(admin.village_district == district)
        centre = villages[np.argmax(admin.village_size[villages] * rng.random(villages.size))]
        bursts = tuple((int(rng.integers(0, days)), int(rng.integers(7, 30)))
                       for _ in range(rng.integers(2, 5)))
        hotspots.append(Hotspot(float(admin.village_lon[centre]), float(admin.village_lat[centre]),
                                spread, mixes[kind], bursts))
    return hotspots


def _event_days(rng: np.random.Generator, hotspot: Hotspot | None, count: int) -> np.ndarray:
    """Return day offsets: background uniform, hotspot events mostly inside their bursts."""
    days = (EVENTS_END - EVENTS_START).days
    uniform = rng.integers(0, days + 1, size=count)
    if hotspot is None:
        return uniform
    burst = rng.integers(0, len(hotspot.bursts), size=count)
    centres = np.array([b[0] for b in hotspot.bursts])[burst]
    spreads = np.array([b[1] for b in hotspot.bursts])[burst]
    in_burst = centres + np.round(rng.normal(0.0, 1.0, count) * spreads).astype(int)
    # A burst that spills past either end of the record gives way to a uniform date, rather
    # than piling events up on the first or last day.
    in_burst = np.where((in_burst < 0) | (in_burst > days), uniform, in_burst)
    return np.where(rng.random(count) < 0.65, in_burst, uniform)


def _inside(land: Landscape, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Return whether each point lies inside the governorate."""
    return shapely.contains_xy(land.outline, lon, lat)


def _hotspot_points(
    rng: np.random.Generator, land: Landscape, hotspot: Hotspot, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return points scattered around the hotspot, redrawn until inside the governorate."""
    lon = np.full(count, hotspot.lon)
    lat = np.full(count, hotspot.lat)
    todo = np.ones(count, dtype=bool)
    for _ in range(20):
        n = int(todo.sum())
        if n == 0:
            break
        lon[todo] = hotspot.lon + rng.normal(0, hotspot.spread_km, n) / KM_PER_DEG_LON
        lat[todo] = hotspot.lat + rng.normal(0, hotspot.spread_km, n) / KM_PER_DEG_LAT
        todo &= ~_inside(land, lon, lat)
    lon[todo], lat[todo] = hotspot.lon, hotspot.lat
    return lon, lat


def populated_points(
    rng: np.random.Generator, land: Landscape, people: np.ndarray, count: int, exponent: float
) -> tuple[np.ndarray, np.ndarray]:
    """Return points drawn from cells weighted by people**exponent, jittered inside the cell."""
    weight = np.power(people, exponent, where=people > 0, out=np.zeros_like(people)).ravel()
    cells = rng.choice(weight.size, size=count, p=weight / weight.sum())
    rows, cols = np.unravel_index(cells, land.grid.shape)
    jitter = rng.uniform(-0.4, 0.4, size=(2, count)) * CELL_DEG
    return land.grid.lon[cols] + jitter[0], land.grid.lat[rows] + jitter[1]


def locate(admin: AdminUnits, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Return the index of the village holding each point (nearest village if on no village)."""
    tree = shapely.STRtree(admin.village_geom)
    points = shapely.points(lon, lat)
    found = tree.query(points, predicate="intersects")
    village = np.full(len(points), -1)
    village[found[0]] = found[1]
    missing = village < 0
    if missing.any():
        village[missing] = tree.query_nearest(points[missing], all_matches=False)[1]
    return village


def _fatalities(
    rng: np.random.Generator, type_index: np.ndarray, sub_type: list[str]
) -> np.ndarray:
    """Return over-dispersed fatality counts by event type (protests are mostly bloodless)."""
    means = np.array(FATALITY_MEANS)[type_index]
    means = np.where(np.array(sub_type) == "Excessive force against protesters", 0.8, means)
    dispersion = 0.6
    return rng.negative_binomial(dispersion, dispersion / (dispersion + means))


def _note(date: dt.date, event_type: str, sub_type: str, actor: str, place: str,
          fatalities: int) -> str:
    """Return an ACLED-style one-sentence description of the event."""
    when = f"On {date.day} {MONTHS[date.month - 1]} {date.year}"
    plural = "fatality" if fatalities == 1 else "fatalities"
    toll = f" {fatalities} {plural} reported." if fatalities else ""
    if event_type == "Protests":
        return f"{when}, residents protested in {place} over services and prices.{toll}"
    if event_type == "Riots":
        return f"{when}, rioters clashed with police in {place}.{toll}"
    return f"{when}, in {place}: {sub_type.lower()} involving {actor}.{toll}"


def _event_sources(rng: np.random.Generator, hotspots: list[Hotspot]) -> np.ndarray:
    """Return per event its hotspot index, or -1 for scattered background events."""
    shares = np.array([0.28, 0.17, 0.22, 0.15, 0.18])  # four hotspots, then background
    return rng.choice(np.arange(-1, len(hotspots)), size=N_EVENTS, p=np.roll(shares, 1))


def conflict_events(
    rng: np.random.Generator, land: Landscape, admin: AdminUnits, people: np.ndarray
) -> pd.DataFrame:
    """Return ~1,500 ACLED-style events clustered around hotspots and in bursts of time."""
    hotspots = _hotspots(rng, admin)
    source = _event_sources(rng, hotspots)
    lon, lat = np.zeros(N_EVENTS), np.zeros(N_EVENTS)
    day, type_index = np.zeros(N_EVENTS, dtype=int), np.zeros(N_EVENTS, dtype=int)
    background_mix = (0.1, 0.2, 0.1, 0.1, 0.35, 0.15)
    for h in range(-1, len(hotspots)):
        rows = np.flatnonzero(source == h)
        spot = hotspots[h] if h >= 0 else None
        if spot is None:
            lon[rows], lat[rows] = populated_points(rng, land, people, rows.size, 0.7)
        else:
            lon[rows], lat[rows] = _hotspot_points(rng, land, spot, rows.size)
        day[rows] = _event_days(rng, spot, rows.size)
        mix = spot.type_mix if spot else background_mix
        type_index[rows] = rng.choice(len(EVENT_TYPES), size=rows.size, p=mix)
    return _event_table(rng, admin, lon, lat, day, type_index)


def _event_table(
    rng: np.random.Generator, admin: AdminUnits, lon: np.ndarray, lat: np.ndarray,
    day: np.ndarray, type_index: np.ndarray,
) -> pd.DataFrame:
    """Return the events as an ACLED-style table sorted by date, with ids in date order."""
    village = locate(admin, lon, lat)
    types = [EVENT_TYPES[i] for i in type_index]
    sub_types = [str(rng.choice(SUB_EVENT_TYPES[t])) for t in types]
    actors = [str(rng.choice(ACTORS[t])) for t in types]
    fatalities = _fatalities(rng, type_index, sub_types)
    dates = [EVENTS_START + dt.timedelta(days=int(d)) for d in day]
    order = np.lexsort((lon, day))
    rows = []
    for number, i in enumerate(order, start=1):
        district = admin.village_district[village[i]]
        place = f"{admin.village_en[village[i]]} ({admin.district_en[district]})"
        rows.append({
            "event_id_cnty": f"XYZ{number:05d}",
            "event_date": dates[i].isoformat(),
            "event_type": types[i],
            "sub_event_type": sub_types[i],
            "actor1": actors[i],
            "fatalities": int(fatalities[i]),
            "latitude": round(float(lat[i]), 4),
            "longitude": round(float(lon[i]), 4),
            "admin1": GOVERNORATE_EN,
            "admin2": admin.district_en[district],
            "admin3": admin.village_en[village[i]],
            "notes": _note(dates[i], types[i], sub_types[i], actors[i], place, fatalities[i]),
        })
    return pd.DataFrame(rows)


INSTITUTION_LABELS = {
    "health_centre": "Primary Health Care Centre", "hospital": "Hospital",
    "school_primary": "Primary School", "school_secondary": "Secondary School",
    "school_vocational": "Vocational Training Centre", "youth_centre": "Youth Centre",
    "water_point": "Water Point", "local_administration": "Municipal Council",
}


def _institution_names(
    kinds: list[str], villages: list[str], rng: np.random.Generator
) -> list[str]:
    """Return a distinct, plausible name per institution: type and village, numbered if needed."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for serial, (kind, village) in enumerate(zip(kinds, villages, strict=True)):
        if kind == "ngo":
            base = f"{NGO_NAMES[serial % len(NGO_NAMES)]}, {village}"
        elif kind == "school_secondary" and rng.random() < 0.4:
            base = f"{village} Secondary School for Girls"
        else:
            base = f"{village} {INSTITUTION_LABELS[kind]}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} No. {seen[base]}")
    return names


def _fixed_institutions(
    rng: np.random.Generator, land: Landscape, admin: AdminUnits
) -> list[tuple[str, str, float, float, bool]]:
    """Return (name, type, lon, lat, sensitive) of institutions with a known seat."""
    towns = sorted(land.towns, key=lambda t: -t.population)
    jitter = rng.normal(0.0, 0.003, size=(32, 2))
    rows = [(f"{t.name_en} {'General ' if k == 0 else ''}Hospital", "hospital",
             t.lon + jitter[k, 0], t.lat + jitter[k, 1], False)
            for k, t in enumerate(towns[: INSTITUTION_COUNTS["hospital"]])]
    rows.append(("Wadi Noor Governorate Office", "local_administration",
                 towns[0].lon + jitter[10, 0], towns[0].lat + jitter[10, 1], False))
    for district, name in enumerate(admin.district_en):
        members = np.flatnonzero(admin.village_district == district)
        seat = members[np.argmax(admin.village_size[members])]
        rows.append((f"{name} District Administration", "local_administration",
                     admin.village_lon[seat] + jitter[11 + district, 0],
                     admin.village_lat[seat] + jitter[11 + district, 1], False))
    # Shelters are why the `sensitive` flag exists: their exact location must not leak.
    for k, name in enumerate(SENSITIVE_NGOS):
        town = towns[k]
        rows.append((f"{name}, {town.name_en}", "ngo", town.lon + jitter[25 + k, 0],
                     town.lat + jitter[25 + k, 1], True))
    return rows


def institutions(
    rng: np.random.Generator, land: Landscape, admin: AdminUnits, people: np.ndarray
) -> pd.DataFrame:
    """Return ~300 institutions of nine types, placed mostly where people live."""
    fixed = _fixed_institutions(rng, land, admin)
    kinds, lon, lat = [], [], []
    for kind, count in INSTITUTION_COUNTS.items():
        count -= sum(1 for row in fixed if row[1] == kind)
        if kind not in PLACEMENT_EXPONENT or count <= 0:
            continue
        x, y = populated_points(rng, land, people, count, PLACEMENT_EXPONENT[kind])
        kinds += [kind] * count
        lon += list(x)
        lat += list(y)
    village = locate(admin, np.array(lon), np.array(lat))
    names = _institution_names(kinds, [admin.village_en[v] for v in village], rng)
    rows = fixed + [(n, k, x, y, False) for n, k, x, y in zip(names, kinds, lon, lat, strict=True)]
    table = pd.DataFrame(rows, columns=["name", "type", "longitude", "latitude", "sensitive"])
    low, high = zip(*(CAPACITY_RANGE[k] for k in table["type"]), strict=True)
    table["capacity"] = rng.integers(np.array(low), np.array(high) + 1)
    table["sensitive"] = np.where(table["sensitive"], "true", "false")
    table["latitude"] = table["latitude"].round(5)
    table["longitude"] = table["longitude"].round(5)
    return table[["name", "type", "capacity", "sensitive", "latitude", "longitude"]]
