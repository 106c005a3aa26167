"""Full disks: recognise "no space left" wherever it comes from, and say which storage is full.

A full disk shows up as an OSError (ENOSPC, EDQUOT) from Python, as a GDAL write error from
rasterio, or as SQLSTATE 53100 from PostgreSQL. Each becomes one StorageFullError whose
message names the staging directory, the raster directory or the database, so an operator
knows what to clean or grow. Rolling back what was half-written stays with the code that
wrote it (transactions, partial files removed in `finally`).
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from geo.errors import RiskAtlasError, StorageFullError
from geo.settings import StorageSettings

FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_SQLSTATE = "53100"
# What GDAL says when a write fails for lack of space (its errors carry no errno).
GDAL_FULL_MESSAGES = ("No space left on device", "Free disk space available is",
                      "Disk quota exceeded")
# libtiff prints "No space left on device" itself and GDAL raises only "Write failed"; a
# failed GDAL write on a disk with less than this free is taken to be the disk filling up.
GDAL_WRITE_FAILURES = ("Write failed", "Write error", "write error")
NEARLY_FULL_BYTES = 64 * 1024**2


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _sqlstate(exc: BaseException) -> str | None:
    # psycopg errors carry `sqlstate`; SQLAlchemy wraps them in `orig`.
    for candidate in (exc, getattr(exc, "orig", None)):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def is_disk_full(exc: BaseException) -> bool:
    """Return True when `exc`, or an exception it was raised from, means a disk is full."""
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in FULL_ERRNOS:
            return True
        if _sqlstate(link) == DISK_FULL_SQLSTATE:
            return True
        # Our own errors may quote user input; only library (GDAL) messages are read.
        if not isinstance(link, RiskAtlasError) and any(
                text in str(link) for text in GDAL_FULL_MESSAGES):
            return True
    return False


def raise_if_gdal_filled(exc: BaseException, directory: Path) -> None:
    """Raise ENOSPC (naming `directory`) when a GDAL write failed because the disk is full.

    Call it where the failed write happened, before partial output is removed: only then
    does the disk still look full.
    """
    if is_disk_full(exc):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory)) from exc
    wrote = any(text in str(link) for link in _chain(exc) if not isinstance(link, RiskAtlasError)
                for text in GDAL_WRITE_FAILURES)
    try:
        nearly_full = shutil.disk_usage(directory).free < NEARLY_FULL_BYTES
    except OSError:
        return
    if wrote and nearly_full:
        raise OSError(errno.ENOSPC, "No space left on device", str(directory)) from exc


def _paths(exc: BaseException) -> list[Path]:
    found: list[Path] = []
    for link in _chain(exc):
        if isinstance(link, OSError):
            found += [Path(str(name)) for name in (link.filename2, link.filename) if name]
    return found


def describe_full_storage(exc: BaseException, storage: StorageSettings,
                          where: Path | None = None) -> StorageFullError:
    """Return the StorageFullError for a disk-full `exc`, naming which storage is full.

    The database is recognised by its SQLSTATE, a directory by the path of the failed
    write; `where` is the directory being written when the error names no path.
    """
    if any(_sqlstate(link) == DISK_FULL_SQLSTATE for link in _chain(exc)):
        return StorageFullError(
            "the database's disk is full (PostgreSQL could not extend a table); nothing was "
            "loaded: free space on the database server and try again",
            [{"storage": "database", "problem": "no space left on device"}],
        )
    places = {"raster directory": storage.raster_dir, "staging directory": storage.staging_dir}
    candidates = _paths(exc) + ([where] if where is not None else [])
    for path in candidates:
        for label, directory in places.items():
            if path.absolute().is_relative_to(directory.absolute()):
                return _directory_full(label, directory)
    return _directory_full("data directory", storage.data_dir)


def _directory_full(label: str, directory: Path) -> StorageFullError:
    return StorageFullError(
        f"the {label} ({directory}) is full: no space left on device; nothing was kept: "
        "free space there and try again",
        [{"storage": label.split()[0], "path": str(directory),
          "problem": "no space left on device"}],
    )


@contextmanager
def naming_full_storage(storage: StorageSettings, where: Path | None = None) -> Iterator[None]:
    """Turn a disk-full error raised inside the block into StorageFullError naming the disk."""
    try:
        yield
    except StorageFullError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise describe_full_storage(exc, storage, where) from exc
        raise
