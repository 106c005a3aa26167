"""Fixtures of ingestion: a staging workdir and upload helper; a private database/HTTP stack."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ingest_helpers import MAX_BYTES
from stack_helpers import Fresh, Region, Stack, indicators_csv, localities_files

from geo.db import build_engine
from geo.ingest.files import UploadedFile, open_upload
from geo.ingest.service import run_ingest_job, start_ingest_job
from geo.keys import create_key
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Return the staging root uploads are extracted under."""
    return tmp_path / "work"


@pytest.fixture
def upload(workdir: Path) -> Callable[..., UploadedFile]:
    """Return a function staging a file as if the user had uploaded it under `name`."""

    def stage(path: Path, name: str | None = None, **kwargs: object) -> UploadedFile:
        kwargs.setdefault("max_bytes", MAX_BYTES)
        return open_upload(path, name or path.name, workdir=workdir, **kwargs)

    return stage




# --- the database/HTTP stack of the upload, CLI and all-or-nothing tests ---------------
# A database and data directory of their own, so these tests neither see nor disturb the
# rows other suites put in the session database (the demo, serving fixtures).
@pytest.fixture(scope="session")
def stack(new_database: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    """A migrated database, a data directory, the app over real HTTP, and two API keys."""
    url = new_database("riskatlas_ingest")
    upgrade(url)
    data_dir = tmp_path_factory.mktemp("ingest-data")
    settings = Settings(
        database=DatabaseSettings(url=url),
        storage=StorageSettings(data_dir=data_dir, max_upload_bytes=50 * 1024**2),
    )
    engine = build_engine(url, settings)
    uploader = create_key(engine, "ingest tests", "uploader").secret
    analyst = create_key(engine, "ingest tests (analyst)", "analyst").secret
    try:
        with LiveServer(settings) as server:
            yield Stack(url, settings, engine, server.base_url, uploader, analyst)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def base_region(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Region:
    """A region with localities and indicators loaded, for tests that need known codes."""
    region = Region("BR")
    tmp = tmp_path_factory.mktemp("base-region")
    adm1, adm2 = localities_files(tmp, region)
    files = [("localities", adm1), ("localities", adm2),
             ("indicators", indicators_csv(tmp, region.prefix))]
    for kind, path in files:
        job_id = start_ingest_job(stack.engine, kind, {}, path.name)
        run_ingest_job(stack.engine, stack.settings, job_id, kind, path, path.name, {})
    return region


# --- a fresh database per test, for what depends on everything that is loaded -----------
@pytest.fixture
def fresh(new_database: Callable[[str], str], tmp_path: Path,
          request: pytest.FixtureRequest) -> Iterator[Fresh]:
    """A migrated database and data directory used by this test alone."""
    name = "riskatlas_fresh_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]
    url = new_database(name)
    upgrade(url)
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=tmp_path / "data"))
    engine = build_engine(url, settings)
    uploader = create_key(engine, "fresh uploader", "uploader").secret
    admin = create_key(engine, "fresh admin", "admin").secret
    try:
        yield Fresh(Stack(url, settings, engine, "", uploader, admin))
    finally:
        engine.dispose()
