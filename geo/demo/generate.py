"""Generate a believable, entirely synthetic demo region as ordinary files.

`generate_demo(out_dir, seed)` writes admin boundaries (GeoPackage, OCHA COD columns), a
population raster and table, three hazard rasters (GeoTIFF), ACLED-style conflict events,
an institution inventory, indicator metadata, survey observations and community priorities
(CSV, UTF-8). The files go into riskatlas through the same `ingest(kind, path, **options)`
paths as a user's uploads; the returned `DemoManifest` says which file is which.

The same seed gives byte-identical CSVs and identical raster arrays: every random draw comes
from `numpy.random.default_rng`, one stream per layer, never from global state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio

from geo.demo import households as demo_households
from geo.demo import survey
from geo.demo.admin import (
    GOVERNORATE_AR,
    GOVERNORATE_CODE,
    GOVERNORATE_EN,
    AdminUnits,
    make_admin_units,
)
from geo.demo.events import conflict_events, institutions
from geo.demo.landscape import NODATA, Landscape, make_landscape
from geo.demo.rasters import HAZARDS, hazard_arrays, population_counts, village_id_grid

DEFAULT_SEED = 20261125
POPULATION_YEAR = 2025
CRS = "EPSG:4326"

# What any seed produces; tests and the loader check the generated counts against these.
COUNT_RANGES: dict[str, tuple[int, int]] = {
    "districts": (8, 8),
    "villages": (360, 400),
    "events": (1_500, 1_500),
    "institutions": (280, 320),
    "observation_rows": (40_000, 70_000),
    "priority_villages": (20, 20),
}

# Independent random streams: changing how one layer draws leaves the others unchanged.
STREAMS = ("landscape", "admin", "population", "hazards", "events", "institutions", "survey",
           "priorities", "households")

ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True)
class DemoFile:
    """One generated file: its kind and the options to pass to `ingest(kind, path, **options)`."""

    kind: str  # localities|population|hazard|events|institutions|indicators|observations|priorities
    path: Path
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DemoCounts:
    """How many of each thing the generated region holds."""

    governorates: int
    districts: int
    villages: int
    population: int
    events: int
    institutions: int
    sensitive_institutions: int
    indicators: int
    observation_rows: int
    small_sample_rows: int  # observations with sample_size < 10, for suppression to withhold
    priority_villages: int
    priority_rows: int


@dataclass(frozen=True)
class DemoManifest:
    """Every generated file, in loading order, with the counts a loader should find."""

    out_dir: Path
    seed: int
    files: tuple[DemoFile, ...]
    counts: DemoCounts
    documents: tuple[Path, ...] = ()  # hazards.json, README.md, manifest.json (not ingested)

    def of_kind(self, kind: str) -> list[DemoFile]:
        """Return the files of one kind, in loading order."""
        return [f for f in self.files if f.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        """Return the manifest as JSON-ready data with paths relative to `out_dir`."""
        return {
            "seed": self.seed,
            "files": [{"kind": f.kind, "path": f.path.name, "options": f.options}
                      for f in self.files],
            "counts": asdict(self.counts),
            "documents": [p.name for p in self.documents],
        }


@dataclass
class _Layers:
    """Everything generated in memory before it is written."""

    land: Landscape
    admin: AdminUnits
    village_ids: np.ndarray
    people: np.ndarray
    hazards: dict[str, np.ndarray]
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    institutions: pd.DataFrame = field(default_factory=pd.DataFrame)
    observations: pd.DataFrame = field(default_factory=pd.DataFrame)
    priorities: pd.DataFrame = field(default_factory=pd.DataFrame)
    households: pd.DataFrame = field(default_factory=pd.DataFrame)


def _stream(seed: int, name: str) -> np.random.Generator:
    """Return the random generator of one named layer."""
    return np.random.default_rng([seed, STREAMS.index(name)])


def _write_csv(table: pd.DataFrame, path: Path) -> Path:
    """Write a table as UTF-8 CSV with Unix line ends (byte-stable across runs) and return path."""
    table.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
    return path


def _write_raster(array: np.ndarray, valid: np.ndarray, land: Landscape, path: Path,
                  description: str, unit: str) -> Path:
    """Write a float32 GeoTIFF (deflate, tiled) with nodata outside `valid` and return path."""
    data = np.where(valid, array, NODATA).astype("float32")
    profile = {
        "driver": "GTiff", "width": land.grid.width, "height": land.grid.height, "count": 1,
        "dtype": "float32", "crs": CRS, "transform": land.grid.transform, "nodata": NODATA,
        "compress": "deflate", "predictor": 3, "tiled": True, "blockxsize": 256,
        "blockysize": 256,
    }
    with rasterio.Env(GDAL_NUM_THREADS="1"), rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, description)
        dst.units = (unit,)
    return path


def _admin_frames(admin: AdminUnits) -> dict[int, gpd.GeoDataFrame]:
    """Return the three admin levels as GeoDataFrames with OCHA COD column names."""
    district_of = np.asarray(admin.village_district)
    adm1 = {"ADM1_PCODE": [GOVERNORATE_CODE], "ADM1_EN": [GOVERNORATE_EN],
            "ADM1_AR": [GOVERNORATE_AR]}
    adm2 = {"ADM2_PCODE": admin.district_code, "ADM2_EN": admin.district_en,
            "ADM2_AR": admin.district_ar, "ADM1_PCODE": GOVERNORATE_CODE,
            "ADM1_EN": GOVERNORATE_EN}
    adm3 = {"ADM3_PCODE": admin.village_code, "ADM3_EN": admin.village_en,
            "ADM3_AR": admin.village_ar,
            "ADM2_PCODE": [admin.district_code[d] for d in district_of],
            "ADM2_EN": [admin.district_en[d] for d in district_of],
            "ADM1_PCODE": GOVERNORATE_CODE, "ADM1_EN": GOVERNORATE_EN}
    geoms = {1: [admin.governorate_geom], 2: admin.district_geom, 3: admin.village_geom}
    return {level: gpd.GeoDataFrame(pd.DataFrame(columns), geometry=geoms[level], crs=CRS)
            for level, columns in ((1, adm1), (2, adm2), (3, adm3))}


def _write_localities(admin: AdminUnits, out_dir: Path) -> list[DemoFile]:
    """Write adm1/adm2/adm3 GeoPackages and return their manifest entries."""
    files = []
    for level, frame in _admin_frames(admin).items():
        path = out_dir / f"adm{level}.gpkg"
        path.unlink(missing_ok=True)  # a fresh file, not a layer appended to an old one
        frame.to_file(path, layer=f"adm{level}", driver="GPKG", engine="pyogrio")
        files.append(DemoFile("localities", path, {"level": level}))
    return files


def _population_table(admin: AdminUnits, village_ids: np.ndarray,
                      people: np.ndarray) -> pd.DataFrame:
    """Return people per locality at every level: village cell-centre sums, added up."""
    per_village = np.bincount(village_ids.ravel(), weights=people.ravel(),
                              minlength=len(admin.village_code) + 1)[1:]
    villages = np.round(per_village).astype(int)
    districts = np.bincount(admin.village_district, weights=villages).astype(int)
    codes = [GOVERNORATE_CODE, *admin.district_code, *admin.village_code]
    totals = [int(villages.sum()), *districts.tolist(), *villages.tolist()]
    return pd.DataFrame({"code": codes, "population": totals, "year": POPULATION_YEAR})


def _write_population(layers: _Layers, out_dir: Path) -> list[DemoFile]:
    """Write population.csv and population.tif and return their manifest entries."""
    table = _population_table(layers.admin, layers.village_ids, layers.people)
    csv_path = _write_csv(table, out_dir / "population.csv")
    tif_path = _write_raster(layers.people, layers.land.domain, layers.land,
                             out_dir / "population.tif", "Population count per cell", "people")
    options = {"name": "population", "year": POPULATION_YEAR}
    return [DemoFile("population", csv_path, options),
            DemoFile("population", tif_path, {**options, "value_kind": "count"})]


def _write_hazards(layers: _Layers, out_dir: Path) -> list[DemoFile]:
    """Write the hazard rasters and hazards.json and return the rasters' manifest entries."""
    files = []
    for meta in HAZARDS:
        options = {k: v for k, v in meta.items() if k != "file"}
        path = _write_raster(layers.hazards[str(meta["kind"])], layers.land.domain, layers.land,
                             out_dir / str(meta["file"]), str(meta["name"]), str(meta["unit"]))
        files.append(DemoFile("hazard", path, options))
    (out_dir / "hazards.json").write_text(
        json.dumps(list(HAZARDS), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return files


def _write_tables(layers: _Layers, out_dir: Path) -> list[DemoFile]:
    """Write the CSV tables (events to priorities) and return their manifest entries."""
    events_options = {"layer": "conflict", "kind": "conflict"}
    return [
        DemoFile("events", _write_csv(layers.events, out_dir / "conflict_events.csv"),
                 events_options),
        DemoFile("institutions",
                 _write_csv(layers.institutions, out_dir / "institutions.csv")),
        DemoFile("indicators", _write_csv(survey.indicators(), out_dir / "indicators.csv")),
        DemoFile("observations",
                 _write_csv(layers.observations, out_dir / "observations.csv")),
        DemoFile("priorities", _write_csv(layers.priorities, out_dir / "priorities.csv")),
        DemoFile("households", _write_csv(layers.households, out_dir / "households.csv")),
    ]


def _counts(layers: _Layers) -> DemoCounts:
    """Return the counts of the generated region."""
    per_village = np.bincount(layers.village_ids.ravel(), weights=layers.people.ravel())[1:]
    return DemoCounts(
        governorates=1,
        districts=len(layers.admin.district_code),
        villages=len(layers.admin.village_code),
        population=int(np.round(per_village).astype(int).sum()),
        events=len(layers.events),
        institutions=len(layers.institutions),
        sensitive_institutions=int((layers.institutions["sensitive"] == "true").sum()),
        indicators=len(survey.INDICATORS) + 1,
        observation_rows=len(layers.observations),
        small_sample_rows=int((layers.observations["sample_size"] < 10).sum()),
        priority_villages=int(layers.priorities["locality_code"].nunique()),
        priority_rows=len(layers.priorities),
    )


def _readme(seed: int, counts: DemoCounts) -> str:
    """Return the generated README text: what the files are and that they are synthetic."""
    return f"""# riskatlas demo region — synthetic data

Everything here is **invented** by `geo.demo.generate.generate_demo` (seed `{seed}`). The places,
names, people, hazards, events and survey answers do not describe any real place or person.
The same seed always produces the same files.

## Counts

| what | count |
|---|---|
| governorate (`{GOVERNORATE_CODE}`, {GOVERNORATE_EN}) | {counts.governorates} |
| districts (`XY0101`…) | {counts.districts} |
| villages (`XY010101`…) | {counts.villages} |
| population (raster sum over villages) | {counts.population:,} |
| conflict events | {counts.events} |
| institutions (sensitive) | {counts.institutions} ({counts.sensitive_institutions}) |
| indicators | {counts.indicators} |
| observation rows (sample size < 10) | {counts.observation_rows} ({counts.small_sample_rows}) |
| villages with community priorities (rows) | {counts.priority_villages} ({counts.priority_rows}) |

## Files

- `adm1.gpkg`, `adm2.gpkg`, `adm3.gpkg` — admin boundaries, EPSG:4326, MultiPolygon, OCHA
  COD columns (`ADMn_PCODE`, `ADMn_EN`, `ADMn_AR`, parent codes). Villages tile districts.
- `population.tif` — people per cell (~100 m, float32, nodata {NODATA:g});
  `population.csv` — `code,population,year` for every locality (village cell-centre sums
  of the raster; districts and the governorate are sums of their villages).
- `flood_depth.tif` (m), `landslide_susceptibility.tif` (0–1), `drought_index.tif` (0–1,
  higher is drier) — float32, nodata {NODATA:g}; `hazards.json` holds kind, unit, polarity,
  exposure threshold and level thresholds (low, medium, high) of each.
- `conflict_events.csv` — ACLED-style events 2023-10-01 … 2026-09-30.
- `institutions.csv` — `name,type,capacity,sensitive,latitude,longitude`; capacity is beds
  (hospital), daily consultations (health centre), pupils (schools, vocational), people
  reached (NGO), members (youth centre), staff (administration), m³/day (water point).
- `indicators.csv` — `code,name,dimension,polarity,cutoff,unit,target,design_effect`.
- `observations.csv` — `locality_code,indicator,period,subgroup,value,sample_size,source`
  for {survey.BASELINE} (baseline) and {survey.FOLLOW_UP} (follow-up). `population_share`
  rows give subgroup shares of each village (sample_size = the subgroup's head count).
- `priorities.csv` — `locality_code,forum_date,rank,need` from community forums.
- `households.csv` — person-level microdata of a household survey in
  {demo_households.N_VILLAGES} villages, both rounds: `locality_code,period,household_id,
  person_id,weight,sex,age,disability,status` and one 0/1 answer per indicator (1 = counted
  in the indicator's numerator), for the Alkire-Foster measures.
"""


def _generate_layers(seed: int, report: Callable[[str], None]) -> _Layers:
    """Return every layer generated in memory, reporting each step as it starts."""
    report("landscape")
    land = make_landscape(_stream(seed, "landscape"))
    report("localities")
    admin = make_admin_units(_stream(seed, "admin"), land)
    village_ids = village_id_grid(land, admin)
    report("population")
    people = population_counts(_stream(seed, "population"), land, admin, village_ids)
    report("hazards")
    layers = _Layers(land, admin, village_ids, people,
                     hazard_arrays(_stream(seed, "hazards"), land))
    report("events")
    layers.events = conflict_events(_stream(seed, "events"), land, admin, people)
    report("institutions")
    layers.institutions = institutions(_stream(seed, "institutions"), land, admin, people)
    report("observations")
    rng = _stream(seed, "survey")
    context = survey.village_context(rng, land, admin, village_ids, people, layers.hazards,
                                     layers.events)
    layers.observations = survey.observations(rng, context, admin)
    report("priorities")
    layers.priorities = survey.priorities(_stream(seed, "priorities"), context, admin)
    layers.households = demo_households.households(_stream(seed, "households"), context, admin)
    return layers


def generate_demo(
    out_dir: Path, seed: int = DEFAULT_SEED, progress: ProgressCallback | None = None
) -> DemoManifest:
    """Write the synthetic demo region into `out_dir` and return its manifest."""
    steps = ("landscape", "localities", "population", "hazards", "events", "institutions",
             "observations", "priorities", "writing files")
    done = iter(range(len(steps)))

    def report(step: str) -> None:
        if progress is not None:
            progress(step, next(done) / len(steps))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    layers = _generate_layers(seed, report)
    report("writing files")
    files = (*_write_localities(layers.admin, out_dir), *_write_population(layers, out_dir),
             *_write_hazards(layers, out_dir), *_write_tables(layers, out_dir))
    counts = _counts(layers)
    readme = out_dir / "README.md"
    readme.write_text(_readme(seed, counts), encoding="utf-8")
    documents = (out_dir / "hazards.json", readme, out_dir / "manifest.json")
    manifest = DemoManifest(out_dir, seed, tuple(files), counts, documents)
    documents[2].write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
    if progress is not None:
        progress("done", 1.0)
    return manifest


def main() -> None:  # pragma: no cover - a developer convenience, the CLI wraps generate_demo
    """Generate the demo into the directory given on the command line and log the timing."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    manifest = generate_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
    logging.getLogger(__name__).info("%s in %.1f s", manifest.counts,
                                     time.perf_counter() - started)


if __name__ == "__main__":  # pragma: no cover
    main()
