"""Backups: one archive holding the database (pg_dump) and the raster files it refers to.

`create_backup` writes a plain tar (its members are compressed already):

    database.dump              pg_dump custom format, taken in one snapshot
    rasters/<layer>/<v>.tif    every COG a raster version refers to, as of that snapshot
    manifest.json              format, schema revision, row counts, SHA-256 of every member

The raster list, the row counts and the dump all come from the same exported snapshot
(`pg_dump --snapshot`), so an upload finishing meanwhile is either wholly in the backup or
not at all. COGs are never rewritten in place (a new version is a new file), so copying
them after the snapshot is consistent. Caches (exposure tables) and staged uploads are
left out: they are rebuilt or were never committed. The archive appears under its name
only when complete.

`restore_backup` loads an archive into an empty data directory: every checksum is
verified before anything is written; the database is restored in one transaction, into the
embedded cluster (created there) or the empty database DATABASE_URL names; raster paths
are moved to the new data directory; row counts are compared with the manifest; then the
schema is migrated to this version's head. A failed restore removes what it created.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from geo.db import describe_url, embedded_cluster
from geo.disk import is_disk_full
from geo.embedded import find_postgres_bindir
from geo.errors import RiskAtlasError, SetupError, ValidationError
from geo.settings import Settings

FORMAT = "riskatlas-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
RASTERS = "rasters"
CHUNK = 1 << 20
# Member names we write and accept: nothing absolute, no "..", no odd characters.
_MEMBER = re.compile(r"(database\.dump|rasters(/[A-Za-z0-9_.-]+)+)")
# Entries of a dump that already exist in a fresh PostGIS database.
_PRESENT_IN_TARGET = re.compile(r" (EXTENSION - |COMMENT - EXTENSION |SCHEMA - public )")
Progress = Callable[[float, str], None]


class BackupError(RiskAtlasError):
    """A backup could not be made or restored; the message says why and what to do."""

    code = "backup"


@dataclass(frozen=True)
class _Member:
    name: str
    size: int
    sha256: str


# -- tools and connections ---------------------------------------------------------------
def pg_tool(name: str) -> str:
    """Return the path of a PostgreSQL client program (pg_dump, pg_restore)."""
    try:
        candidate = find_postgres_bindir() / name
        if candidate.exists():
            return str(candidate)
    except SetupError:
        pass
    found = shutil.which(name)
    if found is None:
        raise SetupError(f"{name} was not found; install the PostgreSQL client programs: "
                         "sudo apt-get install postgresql-client")
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """Return a libpq URI without the password, and the environment that carries it."""
    parsed = make_url(url).set(drivername="postgresql")
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10"}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _connect(url: str) -> psycopg.Connection[Any]:
    uri, env = _libpq(url)
    try:
        return psycopg.connect(uri, password=env.get("PGPASSWORD"), connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise BackupError(f"cannot reach the database {describe_url(url)}: "
                          f"{str(exc).strip().splitlines()[0]}") from None


def _run(argv: list[str], env: dict[str, str], what: str) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
        raise BackupError(f"{what} failed: {lines[-1] if lines else 'no output'}")
    return result.stdout


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                        "ORDER BY tablename").fetchall()
    return [row[0] for row in rows]


def table_counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Return the row count of every table in the public schema."""
    return {table: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
        sql.Identifier(table))).fetchone()[0] for table in _tables(conn)}  # type: ignore[index]


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


