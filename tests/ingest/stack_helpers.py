"""Helpers for the database- and HTTP-level ingestion tests: a private stack, files, snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio
from ingest_helpers import write_tif
from rasterio.transform import from_origin
from rasterio.windows import Window
from sqlalchemy import Engine, text

from geo.errors import ValidationError
from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.settings import Settings

REPO = Path(__file__).resolve().parents[2]
# Every table an ingest writes to; a failed ingest must leave each count unchanged.
TABLES = (
    "datasets", "localities", "events", "event_layers", "institutions", "indicators",
    "observations", "community_priorities", "raster_layers", "raster_versions",
    "household_records",
)
SCRIPT = "<script>alert(1)</script>"


@dataclass
class Stack:
    """A migrated database, its data directory and an app served over HTTP, with two keys."""

    url: str
    settings: Settings
    engine: Engine
    base_url: str
    uploader_key: str
    analyst_key: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """Return the data directory (rasters/, staging/)."""
        return self.settings.storage.data_dir

    def client(self, key: str | None = "uploader") -> httpx.Client:
        """Return an HTTP client on the app, carrying the uploader (or analyst, or no) key."""
        secret = {"uploader": self.uploader_key, "analyst": self.analyst_key}.get(key or "")
        headers = {"X-API-Key": secret} if secret else {}
        return httpx.Client(base_url=self.base_url, timeout=120, headers=headers)

    def scalar(self, sql: str, **params: Any) -> Any:
        """Return the single value of a query."""
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        """Return every row of a query."""
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params).all())


# --- snapshots: what "nothing left behind" compares ------------------------------------


def files_under(directory: Path) -> set[str]:
    """Return every file and folder below `directory`, relative to it."""
    if not directory.exists():
        return set()
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def snapshot(stack: Stack) -> dict[str, Any]:
    """Return row counts of every ingest table and the files under rasters/ and staging/."""
    with stack.engine.connect() as conn:
        counts = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in TABLES}
    return {
        "rows": counts,
        "rasters": files_under(stack.settings.storage.raster_dir),
        "staging": files_under(stack.settings.storage.staging_dir),
    }


def assert_nothing_left(stack: Stack, before: dict[str, Any], timeout: float = 10) -> None:
    """Assert no new rows and no new files since `before` (staging may take a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        after = snapshot(stack)
        # The job's status is written before its finally-block clears staging.
        if after == before or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after["rows"] == before["rows"]
    assert after["rasters"] == before["rasters"]
    assert after["staging"] == before["staging"]


# --- HTTP and CLI ----------------------------------------------------------------------


def upload(
    client: httpx.Client,
    kind: str,
    path: Path,
    /,
    *,
    filename: str | None = None,
    wait: bool = True,
    **options: Any,
) -> httpx.Response:
    """POST a file with its options as form fields (dicts as JSON); `kind` may be an option too."""
    data = {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in options.items()}
    files = {"file": (filename or path.name, path.read_bytes(), "application/octet-stream")}
    params = {"wait": "true"} if wait else {}
    return client.post(f"/api/v1/uploads/{kind}", params=params, files=files, data=data)


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    """Poll a job until it has succeeded or failed; return its record."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def cli_env(stack: Stack, **extra: str) -> dict[str, str]:
    """Return the environment that points the CLI at the stack's database and data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKATLAS_")}
    env.update(DATABASE_URL=stack.url, RISKATLAS_DATA_DIR=str(stack.data_dir), COLUMNS="200")
    env.update(extra)
    return env


def cli_command(kind: str, path: Path, *args: str) -> list[str]:
    """Return the argv of `riskatlas ingest KIND FILE ARGS...`."""
    return [sys.executable, "-m", "api.cli", "ingest", kind, str(path), *args]


def run_cli(
    stack: Stack, kind: str, path: Path, *args: str, timeout: float = 180, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `riskatlas ingest` as a child process and return what it did."""
    return subprocess.run(
        cli_command(kind, path, *args), cwd=REPO, env=cli_env(stack, **env),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def cli_summary(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Return the JSON summary the CLI prints on success (`loaded X as KIND: {...}`)."""
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("loaded "))
    return json.loads(line.split(": ", 1)[1])


# --- synthetic files -------------------------------------------------------------------


def square(x: float, y: float, size: float = 0.1) -> dict[str, Any]:
    """Return a GeoJSON polygon: a square with its south-west corner at (x, y)."""
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def write_geojson(path: Path, features: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> Path:
    """Write a FeatureCollection from (properties, geometry) pairs, UTF-8 as is."""
    document = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": p, "geometry": g} for p, g in features],
    }
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path


def write_text(path: Path, content: str) -> Path:
    """Write UTF-8 text and return the path."""
    path.write_text(content, encoding="utf-8")
    return path


@dataclass(frozen=True)
class Region:
    """Codes of a small synthetic region: one level-1 unit and two level-2 units."""

    prefix: str
    x: float = 30.0
    y: float = -2.0

    @property
    def adm1(self) -> str:
        """Return the level-1 code."""
        return f"{self.prefix}1"

    @property
    def adm2(self) -> tuple[str, str]:
        """Return the two level-2 codes."""
        return f"{self.prefix}101", f"{self.prefix}102"


def localities_files(tmp: Path, region: Region) -> tuple[Path, Path]:
    """Write level-1 and level-2 COD-style GeoJSONs with Arabic, accented and HTML names."""
    x, y = region.x, region.y
    adm1 = write_geojson(tmp / f"{region.prefix}_adm1.geojson", [(
        {"ADM1_PCODE": region.adm1, "ADM1_EN": "Région de Séguéla", "ADM1_AR": "منطقة سيغيلا"},
        square(x, y, 0.2),
    )])
    adm2 = write_geojson(tmp / f"{region.prefix}_adm2.geojson", [
        ({"ADM2_PCODE": region.adm2[0], "ADM2_EN": "Séguéla-Nord", "ADM2_AR": "الرقة",
          "ADM1_PCODE": region.adm1}, square(x, y)),
        ({"ADM2_PCODE": region.adm2[1], "ADM2_EN": SCRIPT, "ADM2_AR": "حلب",
          "ADM1_PCODE": region.adm1}, square(x + 0.1, y)),
    ])
    return adm1, adm2


def population_wide(tmp: Path, region: Region) -> Path:
    """Write a wide population table: code, population, year."""
    a, b = region.adm2
    return write_text(tmp / "population_wide.csv",
                      f"code,population,year\n{a},1200,2020\n{b},\"3,400\",2020\n")


def population_long(tmp: Path, region: Region) -> Path:
    """Write an IBF long population table for both levels (populationTotal plus noise)."""
    a, b = region.adm2
    return write_text(tmp / "population_long.csv", (
        "countryCodeISO3,adminLevel,placeCode,indicator,value\n"
        f"XXX,1,{region.adm1},populationTotal,5000\n"
        f"XXX,2,{a},populationTotal,2000\n"
        f"XXX,2,{b},populationTotal,3000\n"
        f"XXX,2,{b},householdSize,4.5\n"
    ))


def population_raster(tmp: Path, region: Region, name: str) -> Path:
    """Write a 20×20 grid of 2.5 (people per cell, or per km²) over the region."""
    data = np.full((20, 20), 2.5, dtype="float32")
    data[0, 0] = -9999.0
    return write_tif(tmp / name, data,
                     transform=from_origin(region.x, region.y + 0.2, 0.01, 0.01))


def hazard_raster(tmp: Path, name: str = "flood.tif", value: float = 1.0,
                  size: int = 64) -> Path:
    """Write a small flood-depth GeoTIFF in UTM (any CRS is accepted)."""
    data = (np.arange(size * size, dtype="float32").reshape(size, size) % 7) * value
    return write_tif(tmp / name, data, crs="EPSG:32736",
                     transform=from_origin(500_000, 9_800_000, 100, 100))


def big_raster(path: Path, size: int, *, seed: int = 1) -> Path:
    """Write a size×size float32 tiled GeoTIFF band by band (bounded memory)."""
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32",
                   nodata=-9999.0, crs="EPSG:4326",
                   transform=from_origin(100.0, 10.0, 0.0005, 0.0005),
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate")
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            # Random values do not compress, so the upload stays realistic in size.
            band = rng.random((rows, size), dtype="float32") * 3
            dst.write(band, 1, window=Window(0, top, size, rows))
    return path


def events_csv(tmp: Path, region: Region) -> Path:
    """Write ACLED-style events (dates like '12 March 2023')."""
    lat, lon = region.y + 0.05, region.x + 0.05
    return write_text(tmp / "acled.csv", (
        "event_id_cnty,event_date,event_type,actor1,fatalities,latitude,longitude,notes\n"
        f"X1,12 March 2023,Battles,Militia A,3,{lat},{lon},\"clash, near market\"\n"
        f"X2,14 March 2023,Violence against civilians,Militia B,0,{lat + 0.01},{lon},\n"
        f"X3,02 April 2023,Protests,Protesters,,{lat},{lon + 0.01},{SCRIPT}\n"
    ))


def institutions_csv(tmp: Path, region: Region) -> Path:
    """Write institutions with types from the vocabulary's source labels."""
    lat, lon = region.y + 0.05, region.x + 0.05
    return write_text(tmp / "institutions.csv", (
        "name,type,capacity,sensitive,latitude,longitude\n"
        f"Centre de Santé Séguéla,Health Centre,40,no,{lat},{lon}\n"
        f"École primaire,Primary school,,no,{lat + 0.01},{lon}\n"
        f"Safe house,Shelter,12,yes,{lat},{lon + 0.01}\n"
    ))


def indicators_csv(tmp: Path, prefix: str) -> Path:
    """Write indicator metadata for two indicators named after the prefix."""
    p = prefix.lower()
    return write_text(tmp / "indicators.csv", (
        "code,name,dimension,polarity,cutoff,unit\n"
        f"{p}_water,Access to safe water,health,higher_is_better,50,%\n"
        f"{p}_food,Food insecurity,food,higher_is_worse,30,%\n"
    ))


def observations_csv(tmp: Path, region: Region) -> Path:
    """Write long-form observations for both level-2 units, two subgroups."""
    p = region.prefix.lower()
    a, b = region.adm2
    return write_text(tmp / "observations.csv", (
        "locality_code,indicator,period,subgroup,value,sample_size,source\n"
        f"{a},{p}_water,2023,all,61.5,120,survey\n"
        f"{a},{p}_water,2023,sex=female,55,60,survey\n"
        f"{b},{p}_food,2023,all,41,80,survey\n"
    ))


def priorities_csv(tmp: Path, region: Region) -> Path:
    """Write a community forum's ranked needs."""
    a, _ = region.adm2
    return write_text(tmp / "priorities.csv",
                      f"locality_code,forum_date,needs\n{a},2024-02-01,water; health; schools\n")


def quiet_write_tif(path: Path, **kwargs: Any) -> Path:
    """Write a GeoTIFF, silencing rasterio's not-georeferenced warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return write_tif(path, **kwargs)


@dataclass
class Fresh:
    """An empty migrated database of its own, and how to load into it as users do."""

    stack: Stack

    def load(self, kind: str, path: Path, /, **options: Any) -> dict[str, Any]:
        """Ingest a file through the service (as the API and CLI do); return the result."""
        job_id = start_ingest_job(self.stack.engine, kind, options, path.name)
        return run_ingest_job(self.stack.engine, self.stack.settings, job_id, kind, path,
                              path.name, options)

    def refuse(self, kind: str, path: Path, /, **options: Any) -> ValidationError:
        """Ingest a file that must be refused; return the error after checking nothing stayed."""
        before = snapshot(self.stack)
        with pytest.raises(ValidationError) as caught:
            self.load(kind, path, **options)
        assert_nothing_left(self.stack, before)
        return caught.value


Builder = Callable[[Path], Path]
