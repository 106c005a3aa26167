"""Defect 11: a full disk answers 507 naming what was full, and leaves nothing half-written.

Each test puts one storage on a small tmpfs (root mounts it, the test unmounts it): the
data directory (staging), the raster directory alone, or a PostgreSQL tablespace holding
the localities table. Before the fix each of these answered 500 "internal error" (or 422
"the raster is corrupt" when GDAL was the one writing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
import rasterio
from fault_helpers import tmpfs
from rasterio.transform import from_origin
from sqlalchemy import Engine, text

from geo.db import build_engine
from geo.keys import create_key
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer

REPO = Path(__file__).resolve().parents[2]
TABLES = ("datasets", "localities", "raster_layers", "raster_versions")


@dataclass
class Database:
    """A migrated database of the fault suite and an uploader key on it."""

    url: str
    engine: Engine
    key: str

    def counts(self) -> dict[str, int]:
        """Return the row count of every table an upload writes to."""
        with self.engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
                    for t in TABLES}


@pytest.fixture(scope="module")
def database(new_database: Callable[[str], str]) -> Iterator[Database]:
    """A database of its own, so the counts compared here are nobody else's."""
    url = new_database("riskatlas_faults_disk")
    upgrade(url)
    engine = build_engine(url, Settings(database=DatabaseSettings(url=url)))
    try:
        yield Database(url, engine, create_key(engine, "disk-full tests", "uploader").secret)
    finally:
        engine.dispose()


def settings_for(db: Database, data_dir: Path) -> Settings:
    """Return settings on the fault database with `data_dir` as the data directory."""
    return Settings(database=DatabaseSettings(url=db.url),
                    storage=StorageSettings(data_dir=data_dir, max_upload_bytes=50 * 1024**2))


def random_raster(path: Path, side: int) -> Path:
    """Write an uncompressed side×side float32 GeoTIFF of random values (incompressible)."""
    data = np.random.default_rng(7).random((side, side), dtype="float32")
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1,
                       dtype="float32", nodata=-9999.0, crs="EPSG:4326",
                       transform=from_origin(30.0, -1.0, 0.001, 0.001)) as dst:
        dst.write(data, 1)
    return path


def upload(server: LiveServer, key: str, layer_kind: str, path: Path, /,
           **options: Any) -> httpx.Response:
    """POST the file as an upload of `kind` and wait for the job's outcome."""
    with httpx.Client(base_url=server.base_url, timeout=120,
                      headers={"X-API-Key": key}) as client:
        return client.post(f"/api/v1/uploads/{layer_kind}", params={"wait": "true"},
                           files={"file": (path.name, path.read_bytes())},
                           data={k: str(v) for k, v in options.items()})


def files_under(directory: Path) -> list[str]:
    """Return every file below `directory` (directories themselves are not counted)."""
    return sorted(str(p) for p in directory.rglob("*") if p.is_file()) if directory.exists() \
        else []


def assert_storage_full(response: httpx.Response, storage: str, path: Path | None) -> None:
    """Assert a 507 in the one error shape naming which storage was full."""
    assert response.status_code == 507, response.text
    body = response.json()
    assert body["code"] == "storage_full"
    assert f"the {storage}" in body["message"], body["message"]
    if path is not None:
        assert str(path) in body["message"]
    assert "internal error" not in body["message"]


def test_upload_larger_than_the_free_staging_space_is_507(
        public_dirs: Callable[[str], Path], database: Database, tmp_path: Path) -> None:
    data_dir = public_dirs("riskatlas-full-")
    raster = random_raster(tmp_path / "flood.tif", 900)  # 3.2 MB, the disk holds 2 MB
    before = database.counts()
    with tmpfs(data_dir, "2m"):
        settings = settings_for(database, data_dir)
        with LiveServer(settings) as server:
            response = upload(server, database.key, "hazard", raster, name="full-1",
                              kind="flood", threshold=0.5)
            assert_storage_full(response, "staging directory", settings.storage.staging_dir)
            assert files_under(data_dir) == []
    assert database.counts() == before


@pytest.mark.parametrize("side", [
    600,  # 1.4 MB: the upload fits, the job's own copy of it does not (Python's write)
    430,  # 0.7 MB: the upload and its copy fit, the COG does not (GDAL's write)
])
def test_disk_filling_while_the_job_works_is_507(
        public_dirs: Callable[[str], Path], database: Database, tmp_path: Path, side: int) -> None:
    data_dir = public_dirs("riskatlas-full-")
    raster = random_raster(tmp_path / "flood.tif", side)
    before = database.counts()
    with tmpfs(data_dir, "2m"):
        settings = settings_for(database, data_dir)
        with LiveServer(settings) as server:
            response = upload(server, database.key, "hazard", raster, name=f"full-{side}",
                              kind="flood", threshold=0.5)
            assert_storage_full(response, "staging directory", settings.storage.staging_dir)
            job_id = response.json()["details"][0]["job_id"]
            with httpx.Client(base_url=server.base_url,
                              headers={"X-API-Key": database.key}) as client:
                job = client.get(f"/api/v1/jobs/{job_id}").json()
            assert job["status"] == "failed"
            assert job["errors"][0]["code"] == "storage_full"
            assert files_under(data_dir) == []
    assert database.counts() == before


