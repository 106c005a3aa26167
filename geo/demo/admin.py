"""Administrative units of the demo region: settlements, villages, districts, names, P-codes.

Villages are the Voronoi cells of settlement nuclei clipped to the governorate; districts are
unions of whole villages, so the hierarchy nests exactly by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from geo.demo.landscape import (
    CELL_DEG,
    PRECISION_DEG,
    Landscape,
    dart_throw,
    smooth_noise,
    to_km,
)

GOVERNORATE_CODE = "XY01"
GOVERNORATE_EN = "Wadi Noor Governorate"
GOVERNORATE_AR = "محافظة وادي النور"
N_VILLAGES = 400
N_DISTRICTS = 8

PREFIXES: tuple[tuple[str, str], ...] = (
    ("Kafr", "كفر"), ("Tell", "تل"), ("Ain", "عين"), ("Beit", "بيت"), ("Deir", "دير"),
    ("Khirbet", "خربة"), ("Umm", "أم"), ("Abu", "أبو"), ("Jisr", "جسر"), ("Ras", "رأس"),
    ("Bir", "بئر"), ("Marj", "مرج"), ("Jabal", "جبل"), ("Qasr", "قصر"), ("Mazraat", "مزرعة"),
)
ROOTS: tuple[tuple[str, str], ...] = (
    ("al-Noor", "النور"), ("al-Zeitoun", "الزيتون"), ("al-Rumman", "الرمان"),
    ("al-Hajar", "الحجر"), ("al-Sahl", "السهل"), ("al-Khadra", "الخضراء"), ("al-Tin", "التين"),
    ("al-Inab", "العنب"), ("al-Ward", "الورد"), ("al-Nakhil", "النخيل"), ("al-Qamar", "القمر"),
    ("al-Shams", "الشمس"), ("al-Hawa", "الهوا"), ("al-Jouz", "الجوز"), ("al-Louz", "اللوز"),
    ("al-Ghazal", "الغزال"), ("al-Assafir", "العصافير"), ("al-Raml", "الرمل"),
    ("al-Sultan", "السلطان"), ("al-Amir", "الأمير"), ("al-Sheikh", "الشيخ"),
    ("al-Hamra", "الحمراء"), ("al-Baida", "البيضاء"), ("al-Souda", "السوداء"),
    ("al-Kabir", "الكبير"), ("al-Saghir", "الصغير"), ("al-Ma", "الماء"), ("al-Nahr", "النهر"),
    ("al-Dabaa", "الضبع"), ("al-Sindiyan", "السنديان"), ("al-Ballout", "البلوط"),
    ("al-Arz", "الأرز"), ("al-Qamh", "القمح"), ("al-Shair", "الشعير"), ("al-Fawwar", "الفوار"),
)
# French-style transliterations, as old maps and some agencies still spell them.
ACCENTED_PREFIXES = {"Ain": "Aïn", "Deir": "Deïr", "Beit": "Beït", "Ras": "Râs", "Qasr": "Qaṣr"}
QUARTERS: tuple[tuple[str, str], ...] = (
    ("al-Balad", "البلد"), ("al-Sharqi", "الشرقي"), ("al-Gharbi", "الغربي"),
    ("al-Shamali", "الشمالي"), ("al-Janubi", "الجنوبي"), ("al-Jadid", "الجديد"),
    ("al-Mahatta", "المحطة"), ("al-Souq", "السوق"), ("al-Jami", "الجامع"),
    ("al-Mustashfa", "المستشفى"), ("al-Zuhur", "الزهور"), ("al-Nasr", "النصر"),
)


@dataclass(frozen=True)
class Settlements:
    """Settlement nuclei: one per village; town quarters carry their town's index."""

    lon: np.ndarray
    lat: np.ndarray
    town: np.ndarray  # index into Landscape.towns, -1 for a rural village
    size: np.ndarray  # planned population (relative weight for the population surface)
    name_en: list[str]
    name_ar: list[str]


@dataclass(frozen=True)
class AdminUnits:
    """The three admin levels, in code order, with their geometries (MultiPolygon)."""

    district_code: list[str]
    district_en: list[str]
    district_ar: list[str]
    district_geom: list[MultiPolygon]
    village_code: list[str]
    village_en: list[str]
    village_ar: list[str]
    village_district: np.ndarray  # index into the district lists
    village_geom: list[MultiPolygon]
    village_lon: np.ndarray  # settlement nucleus of each village
    village_lat: np.ndarray
    village_town: np.ndarray  # town index, -1 for rural villages
    village_size: np.ndarray  # planned population, which shapes the population raster
    governorate_geom: MultiPolygon


