"""Session fixtures: a private PostGIS cluster, migrated databases, and a live HTTP server."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from api.main import create_app
from api.settings import ApiSettings
from geo.embedded import EmbeddedCluster
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _public_tmpdir(prefix: str) -> Path:
    # The cluster runs as `postgres` when tests run as root, so it must be able to enter it.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[EmbeddedCluster]:
    """A private PostgreSQL + PostGIS cluster for the whole session, removed afterwards."""
    root = _public_tmpdir("riskatlas-test-")
    cluster = EmbeddedCluster(root, free_port(), database="riskatlas_template")
    cluster.ensure_running()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def new_database(pg_cluster: EmbeddedCluster) -> Callable[[str], str]:
    """Return a factory that creates an empty PostGIS database and returns its URL."""

    def make(name: str) -> str:
        admin = pg_cluster.url().replace("postgresql+psycopg://", "postgresql://")
        admin = admin.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = pg_cluster.url().rsplit("/", 1)[0] + f"/{name}"
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return url

    return make


@pytest.fixture(scope="session")
def db_url(new_database: Callable[[str], str]) -> str:
    """URL of the session's main test database, migrated to head."""
    url = new_database("riskatlas_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    """The data directory (rasters, staging) of the session's app."""
    path = _public_tmpdir("riskatlas-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(db_url: str, data_dir: Path) -> Settings:
    """Settings pointing at the session database and data directory."""
    return Settings(
        database=DatabaseSettings(url=db_url),
        storage=StorageSettings(data_dir=data_dir, max_upload_bytes=50 * 1024**2),
    )


class LiveServer:
    """A uvicorn server in a thread, reached over real HTTP."""

    def __init__(self, settings: Settings) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, ApiSettings(port=self.port))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """The app served over real HTTP on a free port for the whole session."""
    with LiveServer(settings) as server:
        yield server


@pytest.fixture()
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on the live server."""
    with httpx.Client(base_url=live_server.base_url, timeout=60) as client:
        yield client


def shared_file(*parts: str) -> Path:
    """Return a path under ../shared/data, skipping the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not present: {path}")
    return path


os.environ.setdefault("RISKATLAS_TESTING", "1")


@pytest.fixture(scope="session")
def demo_settings(new_database: Callable[[str], str]) -> Iterator[Settings]:
    """Settings of a separate database holding the demo region, loaded once per session."""
    from geo.db import build_engine
    from geo.demo.load import load_demo

    url = new_database("riskatlas_demo")
    upgrade(url)
    root = _public_tmpdir("riskatlas-demo-")
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=root))
    engine = build_engine(url, settings)
    try:
        load_demo(engine, settings)
    finally:
        engine.dispose()
    yield settings
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_run(demo_settings: Settings) -> dict:
    """The summary of one score run over the demo region."""
    from geo.db import build_engine
    from geo.runs.lifecycle import run_scores

    engine = build_engine(demo_settings.database.url or "", demo_settings)
    try:
        return run_scores(engine, demo_settings)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def demo_server(demo_settings: Settings, demo_run: dict) -> Iterator[LiveServer]:
    """The app over the scored demo region, on real HTTP."""
    with LiveServer(demo_settings) as server:
        yield server


@pytest.fixture()
def demo_http(demo_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client on the demo server."""
    with httpx.Client(base_url=demo_server.base_url, timeout=120) as client:
        yield client
