"""Helpers of the fault suite: small tmpfs mounts (full disks) and directories for postgres."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(directory: Path, size: str, owner: str | None = None) -> Iterator[Path]:
    """Mount a tmpfs of `size` (e.g. "2m") on `directory` for the block, then unmount it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the CI runs the fault suite as root)")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                    str(directory)], check=True, capture_output=True)
    try:
        if owner:
            shutil.chown(directory, owner, owner)
        yield directory
    finally:
        result = subprocess.run(["umount", str(directory)], capture_output=True, check=False)
        if result.returncode != 0:
            # Something still holds a file open; detach now, the kernel frees it later.
            subprocess.run(["umount", "-l", str(directory)], check=False)


def public_dir(prefix: str) -> Path:
    """Return a fresh directory the `postgres` user can enter (the cluster runs as it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture
def public_dirs() -> Iterator[Callable[[str], Path]]:
    """Return public_dir(prefix), removing every directory it made when the test ends."""
    made: list[Path] = []

    def make(prefix: str) -> Path:
        made.append(public_dir(prefix))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)