class _Hashing:
    """A file reader that hashes what passes through it (tarfile reads exactly `size`)."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        return data


# -- create ------------------------------------------------------------------------------
def create_backup(url: str, settings: Settings, dest: Path,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Write a consistent backup of the database at `url` and its raster files to `dest`."""
    report = progress or (lambda fraction, message: None)
    dest = dest.absolute()
    if dest.exists():
        raise ValidationError(f"{dest} already exists; choose another name or remove it first")
    if not dest.parent.is_dir():
        raise ValidationError(f"the directory {dest.parent} does not exist")
    raster_dir = settings.storage.raster_dir.absolute()
    uri, env = _libpq(url)
    workdir = Path(tempfile.mkdtemp(prefix=".riskatlas-backup-", dir=dest.parent))
    partial = workdir / "archive.tar"
    try:
        report(0.02, "taking a snapshot of the database")
        with _connect(url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
            facts = _snapshot_facts(conn)
            report(0.05, "dumping the database")
            dump = workdir / DUMP
            # The snapshot lives as long as this transaction: pg_dump must run inside it.
            _run([pg_tool("pg_dump"), "--format=custom", "--no-owner", "--no-privileges",
                  f"--snapshot={snapshot}", f"--file={dump}", f"--dbname={uri}"], env,
                 "pg_dump")
            conn.rollback()
        rasters = [_raster_member(Path(path), raster_dir) for path in facts.pop("paths")]
        members: list[_Member] = []
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            members.append(_add_file(tar, dump, DUMP))
            dump.unlink()
            for index, (path, name) in enumerate(rasters, start=1):
                report(0.4 + 0.55 * index / max(len(rasters), 1),
                       f"copying raster {index} of {len(rasters)}")
                members.append(_add_file(tar, path, name))
            manifest = {
                "format": FORMAT, "format_version": FORMAT_VERSION,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "riskatlas_version": _version(), "source": describe_url(url),
                "raster_dir": str(raster_dir), **facts,
                "files": [m.__dict__ for m in members],
            }
            _add_bytes(tar, MANIFEST, json.dumps(manifest, indent=2).encode())
        partial.chmod(0o600)  # it holds everything, key hashes included
        os.replace(partial, dest)
    except (OSError, BackupError) as exc:
        # pg_dump reports a full disk only in its message.
        if is_disk_full(exc) or "No space left on device" in str(exc):
            raise BackupError(f"the disk holding {dest.parent} is full; no archive was "
                              "written: free space there or choose another place") from exc
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(1.0, "done")
    return {"path": str(dest), "bytes": dest.stat().st_size, "rasters": len(rasters),
            "tables": len(manifest["tables"]), "rows": sum(manifest["tables"].values()),
            "schema_revision": manifest["schema_revision"]}


def _snapshot_facts(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    tables = _tables(conn)
    if "alembic_version" not in tables or "raster_versions" not in tables:
        raise BackupError("the database holds no riskatlas schema; nothing to back up")
    revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    paths = [row[0] for row in conn.execute("SELECT path FROM raster_versions ORDER BY path")]
    return {"schema_revision": revision[0] if revision else None,
            "server_version": conn.info.server_version, "tables": table_counts(conn),
            "paths": paths}


def _raster_member(path: Path, raster_dir: Path) -> tuple[Path, str]:
    if not path.is_relative_to(raster_dir):
        raise BackupError(
            f"a raster version refers to {path}, outside the raster directory {raster_dir}; "
            "set RISKATLAS_DATA_DIR to the data directory this database was loaded with")
    if not path.is_file():
        raise BackupError(f"the raster file {path} is missing; the backup would be "
                          "incomplete (restore it, or delete that layer version)")
    return path, f"{RASTERS}/{path.relative_to(raster_dir).as_posix()}"


def _add_file(tar: tarfile.TarFile, path: Path, name: str) -> _Member:
    info = tar.gettarinfo(str(path), arcname=name)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o600
    with open(path, "rb") as handle:
        reader = _Hashing(handle)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    return _Member(name, info.size, reader.digest.hexdigest())


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _version() -> str:
    try:
        return version("riskatlas")
    except PackageNotFoundError:
        return "0+unknown"


# -- restore -----------------------------------------------------------------------------
def read_manifest(archive: Path) -> dict[str, Any]:
    """Return the manifest of a backup archive, refusing anything that is not one."""
    try:
        with tarfile.open(archive, "r:") as tar:
            return _manifest(tar, archive)
    except tarfile.TarError as exc:
        raise BackupError(f"{archive} is not a riskatlas backup ({exc})") from None


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise BackupError(f"{archive} is not a riskatlas backup (it has no {MANIFEST})") from None
    handle = tar.extractfile(member)
    try:
        manifest = json.load(handle) if handle else None
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{archive} is not a riskatlas backup (its manifest is not ours)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupError(f"{archive} has backup format {manifest.get('format_version')}; "
                          f"this riskatlas reads format {FORMAT_VERSION}")
    names = [entry.get("name") for entry in manifest.get("files", [])]
    bad = [n for n in names if not isinstance(n, str) or not _MEMBER.fullmatch(n)
           or ".." in n.split("/")]
    if bad or DUMP not in names:
        raise BackupError(f"{archive} lists unexpected members ({', '.join(map(str, bad))})"
                          if bad else f"{archive} holds no database dump")
    return manifest


def verify_archive(archive: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Return the manifest after checking every member's size and SHA-256 against it."""
    report = progress or (lambda fraction, message: None)
    try:
        with tarfile.open(archive, "r:") as tar:
            manifest = _manifest(tar, archive)
            files = manifest["files"]
            for index, entry in enumerate(files, start=1):
                report(0.3 * index / len(files), f"verifying {entry['name']}")
                with _member_stream(tar, entry, archive) as stream:
                    for _ in iter(lambda: stream.read(CHUNK), b""):
                        pass
    except tarfile.TarError as exc:
        raise BackupError(f"{archive} is damaged ({exc})") from None
    return manifest


@contextmanager
def _member_stream(tar: tarfile.TarFile, entry: dict[str, Any],
                   archive: Path) -> Iterator[_Hashing]:
    """Yield a hashing reader of one member; on leaving, fail unless size and hash agree."""
    name = entry["name"]
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BackupError(f"{archive} is incomplete: {name} is missing") from None
    handle = tar.extractfile(member) if member.isreg() else None
    if handle is None:
        raise BackupError(f"{archive}: {name} is not a regular file")
    reader = _Hashing(handle)
    yield reader
    if member.size != entry["size"] or reader.digest.hexdigest() != entry["sha256"]:
        raise BackupError(f"{archive} is damaged: the checksum of {name} does not match the "
                          "manifest; nothing was restored")


def restore_backup(archive: Path, settings: Settings,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Restore `archive` into the (empty) data directory and database of `settings`."""
    report = progress or (lambda fraction, message: None)
    archive = archive.absolute()
    data_dir = settings.storage.data_dir.absolute()
    _require_empty_directory(data_dir)
    manifest = verify_archive(archive, report)
    _require_known_revision(manifest.get("schema_revision"))
    embedded = settings.database.url is None
    url = settings.database.url or ""
    if not embedded:
        _require_empty_database(url)
    work = data_dir / ".restore"
    restored_db = False
    try:
        if embedded:
            report(0.32, "starting an embedded database in the data directory")
            url = embedded_cluster(settings).ensure_running()
        work.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:") as tar:
            entries = {entry["name"]: entry for entry in manifest["files"]}
            dump = work / DUMP
            _extract(tar, entries[DUMP], dump, archive)
            report(0.4, "restoring the database")
            _pg_restore(url, dump)
            restored_db = True
            dump.unlink()
            rasters = [e for name, e in entries.items() if name.startswith(f"{RASTERS}/")]
            for index, entry in enumerate(rasters, start=1):
                report(0.7 + 0.25 * index / len(rasters),
                       f"restoring raster {index} of {len(rasters)}")
                relative = entry["name"].split("/", 1)[1]
                _extract(tar, entry, settings.storage.raster_dir / relative, archive)
        counts = _finish_database(url, manifest, settings.storage.raster_dir.absolute())
    except BaseException as exc:
        _undo(settings, url, manifest, embedded, restored_db)
        if isinstance(exc, OSError) and is_disk_full(exc):
            raise BackupError(f"the disk holding the data directory {data_dir} is full; "
                              "nothing was kept: free space there and restore again") from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(0.97, "migrating the schema to this version")
    from geo.migrate import upgrade

    upgrade(url)
    report(1.0, "done")
    return {"database": describe_url(url), "embedded": embedded, "rasters": len(rasters),
            "tables": len(counts), "rows": sum(counts.values()),
            "schema_revision": manifest.get("schema_revision"),
            "created_at": manifest.get("created_at")}


def _require_empty_directory(data_dir: Path) -> None:
    if not data_dir.exists():
        return
    if not data_dir.is_dir():
        raise BackupError(f"the data directory {data_dir} is a file, not a directory")
    entries = sorted(p.name for p in data_dir.iterdir() if p.name != "lost+found")
    if entries:
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        raise BackupError(
            f"the data directory {data_dir} is not empty (it holds {shown}); a backup is "
            "restored only into an empty one: set RISKATLAS_DATA_DIR to a new directory")


def _require_empty_database(url: str) -> None:
    with _connect(url) as conn:
        tables = [t for t in _tables(conn) if t != "spatial_ref_sys"]
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise BackupError(
            f"the database {describe_url(url)} is not empty (it holds {shown}); a backup is "
            "restored only into an empty database: create one and point DATABASE_URL at it")


def _require_known_revision(revision: str | None) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from geo.migrate import alembic_config

    if revision is None:
        return
    scripts = ScriptDirectory.from_config(alembic_config("postgresql://"))
    try:
        scripts.get_revision(revision)
    except CommandError:
        raise BackupError(f"the backup's schema revision {revision} is unknown to this "
                          "riskatlas; restore it with the version that made it, or a newer one"
                          ) from None


def _extract(tar: tarfile.TarFile, entry: dict[str, Any], target: Path,
             archive: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with _member_stream(tar, entry, archive) as stream, open(target, "wb") as out:
        shutil.copyfileobj(stream, out, CHUNK)  # type: ignore[misc]


def _pg_restore(url: str, dump: Path) -> None:
    uri, env = _libpq(url)
    restore = pg_tool("pg_restore")
    listing = _run([restore, "--list", str(dump)], env, "pg_restore --list")
    extensions = re.findall(r" EXTENSION - (\S+)", listing)
    with _connect(url) as conn:
        for name in extensions:
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(
                sql.Identifier(name)))
        conn.commit()
    # Objects a fresh PostGIS database already has would stop a single-transaction restore.
    wanted = dump.with_suffix(".list")
    wanted.write_text("\n".join(line for line in listing.splitlines()
                                if not _PRESENT_IN_TARGET.search(line)) + "\n")
    _run([restore, "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          f"--use-list={wanted}", f"--dbname={uri}", str(dump)], env, "pg_restore")


def _finish_database(url: str, manifest: dict[str, Any], raster_dir: Path) -> dict[str, int]:
    """Point raster versions at the new raster directory; check every row count."""
    old = manifest["raster_dir"].rstrip("/")
    with _connect(url) as conn:
        conn.execute("UPDATE raster_versions SET path = %s || substr(path, length(%s) + 1) "
                     "WHERE starts_with(path, %s)", (str(raster_dir), old, old + "/"))
        counts = table_counts(conn)
        conn.commit()
    expected = manifest["tables"]
    differ = {t: (n, counts.get(t)) for t, n in expected.items() if counts.get(t) != n}
    if differ:
        shown = "; ".join(f"{t}: {n} in the backup, {got} restored"
                          for t, (n, got) in list(differ.items())[:5])
        raise BackupError(f"the restored row counts differ from the backup's ({shown})")
    return counts


def _undo(settings: Settings, url: str, manifest: dict[str, Any], embedded: bool,
          restored_db: bool) -> None:
    """Leave the data directory (and the database) as empty as they were."""
    if embedded:
        cluster = embedded_cluster(settings)
        try:
            cluster.stop()
        except SetupError:
            pass
    elif restored_db:
        try:
            with _connect(url) as conn:
                for table in [*manifest["tables"], "alembic_version"]:
                    if table != "spatial_ref_sys":
                        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
                            sql.Identifier(table)))
                conn.commit()
        except (psycopg.Error, BackupError):
            pass
    data_dir = settings.storage.data_dir
    if data_dir.exists():
        for entry in data_dir.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