def _town_quarters(rng: np.random.Generator, land: Landscape) -> list[tuple]:
    """Return (lon, lat, town index, size, name_en, name_ar) of every town quarter."""
    quarters = []
    for index, town in enumerate(land.towns):
        count = int(np.clip(round(town.population / 14_000), 2, len(QUARTERS)))
        radius_km = 0.55 * math.sqrt(count)
        angles = rng.uniform(0, 2 * math.pi, size=count)
        radii = radius_km * np.sqrt(rng.uniform(0.15, 1.0, size=count))
        radii[0] = 0.0  # the old town sits at the centre
        shares = rng.dirichlet(np.full(count, 4.0))
        for k in range(count):
            lon = town.lon + radii[k] * math.cos(angles[k]) / to_km(1.0, 0.0)
            lat = town.lat + radii[k] * math.sin(angles[k]) / to_km(0.0, 1.0)
            en = f"{town.name_en} - Hayy {QUARTERS[k][0]}"
            ar = f"{town.name_ar} - حي {QUARTERS[k][1]}"
            quarters.append((lon, lat, index, town.population * shares[k], en, ar))
    return quarters


def _village_suitability(rng: np.random.Generator, land: Landscape) -> np.ndarray:
    """Return where rural villages are likely: near water and roads, off steep slopes."""
    near_water = np.exp(-land.dist_river_km / 8.0) + 0.5 * np.exp(-land.dist_tributary_km / 3.0)
    near_road = 0.6 * np.exp(-land.dist_road_km / 2.0)
    terraces = np.where(land.dist_river_km < 0.3, 0.3, 1.0)  # not in the channel itself
    flat = np.exp(-land.slope_deg / 12.0)
    noise = np.exp(0.4 * smooth_noise(rng, land.grid.shape, 15))
    return (0.3 + near_water + near_road) * terraces * flat * noise


def _rural_villages(
    rng: np.random.Generator, land: Landscape, quarters: np.ndarray, count: int
) -> np.ndarray:
    """Return rural village nuclei inside the outline, spread at least ~1.1 km apart."""
    weight = _village_suitability(rng, land) ** 2  # squared: clusters should show
    lon_grid, lat_grid = np.meshgrid(land.grid.lon, land.grid.lat)
    inside = shapely.contains_xy(land.outline.buffer(-0.004), lon_grid, lat_grid)
    weight = np.where(inside, weight, 0.0).ravel()
    cells = rng.choice(weight.size, size=12 * count, replace=False, p=weight / weight.sum())
    jitter = rng.uniform(-0.5, 0.5, size=(cells.size, 2)) * CELL_DEG
    candidates = np.column_stack([lon_grid.ravel()[cells], lat_grid.ravel()[cells]]) + jitter
    return dart_throw(rng, candidates, min_km=1.1, limit=count, taken=quarters)


def _village_names(rng: np.random.Generator, count: int) -> tuple[list[str], list[str]]:
    """Return `count` distinct (English, Arabic) village names; a few EN names carry accents."""
    pairs = [(p, r) for p in PREFIXES for r in ROOTS]
    chosen = rng.choice(len(pairs), size=count, replace=False)
    names_en, names_ar = [], []
    for index in chosen:
        (prefix_en, prefix_ar), (root_en, root_ar) = pairs[index]
        if prefix_en in ACCENTED_PREFIXES and rng.random() < 0.25:
            prefix_en = ACCENTED_PREFIXES[prefix_en]
        names_en.append(f"{prefix_en} {root_en}")
        names_ar.append(f"{prefix_ar} {root_ar}")
    return names_en, names_ar


