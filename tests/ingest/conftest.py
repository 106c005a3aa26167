"""Fixtures for the file layer of ingestion: a staging workdir and an upload helper."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_helpers import MAX_BYTES

from geo.ingest.files import UploadedFile, open_upload


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


