"""Backups round-trip the demo: every table count, the raster files and what HTTP serves.

`riskatlas backup create` runs as a child process against the scored demo database, then
`riskatlas backup restore` loads the archive into an empty data directory, once with
DATABASE_URL (an empty database) and once with the embedded cluster (created there). The
restored copy must hold the same rows in every table, byte-identical rasters under the
new directory, and serve the same risk profile and hazard tile. Damaged archives and
non-empty targets are refused without writing anything.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fault_helpers import tmpfs

from geo.embedded import EmbeddedCluster
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer, free_port

REPO = Path(__file__).resolve().parents[2]


def riskatlas(*args: str, database_url: str | None, data_dir: Path,
              **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a child process with exactly this database and data directory."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RISKATLAS_") and k != "DATABASE_URL"}
    env.update(RISKATLAS_DATA_DIR=str(data_dir), COLUMNS="300", **extra)
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def counts(url: str) -> dict[str, int]:
    """Return the row count of every table in the public schema."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]  # type: ignore[index]
                for t in tables}


def raster_digests(url: str) -> dict[str, str]:
    """Return file name -> SHA-256 of every raster version's file, checking each exists."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        paths = [Path(r[0]) for r in conn.execute("SELECT path FROM raster_versions")]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def raster_paths(url: str) -> list[Path]:
    """Return every raster version's path."""
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        return [Path(r[0]) for r in conn.execute("SELECT path FROM raster_versions")]


def tile_at(lon: float, lat: float, zoom: int) -> tuple[int, int]:
    """Return the XYZ tile holding a point (the Web Mercator tiling every map uses)."""
    n = 2 ** zoom
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def served(base_url: str) -> dict[str, Any]:
    """Return what a client sees: the top locality's risk profile, layers and a hazard tile."""
    with httpx.Client(base_url=base_url, timeout=120) as client:
        top = client.get("/api/v1/rankings", params={"limit": 1}).json()["items"][0]
        profile = client.get(f"/api/v1/localities/{top['code']}/risk")
        assert profile.status_code == 200, profile.text
        layers = client.get("/api/v1/layers").json()
        hazard = next(layer for layer in layers if layer["role"] == "hazard")
        tilejson = client.get(f"/tiles/hazards/{hazard['name']}/tilejson.json")
        assert tilejson.status_code == 200, tilejson.text
        lon, lat, zoom = tilejson.json()["center"]
        x, y = tile_at(lon, lat, int(zoom))
        tile = client.get(f"/tiles/hazards/{hazard['name']}/{int(zoom)}/{x}/{y}.png")
        assert tile.status_code == 200, tile.text
    return {"profile": profile.json(), "layers": layers, "tile": tile.content}


