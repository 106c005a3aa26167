"""Fixtures of the security suite: a small scored region with hostile names, over HTTP."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from security_helpers import HOSTILE_NAMES, SecurityStack

from geo.db import build_engine
from geo.keys import create_key
from geo.migrate import upgrade
from geo.settings import DatabaseSettings, Settings, StorageSettings
from tests.conftest import LiveServer, _public_tmpdir
from tests.small_region import SmallRegion, load_and_score


@pytest.fixture(scope="session")
def security_stack(new_database: Callable[[str], str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurityStack]:
    """The security suite's own database, so nothing here disturbs other suites' rows."""
    url = new_database("riskatlas_security")
    upgrade(url)
    data_dir = _public_tmpdir("riskatlas-sec-")
    settings = Settings(database=DatabaseSettings(url=url),
                        storage=StorageSettings(data_dir=data_dir))
    engine = build_engine(url, settings)
    region = SmallRegion(prefix="SX", names=HOSTILE_NAMES)
    run = load_and_score(engine, settings, Path(tmp_path_factory.mktemp("security")), region)
    keys = {role: create_key(engine, f"security tests ({role})", role).secret
            for role in ("analyst", "uploader", "admin")}
    try:
        with LiveServer(settings) as server:
            yield SecurityStack(settings, engine, server.base_url, region, run, keys)
    finally:
        engine.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)
