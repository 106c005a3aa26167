"""A small region loaded the way users load it and scored: for the fault and security suites.

Boundaries (level 1, then level 2), then population, then a hazard raster, an event layer
and institutions, all through the one ingest path; then a full score run. Names may be
chosen by the caller (e.g. formula-like names for the CSV-injection test).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_origin
from sqlalchemy import Engine

from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.runs.lifecycle import run_scores
from geo.settings import Settings

DEFAULT_NAMES = ("Alpha", "Beta", "Gamma", "Delta")


@dataclass(frozen=True)
class SmallRegion:
    """Codes and names of a level-1 unit split into a row of level-2 units."""

    prefix: str = "SR"
    names: Sequence[str] = DEFAULT_NAMES
    x: float = 30.0
    y: float = -2.0
    size: float = 0.1

    @property
    def adm1(self) -> str:
        """Return the level-1 code."""
        return f"{self.prefix}1"

    @property
    def adm2(self) -> list[str]:
        """Return the level-2 codes, one per name."""
        return [f"{self.prefix}1{i:02d}" for i in range(1, len(self.names) + 1)]


def _square(x: float, y: float, size: float) -> dict[str, Any]:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def _collection(features: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    return json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": p, "geometry": g} for p, g in features]},
        ensure_ascii=False)


def write_files(tmp: Path, region: SmallRegion) -> list[tuple[str, Path, dict[str, Any]]]:
    """Write the region's files; return (kind, path, options) in the order users load them."""
    tmp.mkdir(parents=True, exist_ok=True)
    n, s = len(region.names), region.size
    adm1 = tmp / f"{region.prefix}_adm1.geojson"
    adm1.write_text(_collection([({"ADM1_PCODE": region.adm1, "ADM1_EN": "Region"},
                                  {"type": "Polygon", "coordinates": [[
                                      [region.x, region.y], [region.x + n * s, region.y],
                                      [region.x + n * s, region.y + s],
                                      [region.x, region.y + s], [region.x, region.y]]]})]),
                    encoding="utf-8")
    adm2 = tmp / f"{region.prefix}_adm2.geojson"
    adm2.write_text(_collection([
        ({"ADM2_PCODE": code, "ADM2_EN": name, "ADM1_PCODE": region.adm1},
         _square(region.x + i * s, region.y, s))
        for i, (code, name) in enumerate(zip(region.adm2, region.names, strict=True))]),
        encoding="utf-8")
    population = tmp / f"{region.prefix}_population.csv"
    population.write_text("code,population,year\n" + "".join(
        f"{code},{1000 * (i + 1)},2020\n" for i, code in enumerate(region.adm2)),
        encoding="utf-8")
    hazard = tmp / f"{region.prefix}_flood.tif"
    cells = 10
    data = np.tile(np.linspace(0.0, 2.0, n * cells, dtype="float32"), (cells, 1))
    with rasterio.open(hazard, "w", driver="GTiff", width=n * cells, height=cells, count=1,
                       dtype="float32", nodata=-9999.0, crs="EPSG:4326",
                       transform=from_origin(region.x, region.y + s, s / cells, s / cells)
                       ) as dst:
        dst.write(data, 1)
    events = tmp / f"{region.prefix}_events.csv"
    events.write_text("event_date,event_type,fatalities,latitude,longitude\n" + "".join(
        f"2023-0{1 + i % 9}-15,Battles,{i},{region.y + s / 2},{region.x + (i + 0.5) * s}\n"
        for i in range(n)), encoding="utf-8")
    institutions = tmp / f"{region.prefix}_institutions.csv"
    institutions.write_text(
        "name,type,capacity,latitude,longitude\n"
        f"Clinic,Health Centre,20,{region.y + s / 2},{region.x + s / 2}\n"
        f"School,Primary school,200,{region.y + s / 2},{region.x + 1.5 * s}\n",
        encoding="utf-8")
    return [
        ("localities", adm1, {}), ("localities", adm2, {}), ("population", population, {}),
        ("hazard", hazard, {"name": f"{region.prefix} flood", "kind": "flood", "unit": "m",
                            "threshold": 0.5}),
        ("events", events, {}), ("institutions", institutions, {}),
    ]


def load_and_score(engine: Engine, settings: Settings, tmp: Path,
                   region: SmallRegion) -> dict[str, Any]:
    """Load the region through the ingest path and score it; return the run summary."""
    for kind, path, options in write_files(tmp, region):
        job_id = start_ingest_job(engine, kind, options, path.name)
        run_ingest_job(engine, settings, job_id, kind, path, path.name, options)
    return run_scores(engine, settings)