@pytest.fixture(scope="module")
def demo_backup(demo_settings: Settings, demo_run: dict,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scored demo, backed up once through the CLI."""
    archive = tmp_path_factory.mktemp("backup") / "demo.tar"
    made = riskatlas("backup", "create", str(archive),
                     database_url=demo_settings.database.url,
                     data_dir=demo_settings.storage.data_dir)
    assert made.returncode == 0, made.stderr
    assert "backup written" in made.stdout
    assert archive.stat().st_mode & 0o077 == 0  # it holds key hashes: owner only
    again = riskatlas("backup", "create", str(archive), database_url=demo_settings.database.url,
                      data_dir=demo_settings.storage.data_dir)
    assert again.returncode == 1 and "already exists" in again.stderr
    return archive


def test_round_trip_into_an_empty_database(
        public_dirs: Callable[[str], Path], demo_settings: Settings, demo_server: LiveServer,
        demo_backup: Path, new_database: Callable[[str], str]) -> None:
    source_url = demo_settings.database.url or ""
    target_url = new_database("riskatlas_restored")
    data_dir = public_dirs("riskatlas-restored-") / "data"
    restored = riskatlas("backup", "restore", str(demo_backup), database_url=target_url,
                         data_dir=data_dir)
    assert restored.returncode == 0, restored.stderr
    assert "backup restored" in restored.stdout

    assert counts(target_url) == counts(source_url)
    assert counts(target_url)["localities"] > 0 and counts(target_url)["score_results"] > 0
    assert raster_digests(target_url) == raster_digests(source_url)
    new_rasters = data_dir.absolute() / "rasters"
    assert all(path.is_relative_to(new_rasters) for path in raster_paths(target_url))
    assert not (data_dir / ".restore").exists()

    settings = Settings(database=DatabaseSettings(url=target_url),
                        storage=StorageSettings(data_dir=data_dir))
    with LiveServer(settings) as copy:
        assert served(copy.base_url) == served(demo_server.base_url)


def test_round_trip_into_a_new_embedded_cluster(
        public_dirs: Callable[[str], Path], demo_settings: Settings, demo_backup: Path) -> None:
    data_dir = public_dirs("riskatlas-restored-embedded-")
    port = free_port()
    try:
        restored = riskatlas("backup", "restore", str(demo_backup), database_url=None,
                             data_dir=data_dir, RISKATLAS_DB_EMBEDDED_PORT=str(port))
        assert restored.returncode == 0, restored.stderr
        assert '"embedded": true' in restored.stdout
        cluster = EmbeddedCluster(data_dir, port)
        assert cluster.status().running
        assert counts(cluster.url()) == counts(demo_settings.database.url or "")
        assert raster_digests(cluster.url()) == raster_digests(demo_settings.database.url or "")
    finally:
        EmbeddedCluster(data_dir, port).stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_refuses_a_non_empty_target(
        public_dirs: Callable[[str], Path], demo_settings: Settings, demo_backup: Path,
        new_database: Callable[[str], str]) -> None:
    busy_dir = public_dirs("riskatlas-busy-")
    (busy_dir / "rasters").mkdir()
    refused = riskatlas("backup", "restore", str(demo_backup),
                        database_url=new_database("riskatlas_restore_busy"), data_dir=busy_dir)
    assert refused.returncode == 1
    assert f"the data directory {busy_dir} is not empty (it holds rasters)" in refused.stderr
    # A database that already holds riskatlas tables (here: the demo itself).
    refused = riskatlas("backup", "restore", str(demo_backup),
                        database_url=demo_settings.database.url,
                        data_dir=public_dirs("riskatlas-empty-") / "data")
    assert refused.returncode == 1
    assert "is not empty (it holds" in refused.stderr and "DATABASE_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_damaged_archive_restores_nothing(
        public_dirs: Callable[[str], Path], demo_backup: Path, tmp_path: Path,
        new_database: Callable[[str], str]) -> None:
    damaged = tmp_path / "damaged.tar"
    shutil.copyfile(demo_backup, damaged)
    with tarfile.open(damaged) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("rasters/"))
    with open(damaged, "r+b") as handle:  # flip one byte inside that raster
        handle.seek(member.offset_data + member.size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    target_url = new_database("riskatlas_restore_damaged")
    data_dir = public_dirs("riskatlas-damaged-") / "data"
    refused = riskatlas("backup", "restore", str(damaged), database_url=target_url,
                        data_dir=data_dir)
    assert refused.returncode == 1
    assert f"the checksum of {member.name} does not match" in refused.stderr
    assert not data_dir.exists() or list(data_dir.iterdir()) == []
    assert set(counts(target_url)) <= {"spatial_ref_sys"}

    not_backup = tmp_path / "notes.tar"
    with tarfile.open(not_backup, "w") as tar:
        tar.add(__file__, arcname="notes.py")
    refused = riskatlas("backup", "restore", str(not_backup), database_url=target_url,
                        data_dir=data_dir)
    assert refused.returncode == 1 and "is not a riskatlas backup" in refused.stderr


def test_backup_onto_a_full_disk_leaves_no_archive(
        public_dirs: Callable[[str], Path], demo_settings: Settings, demo_run: dict) -> None:
    target = public_dirs("riskatlas-backup-full-")
    with tmpfs(target, "256k"):
        made = riskatlas("backup", "create", str(target / "demo.tar"),
                         database_url=demo_settings.database.url,
                         data_dir=demo_settings.storage.data_dir)
        assert made.returncode == 1
        assert f"the disk holding {target} is full" in made.stderr
        assert "Traceback" not in made.stderr
        assert list(target.iterdir()) == []