def test_full_raster_directory_is_507_and_keeps_no_partial_cog(
        public_dirs: Callable[[str], Path], database: Database, tmp_path: Path) -> None:
    data_dir = public_dirs("riskatlas-full-")
    raster = random_raster(tmp_path / "flood.tif", 500)  # ~1 MB COG, the disk holds 256 KB
    before = database.counts()
    settings = settings_for(database, data_dir)
    raster_dir = settings.storage.raster_dir
    with tmpfs(raster_dir, "256k"):
        with LiveServer(settings) as server:
            response = upload(server, database.key, "hazard", raster, name="full-3",
                              kind="flood", threshold=0.5)
            assert_storage_full(response, "raster directory", raster_dir)
            assert files_under(raster_dir) == []
            assert files_under(settings.storage.staging_dir) == []
    assert database.counts() == before


def test_cli_ingest_on_a_full_disk_names_it(
        public_dirs: Callable[[str], Path], database: Database, tmp_path: Path) -> None:
    data_dir = public_dirs("riskatlas-full-")
    raster = random_raster(tmp_path / "flood.tif", 900)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKATLAS_")}
    env.update(DATABASE_URL=database.url, RISKATLAS_DATA_DIR=str(data_dir), COLUMNS="300")
    before = database.counts()
    with tmpfs(data_dir, "2m"):
        result = subprocess.run(
            [sys.executable, "-m", "api.cli", "ingest", "hazard", str(raster), "--name",
             "full-cli", "--hazard-kind", "flood", "--threshold", "0.5"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=180, check=False)
        assert result.returncode == 1, result.stderr
        assert "staging directory" in result.stderr and str(data_dir) in result.stderr
        assert "Traceback" not in result.stderr
        assert files_under(data_dir) == []
    assert database.counts() == before


# --- the database's disk ------------------------------------------------------------------
def polygons_file(path: Path, count: int, vertices: int) -> Path:
    """Write `count` level-1 localities, each a circle of `vertices` points (bulky rows)."""
    features = []
    angles = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    for i in range(count):
        cx, cy = 30.0 + (i % 20) * 0.1, -2.0 + (i // 20) * 0.1
        ring = [[cx + 0.04 * np.cos(a), cy + 0.04 * np.sin(a)] for a in angles]
        features.append({"type": "Feature", "properties": {
            "ADM1_PCODE": f"DF{i:04d}", "ADM1_EN": f"Unit {i}"},
            "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_full_database_disk_is_507_and_loads_nothing(
        public_dirs: Callable[[str], Path], new_database: Callable[[str], str],
        tmp_path: Path) -> None:
    url = new_database("riskatlas_faults_dbfull")
    upgrade(url)
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=public_dirs("riskatlas-dbfull-")))
    engine = build_engine(url, settings)
    db = Database(url, engine, create_key(engine, "db-full tests", "uploader").secret)
    plain = url.replace("+psycopg", "")
    space = public_dirs("riskatlas-tablespace-")
    try:
        with tmpfs(space, "1m", owner="postgres"):
            with psycopg.connect(plain, autocommit=True) as conn:
                conn.execute(f"CREATE TABLESPACE riskatlas_tiny LOCATION '{space}'")
                # The localities rows (and their TOASTed outlines) now live on the 1 MB disk.
                conn.execute("ALTER TABLE localities SET TABLESPACE riskatlas_tiny")
            try:
                boundaries = polygons_file(tmp_path / "adm1.geojson", 200, 400)  # ~1.3 MB
                before = db.counts()
                with LiveServer(settings) as server:
                    response = upload(server, db.key, "localities", boundaries)
                assert_storage_full(response, "database", None)
                assert response.json()["details"][0]["storage"] == "database"
                assert db.counts() == before
                assert files_under(settings.storage.staging_dir) == []
            finally:
                # The tablespace must be gone before its disk is unmounted.
                engine.dispose()
                admin = plain.rsplit("/", 1)[0] + "/postgres"
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute('DROP DATABASE IF EXISTS "riskatlas_faults_dbfull" WITH (FORCE)')
                    conn.execute("DROP TABLESPACE IF EXISTS riskatlas_tiny")
    finally:
        engine.dispose()