def make_settlements(rng: np.random.Generator, land: Landscape) -> Settlements:
    """Return one settlement nucleus per village: town quarters first, then rural villages."""
    quarters = _town_quarters(rng, land)
    quarter_xy = np.array([(q[0], q[1]) for q in quarters])
    rural_xy = _rural_villages(rng, land, quarter_xy, N_VILLAGES - len(quarters))
    names_en, names_ar = _village_names(rng, len(rural_xy))
    rural_size = rng.lognormal(math.log(1_400), 0.7, size=len(rural_xy))
    return Settlements(
        lon=np.concatenate([quarter_xy[:, 0], rural_xy[:, 0]]),
        lat=np.concatenate([quarter_xy[:, 1], rural_xy[:, 1]]),
        town=np.concatenate([[q[2] for q in quarters], np.full(len(rural_xy), -1)]).astype(int),
        size=np.concatenate([[q[3] for q in quarters], rural_size]),
        name_en=[q[4] for q in quarters] + names_en,
        name_ar=[q[5] for q in quarters] + names_ar,
    )


def _snap(geometry: BaseGeometry) -> BaseGeometry:
    """Return the geometry on the shared precision grid."""
    return shapely.set_precision(geometry, PRECISION_DEG)


def _parts(geometry: BaseGeometry) -> list[Polygon]:
    """Return the polygons of a (Multi)Polygon or collection, largest first."""
    polygons = [g for g in shapely.get_parts(geometry) if g.geom_type == "Polygon"]
    return sorted(polygons, key=lambda p: -p.area)


def _absorb_fragments(geoms: list[BaseGeometry]) -> list[BaseGeometry]:
    """Return the cells with every detached fragment merged into its longest-bordering neighbour.

    A convex Voronoi cell clipped to a concave outline can fall apart into pieces; a village
    in two places (one of them a sliver) is not believable.
    """
    geoms = list(geoms)
    tree = shapely.STRtree(geoms)
    for index in range(len(geoms)):
        parts = _parts(geoms[index])
        if len(parts) < 2:
            continue
        geoms[index] = _snap(parts[0])
        for fragment in parts[1:]:
            neighbours = [j for j in tree.query(fragment) if j != index]
            shared = [shapely.intersection(fragment.boundary, geoms[j]).length for j in neighbours]
            target = neighbours[int(np.argmax(shared))]
            geoms[target] = shapely.union(geoms[target], fragment, grid_size=PRECISION_DEG)
    return geoms


def village_polygons(settlements: Settlements, outline: Polygon) -> list[BaseGeometry]:
    """Return the Voronoi cells of the settlements clipped to the outline (one per settlement)."""
    points = shapely.multipoints(np.column_stack([settlements.lon, settlements.lat]))
    cells = shapely.get_parts(
        shapely.voronoi_polygons(points, extend_to=outline.buffer(0.1), ordered=True)
    )
    clipped = shapely.intersection(cells, outline, grid_size=PRECISION_DEG)
    return _absorb_fragments(list(clipped))


def _kmeans_districts(rng: np.random.Generator, xy_km: np.ndarray, k: int) -> np.ndarray:
    """Return a district index per village from k-means on village positions (km).

    Of several random starts the most even split wins: the dense valley otherwise tends to
    end up as one huge district (and village codes have only two digits).
    """
    best: np.ndarray | None = None
    for _ in range(12):
        centres = xy_km[rng.choice(len(xy_km), size=k, replace=False)]
        for _ in range(30):
            distances = np.linalg.norm(xy_km[:, None, :] - centres[None, :, :], axis=2)
            labels = np.argmin(distances, axis=1)
            centres = np.array([
                xy_km[labels == j].mean(axis=0) if np.any(labels == j) else centres[j]
                for j in range(k)
            ])
        if best is None or _unevenness(labels, k) < _unevenness(best, k):
            best = labels
    assert best is not None
    return best


def _unevenness(labels: np.ndarray, k: int) -> int:
    """Return the size of the largest district (an empty district counts as the worst)."""
    sizes = np.bincount(labels, minlength=k)
    return len(labels) if sizes.min() == 0 else int(sizes.max())


def _make_contiguous(
    labels: np.ndarray, geoms: list[BaseGeometry], k: int
) -> tuple[np.ndarray, list[BaseGeometry]]:
    """Return labels and district unions where no district falls apart into pieces."""
    labels = labels.copy()
    for _ in range(20):
        unions = [shapely.union_all([geoms[i] for i in np.flatnonzero(labels == j)],
                                    grid_size=PRECISION_DEG) for j in range(k)]
        broken = [j for j in range(k) if len(_parts(unions[j])) > 1]
        if not broken:
            return labels, unions
        for j in broken:
            main = _parts(unions[j])[0]
            for i in np.flatnonzero(labels == j):
                if shapely.intersection(geoms[i], main).area < 0.5 * geoms[i].area:
                    labels[i] = _best_neighbour(int(i), j, geoms, unions)
    raise RuntimeError("could not make the demo districts contiguous")


