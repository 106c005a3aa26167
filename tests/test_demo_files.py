"""The demo generator writes standard, valid, deterministic files with the documented counts."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from geopandas.testing import assert_geodataframe_equal

from geo.demo.generate import COUNT_RANGES, DEFAULT_SEED, DemoManifest, generate_demo

CSV_FILES = ("population.csv", "conflict_events.csv", "institutions.csv", "indicators.csv",
             "observations.csv", "priorities.csv", "households.csv")
RASTERS = ("population.tif", "flood_depth.tif", "landslide_susceptibility.tif",
           "drought_index.tif")
INSTITUTION_TYPES = {"health_centre", "hospital", "school_primary", "school_secondary",
                     "school_vocational", "ngo", "youth_centre", "local_administration",
                     "water_point"}
EVENT_TYPES = {"Battles", "Violence against civilians", "Explosions/Remote violence", "Riots",
               "Protests", "Strategic developments"}
ARABIC = re.compile(r"[\u0600-\u06FF]")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoManifest, list, float]:
    calls: list[tuple[str, float]] = []
    started = time.perf_counter()
    manifest = generate_demo(tmp_path_factory.mktemp("demo_a"), DEFAULT_SEED,
                             progress=lambda step, fraction: calls.append((step, fraction)))
    return manifest, calls, time.perf_counter() - started


@pytest.fixture(scope="module")
def manifest(generated: tuple[DemoManifest, list, float]) -> DemoManifest:
    return generated[0]


@pytest.fixture(scope="module")
def out(manifest: DemoManifest) -> Path:
    return manifest.out_dir


@pytest.fixture(scope="module")
def levels(out: Path) -> dict[int, gpd.GeoDataFrame]:
    return {level: gpd.read_file(out / f"adm{level}.gpkg") for level in (1, 2, 3)}


@pytest.fixture(scope="module")
def again(tmp_path_factory: pytest.TempPathFactory) -> DemoManifest:
    return generate_demo(tmp_path_factory.mktemp("demo_b"), DEFAULT_SEED)


def _read_band(path: Path) -> np.ma.MaskedArray:
    with rasterio.open(path) as src:
        return src.read(1, masked=True)


# --- determinism and speed -------------------------------------------------------------------

def test_same_seed_gives_identical_files(out: Path, again: DemoManifest) -> None:
    for name in (*CSV_FILES, "hazards.json", "README.md", "manifest.json"):
        assert (out / name).read_bytes() == (again.out_dir / name).read_bytes(), name
    for name in RASTERS:
        first, second = _read_band(out / name), _read_band(again.out_dir / name)
        np.testing.assert_array_equal(first.filled(), second.filled(), err_msg=name)
    for level in (1, 2, 3):
        assert_geodataframe_equal(gpd.read_file(out / f"adm{level}.gpkg"),
                                  gpd.read_file(again.out_dir / f"adm{level}.gpkg"))


def test_another_seed_gives_another_region(tmp_path: Path, out: Path) -> None:
    other = generate_demo(tmp_path, seed=7)
    assert (other.out_dir / "observations.csv").read_bytes() != (
        out / "observations.csv").read_bytes()
    assert other.counts.districts == 8


def test_generation_is_fast_and_reports_progress(generated: tuple) -> None:
    _, calls, seconds = generated
    assert seconds < 30
    fractions = [fraction for _, fraction in calls]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert {"localities", "hazards", "observations"} <= {step for step, _ in calls}


# --- manifest and counts ---------------------------------------------------------------------

def test_manifest_lists_every_file_with_its_kind(manifest: DemoManifest) -> None:
    assert all(f.path.is_file() for f in manifest.files)
    assert all(p.is_file() for p in manifest.documents)
    assert [f.options["level"] for f in manifest.of_kind("localities")] == [1, 2, 3]
    assert {f.path.suffix for f in manifest.of_kind("population")} == {".csv", ".tif"}
    hazards = manifest.of_kind("hazard")
    assert {h.options["kind"] for h in hazards} == {"flood", "landslide", "drought"}
    assert all({"name", "unit", "polarity", "threshold", "level_thresholds"} <= h.options.keys()
               for h in hazards)
    for kind in ("events", "institutions", "indicators", "observations", "priorities",
                 "households"):
        assert len(manifest.of_kind(kind)) == 1, kind
    on_disk = json.loads((manifest.out_dir / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest.to_dict()))


def test_manifest_options_are_accepted_by_ingest(manifest: DemoManifest) -> None:
    try:  # the ingester's own option models (which forbid unknown keys) are the judge
        from geo.ingest.options import parse_options
    except ImportError as exc:  # pragma: no cover - only while ingestion is being built
        pytest.skip(f"geo.ingest.options not importable: {exc}")
    for demo_file in manifest.files:
        parse_options(demo_file.kind, demo_file.options)


def test_counts_are_within_documented_ranges(manifest: DemoManifest) -> None:
    counts = manifest.counts
    for name, (low, high) in COUNT_RANGES.items():
        assert low <= getattr(counts, name) <= high, name
    assert 1_100_000 <= counts.population <= 1_300_000


def test_counts_match_the_files(manifest: DemoManifest, out: Path, levels: dict) -> None:
    counts = manifest.counts
    assert (len(levels[1]), len(levels[2]), len(levels[3])) == (
        counts.governorates, counts.districts, counts.villages)
    assert len(pd.read_csv(out / "conflict_events.csv")) == counts.events
    assert len(pd.read_csv(out / "institutions.csv")) == counts.institutions
    assert len(pd.read_csv(out / "indicators.csv")) == counts.indicators
    assert len(pd.read_csv(out / "observations.csv")) == counts.observation_rows
    priorities = pd.read_csv(out / "priorities.csv")
    assert priorities["locality_code"].nunique() == counts.priority_villages
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "synthetic" in readme and str(DEFAULT_SEED) in readme and str(counts.villages) in readme


# --- localities ------------------------------------------------------------------------------

def test_admin_layers_are_valid_multipolygons_in_4326(levels: dict) -> None:
    for level, frame in levels.items():
        assert frame.crs.to_epsg() == 4326, level
        assert set(frame.geom_type) == {"MultiPolygon"}, level
        assert frame.is_valid.all(), level
        assert all(shapely.make_valid(g).equals(g) for g in frame.geometry), level


def _assert_tiles(children: gpd.GeoDataFrame, parent: shapely.Geometry) -> None:
    # Planar areas in degrees are fine here: only ratios to the parent's area are compared.
    geoms = children.geometry.to_numpy()
    union = shapely.union_all(geoms)
    assert union.symmetric_difference(parent).area <= 1e-9 * parent.area
    assert abs(shapely.area(geoms).sum() - parent.area) <= 1e-9 * parent.area  # no overlaps
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.intersection(geoms[left[pairs]], geoms[right[pairs]])
    assert shapely.area(overlap).max(initial=0.0) <= 1e-9 * parent.area


def test_villages_tile_their_district(levels: dict) -> None:
    villages = levels[3]
    for district in levels[2].itertuples():
        _assert_tiles(villages[villages["ADM2_PCODE"] == district.ADM2_PCODE], district.geometry)


def test_districts_tile_the_governorate(levels: dict) -> None:
    _assert_tiles(levels[2], levels[1].geometry.iloc[0])


def test_codes_follow_the_pattern_and_parents_exist(levels: dict) -> None:
    adm1, adm2, adm3 = levels[1], levels[2], levels[3]
    assert list(adm1["ADM1_PCODE"]) == ["XY01"]
    assert adm2["ADM2_PCODE"].str.fullmatch(r"XY01\d{2}").all()
    assert adm3["ADM3_PCODE"].str.fullmatch(r"XY01\d{4}").all()
    assert adm2["ADM2_PCODE"].is_unique and adm3["ADM3_PCODE"].is_unique
    assert set(adm2["ADM1_PCODE"]) <= set(adm1["ADM1_PCODE"])
    assert set(adm3["ADM2_PCODE"]) <= set(adm2["ADM2_PCODE"])
    assert (adm3["ADM3_PCODE"].str[:6] == adm3["ADM2_PCODE"]).all()
    assert adm3["ADM3_EN"].is_unique


def test_arabic_and_accented_names_survive_a_round_trip(levels: dict, tmp_path: Path) -> None:
    adm3 = levels[3]
    assert adm3["ADM3_AR"].map(lambda name: bool(ARABIC.search(name))).all()
    assert not adm3["ADM3_EN"].map(lambda name: bool(ARABIC.search(name))).any()
    assert adm3["ADM3_EN"].str.contains(r"[^\x00-\x7F]").any()  # a few accented EN names
    assert levels[1]["ADM1_AR"].iloc[0] == "محافظة وادي النور"
    adm3.to_file(tmp_path / "copy.gpkg", driver="GPKG")
    copy = gpd.read_file(tmp_path / "copy.gpkg")
    assert list(copy["ADM3_AR"]) == list(adm3["ADM3_AR"])
    assert list(copy["ADM3_EN"]) == list(adm3["ADM3_EN"])


# --- rasters and population ------------------------------------------------------------------

@pytest.mark.parametrize("name", RASTERS)
def test_rasters_are_float32_geotiffs_with_crs_and_nodata(out: Path, name: str) -> None:
    with rasterio.open(out / name) as src:
        assert src.driver == "GTiff" and src.count == 1
        assert src.dtypes[0] == "float32"
        assert src.crs.to_epsg() == 4326
        assert src.nodata == -9999.0
        assert src.compression.name.lower() == "deflate"
        assert src.profile["tiled"]
        assert 600 <= src.width <= 1200 and 500 <= src.height <= 1000
        assert src.res[0] == pytest.approx(0.001)
        band = src.read(1, masked=True)
    assert band.mask.any() and (~band.mask).sum() > 0.5 * band.size


def test_hazard_values_are_in_their_documented_ranges(manifest: DemoManifest) -> None:
    expected = {"flood": (0.0, 3.0), "landslide": (0.0, 1.0), "drought": (0.0, 1.0)}
    for hazard in manifest.of_kind("hazard"):
        band = _read_band(hazard.path).compressed()
        low, high = expected[hazard.options["kind"]]
        assert band.min() >= low and band.max() <= high
        # Each layer has both exposed and unexposed area, or it would not make a map.
        share_over = (band >= hazard.options["threshold"]).mean()
        assert 0.005 < share_over < 0.5, hazard.options["kind"]
    on_disk = json.loads((manifest.out_dir / "hazards.json").read_text(encoding="utf-8"))
    assert [h["kind"] for h in on_disk] == ["flood", "landslide", "drought"]


def test_population_raster_total_matches_the_table(out: Path, levels: dict) -> None:
    people = _read_band(out / "population.tif")
    assert people.min() >= 0
    table = pd.read_csv(out / "population.csv").set_index("code")["population"]
    villages = table[table.index.str.len() == 8]
    districts = table[table.index.str.len() == 6]
    assert set(villages.index) == set(levels[3]["ADM3_PCODE"])
    assert people.sum() == pytest.approx(table["XY01"], rel=1e-3)
    assert villages.sum() == table["XY01"] == districts.sum()
    by_district = villages.groupby(villages.index.str[:6]).sum()
    pd.testing.assert_series_equal(by_district, districts, check_names=False)
    assert (villages > 0).all()


# --- tables ----------------------------------------------------------------------------------

def test_conflict_events_are_acled_like_and_clustered(out: Path, levels: dict) -> None:
    events = pd.read_csv(out / "conflict_events.csv", dtype={"event_date": str})
    assert {"event_id_cnty", "event_date", "event_type", "sub_event_type", "actor1",
            "fatalities", "latitude", "longitude", "admin1", "admin2", "notes"} <= set(events)
    assert events["event_id_cnty"].is_unique
    assert set(events["event_type"]) <= EVENT_TYPES
    assert events["event_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert events["event_date"].min() >= "2023-10-01" and events["event_date"].max() <= "2026-09-30"
    assert (events["fatalities"] >= 0).all()
    governorate = levels[1].geometry.iloc[0]
    assert shapely.contains_xy(governorate, events["longitude"], events["latitude"]).all()
    assert set(events["admin2"]) <= set(levels[2]["ADM2_EN"])
    # Clustered in space (a few districts carry most events) and in time (bursty months).
    district_share = events["admin2"].value_counts(normalize=True)
    assert district_share.iloc[:3].sum() > 0.6
    monthly = events["event_date"].str[:7].value_counts()
    assert monthly.max() > 2.5 * monthly.median()


def test_institutions_cover_the_vocabulary_and_flag_shelters(out: Path, levels: dict) -> None:
    table = pd.read_csv(out / "institutions.csv")
    assert list(table.columns) == ["name", "type", "capacity", "sensitive", "latitude",
                                   "longitude"]
    assert set(table["type"]) <= INSTITUTION_TYPES and table["type"].nunique() >= 8
    assert table["name"].is_unique and (table["capacity"] > 0).all()
    sensitive = table[table["sensitive"]]
    assert 1 <= len(sensitive) <= 5 and set(sensitive["type"]) == {"ngo"}
    governorate = levels[1].geometry.iloc[0]
    assert shapely.contains_xy(governorate, table["longitude"], table["latitude"]).all()


def test_indicators_have_dimension_polarity_and_cutoff(out: Path) -> None:
    table = pd.read_csv(out / "indicators.csv")
    assert list(table.columns) == ["code", "name", "dimension", "polarity", "cutoff", "unit",
                                   "target", "design_effect"]
    assert set(table["polarity"]) == {"higher_is_worse", "higher_is_better"}
    assert {"economic", "food", "health", "personal", "political"} <= set(table["dimension"])
    scored = table[table["code"] != "population_share"]
    assert scored["cutoff"].notna().all()


def test_observations_are_long_form_disaggregated_and_partly_small(out: Path) -> None:
    path = out / "observations.csv"
    assert path.stat().st_size < 10_000_000
    table = pd.read_csv(path, dtype={"period": str})
    assert list(table.columns) == ["locality_code", "indicator", "period", "subgroup", "value",
                                   "sample_size", "source"]
    assert set(table["period"]) == {"2024", "2026"}
    assert {"all", "sex=female", "sex=male", "age=15-24", "disability=yes", "status=migrant",
            "disability=yes;sex=female"} <= set(table["subgroup"])
    indicators = set(pd.read_csv(out / "indicators.csv")["code"])
    assert set(table["indicator"]) == indicators
    assert not table.duplicated(["locality_code", "indicator", "period", "subgroup"]).any()
    assert (table["sample_size"] < 10).any()  # something for small-count suppression
    everyone = table[(table["subgroup"] == "all") & (table["indicator"] != "stunting")]
    assert (everyone["sample_size"] >= 10).mean() > 0.95
    percent = table[table["indicator"] != "population_share"]["value"]
    assert percent.between(0, 100).all()
    shares = table[table["indicator"] == "population_share"]
    assert shares["value"].between(0, 1).all() and "age=0-14" in set(shares["subgroup"])


def test_observations_follow_hazards_and_subgroup_gaps(out: Path) -> None:
    table = pd.read_csv(out / "observations.csv", dtype={"period": str})
    events = pd.read_csv(out / "conflict_events.csv")
    adm2 = gpd.read_file(out / "adm2.gpkg")
    rows = table[(table["indicator"] == "violence_experienced") & (table["subgroup"] == "all")]
    by_district = rows.groupby(rows["locality_code"].str[:6])["value"].mean()
    names = adm2.set_index("ADM2_EN")["ADM2_PCODE"]
    busiest = names[events["admin2"].value_counts().index[0]]
    assert by_district[busiest] > by_district.median()
    # Disabled people are further behind in unemployment than the village as a whole.
    unemployment = table[table["indicator"] == "unemployment"]
    means = unemployment.groupby("subgroup")["value"].mean()
    assert means["disability=yes"] > means["all"]


def test_priorities_rank_needs_for_about_twenty_villages(out: Path, levels: dict) -> None:
    table = pd.read_csv(out / "priorities.csv")
    assert list(table.columns) == ["locality_code", "forum_date", "rank", "need"]
    assert set(table["locality_code"]) <= set(levels[3]["ADM3_PCODE"])
    for _, forum in table.groupby("locality_code"):
        assert list(forum["rank"]) == list(range(1, len(forum) + 1))
        assert forum["need"].is_unique and forum["forum_date"].nunique() == 1


def test_detached_fragments_join_their_longest_bordering_neighbour() -> None:
    from geo.demo.admin import _absorb_fragments  # the repair a concave outline may need

    box = shapely.geometry.box
    split = shapely.MultiPolygon([box(0, 0, 2, 2), box(3, 0, 3.2, 2)])  # sliver east of B
    neighbour = box(2, 0, 3, 2)
    far = box(3.2, 0, 5, 0.1)  # touches the sliver along a shorter edge
    fixed = _absorb_fragments([split, neighbour, far])
    assert [shapely.get_num_geometries(g) for g in fixed] == [1, 1, 1]
    assert fixed[0].equals(box(0, 0, 2, 2))
    assert fixed[1].equals(box(2, 0, 3.2, 2))
    assert shapely.union_all(fixed).equals(shapely.union_all([split, neighbour, far]))


def test_household_microdata_cover_a_sample_of_villages_with_small_cells(out: Path) -> None:
    people = pd.read_csv(out / "households.csv", dtype={"person_id": str})
    assert set(people["period"].astype(str)) == {"2024", "2026"}
    villages = people["locality_code"].unique()
    assert 10 <= len(villages) <= 40
    assert (people["weight"] > 0).all()
    assert not people.duplicated(["locality_code", "period", "household_id", "person_id"]).any()
    answers = ["poverty_rate", "food_insecurity", "safe_water_access", "school_attendance",
               "violence_experienced"]
    assert set(np.unique(people[answers].to_numpy())) <= {0, 1}
    cells = people.groupby(["locality_code", "period", "disability", "status"]).size()
    assert (cells < 10).any() and (cells >= 100).any()  # some withheld, some solid