def _best_neighbour(
    village: int, district: int, geoms: list[BaseGeometry], unions: list[BaseGeometry]
) -> int:
    """Return the other district sharing the longest border with the village."""
    shared = [
        -1.0 if j == district else shapely.intersection(geoms[village].boundary, u).length
        for j, u in enumerate(unions)
    ]
    return int(np.argmax(shared))


def _as_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    """Return the geometry as a MultiPolygon (the one geometry type of every admin layer)."""
    return MultiPolygon(_parts(geometry))


def _district_names(
    labels: np.ndarray, settlements: Settlements, land: Landscape, k: int
) -> list[tuple[str, str]]:
    """Return each district's (EN, AR) name: its largest town, else its largest village."""
    names = []
    for j in range(k):
        members = np.flatnonzero(labels == j)
        towns = sorted({int(t) for t in settlements.town[members] if t >= 0},
                       key=lambda t: -land.towns[t].population)
        if towns:
            names.append((land.towns[towns[0]].name_en, land.towns[towns[0]].name_ar))
        else:
            seat = members[np.argmax(settlements.size[members])]
            names.append((settlements.name_en[seat], settlements.name_ar[seat]))
    return names


def make_admin_units(rng: np.random.Generator, land: Landscape) -> AdminUnits:
    """Return the governorate, its districts and villages, coded and named."""
    settlements = make_settlements(rng, land)
    village_geoms = village_polygons(settlements, land.outline)
    # Quarters of one town must share a district, so they are placed at their town's centre.
    anchor_lon = np.where(settlements.town >= 0,
                          [land.towns[t].lon for t in settlements.town], settlements.lon)
    anchor_lat = np.where(settlements.town >= 0,
                          [land.towns[t].lat for t in settlements.town], settlements.lat)
    xy_km = np.column_stack([to_km(anchor_lon, 0.0), to_km(0.0, anchor_lat)])
    labels = _kmeans_districts(rng, xy_km, N_DISTRICTS)
    labels, unions = _make_contiguous(labels, village_geoms, N_DISTRICTS)
    return _coded_units(settlements, village_geoms, labels, unions, land)


def _coded_units(
    settlements: Settlements, village_geoms: list[BaseGeometry], labels: np.ndarray,
    unions: list[BaseGeometry], land: Landscape,
) -> AdminUnits:
    """Return the units ordered and P-coded north to south (districts, then their villages)."""
    names = _district_names(labels, settlements, land, N_DISTRICTS)
    district_order = sorted(range(N_DISTRICTS), key=lambda j: (-unions[j].centroid.y,
                                                               unions[j].centroid.x))
    village_order, village_codes, village_district = [], [], []
    for rank, j in enumerate(district_order):
        members = sorted(np.flatnonzero(labels == j),
                         key=lambda i: (-settlements.lat[i], settlements.lon[i]))
        if len(members) > 99:
            raise RuntimeError("a demo district has more villages than 2-digit codes allow")
        village_order += members
        village_codes += [f"{GOVERNORATE_CODE}{rank + 1:02d}{n + 1:02d}"
                          for n in range(len(members))]
        village_district += [rank] * len(members)
    order = np.array(village_order)
    return AdminUnits(
        district_code=[f"{GOVERNORATE_CODE}{r + 1:02d}" for r in range(N_DISTRICTS)],
        district_en=[names[j][0] for j in district_order],
        district_ar=[names[j][1] for j in district_order],
        district_geom=[_as_multipolygon(unions[j]) for j in district_order],
        village_code=village_codes,
        village_en=[settlements.name_en[i] for i in order],
        village_ar=[settlements.name_ar[i] for i in order],
        village_district=np.array(village_district),
        village_geom=[_as_multipolygon(village_geoms[i]) for i in order],
        village_lon=settlements.lon[order],
        village_lat=settlements.lat[order],
        village_town=settlements.town[order],
        village_size=settlements.size[order],
        # The union, not the drawn outline: snapping the clip points to the precision grid
        # moves the border by a fraction of a metre, and the levels must nest exactly.
        governorate_geom=_as_multipolygon(shapely.union_all(unions, grid_size=PRECISION_DEG)),
    )
