"""A private PostgreSQL + PostGIS cluster in the data directory, run from the machine's binaries.

This is the zero-configuration default: with no `DATABASE_URL`, riskatlas initialises a
cluster under `<data_dir>/postgres`, listening only on 127.0.0.1, with a generated password
kept beside it (mode 600). PostgreSQL refuses to run as root, so as root the server runs as
the `postgres` system user that Debian's packages create.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from geo.errors import SetupError

APT_HINT = "sudo apt-get install postgresql postgresql-15-postgis-3"
SERVER_OPTIONS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "100",
    "shared_buffers": "256MB",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "random_page_cost": "1.1",
    "jit": "off",
    "logging_collector": "off",
}


@dataclass(frozen=True)
class ClusterStatus:
    """What `riskatlas db status` reports about the embedded cluster."""

    initialised: bool
    running: bool
    pid: int | None
    url: str | None


def find_postgres_bindir() -> Path:
    """Return the directory of the newest PostgreSQL server binaries on this machine."""
    override = os.environ.get("RISKATLAS_PG_BINDIR")
    candidates = [override] if override else []
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    for candidate in candidates:
        if candidate and all((Path(candidate) / tool).exists() for tool in ("initdb", "pg_ctl")):
            return Path(candidate)
    raise SetupError(
        f"PostgreSQL server binaries (initdb, pg_ctl) were not found; install them: {APT_HINT}"
    )


def _sharedir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.exists():
        out = subprocess.run([str(pg_config), "--sharedir"], capture_output=True, text=True)
        if out.returncode == 0:
            return Path(out.stdout.strip())
    return Path(f"/usr/share/postgresql/{bindir.parent.name}")


def check_postgis(bindir: Path) -> None:
    """Raise SetupError naming the package to install when PostGIS is missing."""
    if not (_sharedir(bindir) / "extension" / "postgis.control").exists():
        version = bindir.parent.name
        raise SetupError(
            f"PostGIS is not installed for PostgreSQL {version}; install it: "
            f"sudo apt-get install postgresql-{version}-postgis-3"
        )


class EmbeddedCluster:
    """Start, reuse and stop the private cluster that lives in `<data_dir>/postgres`."""

    def __init__(self, data_dir: Path, port: int, database: str = "riskatlas") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.database = database
        self.cluster_dir = self.data_dir / "postgres"
        self.password_file = self.data_dir / "postgres.password"
        self._as_root = os.geteuid() == 0

    # -- public -----------------------------------------------------------------------
    def url(self) -> str:
        """Return the SQLAlchemy URL of the cluster's riskatlas database."""
        password = self.password_file.read_text().strip()
        return f"postgresql+psycopg://postgres:{password}@127.0.0.1:{self.port}/{self.database}"

    def status(self) -> ClusterStatus:
        """Return whether the cluster exists and runs, without changing anything."""
        initialised = (self.cluster_dir / "PG_VERSION").exists()
        if not initialised:
            return ClusterStatus(False, False, None, None)
        pid = self._running_pid()
        return ClusterStatus(True, pid is not None, pid, self.url() if pid else None)

    def ensure_running(self) -> str:
        """Initialise and start the cluster unless it already runs; return its URL."""
        bindir = find_postgres_bindir()
        check_postgis(bindir)
        self._check_data_dir_writable()
        if not (self.cluster_dir / "PG_VERSION").exists():
            self._initialise(bindir)
        if self._running_pid() is None:
            self._start(bindir)
        self._ensure_database(bindir)
        return self.url()

    def stop(self) -> bool:
        """Stop the cluster; return False when it was not running."""
        if self._running_pid() is None:
            return False
        bindir = find_postgres_bindir()
        self._run([str(bindir / "pg_ctl"), "-D", str(self.cluster_dir), "-m", "fast", "-w", "stop"])
        return True

    # -- steps ------------------------------------------------------------------------
    def _check_data_dir_writable(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise SetupError(
                f"the data directory {self.data_dir} is not writable ({exc.strerror}); "
                "set RISKATLAS_DATA_DIR to a directory you can write"
            ) from None
        if self._as_root:
            self._check_postgres_user_can_enter(self.data_dir)

    def _check_postgres_user_can_enter(self, directory: Path) -> None:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise SetupError(
                "running as root needs the `postgres` system user to own the embedded "
                f"cluster; install the server package: {APT_HINT}"
            ) from None
        for parent in [directory, *directory.parents]:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise SetupError(
                    f"the embedded cluster runs as the `postgres` user, which cannot enter "
                    f"{parent}; set RISKATLAS_DATA_DIR to a directory outside it"
                )

    def _initialise(self, bindir: Path) -> None:
        # Initialise into a temporary directory and rename it at the end, so a killed
        # initdb never leaves a half-made cluster that looks finished.
        staging = self.cluster_dir.with_name("postgres.initdb")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        password = secrets.token_urlsafe(24)
        pwfile = self.data_dir / ".initdb-password"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        self._give_to_postgres(staging)
        self._give_to_postgres(pwfile)
        try:
            self._run([
                str(bindir / "initdb"), "-D", str(staging), "-U", "postgres", "-E", "UTF8",
                "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                f"--pwfile={pwfile}",
            ])
        finally:
            pwfile.unlink(missing_ok=True)
        options = {**SERVER_OPTIONS, "port": str(self.port),
                   "unix_socket_directories": f"'{self.cluster_dir}'"}
        with open(staging / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# riskatlas embedded cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in options.items())
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        staging.rename(self.cluster_dir)

    def _start(self, bindir: Path) -> None:
        self._check_port_free()
        log = self.cluster_dir / "server.log"
        result = self._run(
            [str(bindir / "pg_ctl"), "-D", str(self.cluster_dir), "-l", str(log), "-w",
             "-t", "60", "start"],
            check=False,
        )
        if result.returncode != 0:
            raise SetupError(f"the embedded database did not start: {self._log_reason(log)}")

    def _ensure_database(self, bindir: Path) -> None:
        psql = [str(bindir / "psql"), "-h", str(self.cluster_dir), "-p", str(self.port),
                "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-Atq"]
        exists = self._run([*psql, "-d", "postgres", "-c",
                            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"])
        if exists.stdout.strip() != "1":
            self._run([*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{self.database}"'])
        self._run([*psql, "-d", self.database, "-c", "CREATE EXTENSION IF NOT EXISTS postgis"])

    # -- helpers ----------------------------------------------------------------------
    def _running_pid(self) -> int | None:
        pid_file = self.cluster_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _check_port_free(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", self.port))
            except OSError:
                raise SetupError(
                    f"port {self.port} on 127.0.0.1 is taken by another program, so the "
                    "embedded database cannot listen there; set RISKATLAS_DB_EMBEDDED_PORT "
                    "to a free port"
                ) from None

    @staticmethod
    def _log_reason(log: Path) -> str:
        try:
            lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no server log was written"
        important = [ln for ln in lines if "FATAL" in ln or "ERROR" in ln]
        return (important or lines or ["no server log was written"])[-1]

    def _give_to_postgres(self, path: Path) -> None:
        if self._as_root:
            entry = pwd.getpwnam("postgres")
            if path.is_file():
                os.chown(path, entry.pw_uid, entry.pw_gid)
                return
            for root, _dirs, files in os.walk(path):
                os.chown(root, entry.pw_uid, entry.pw_gid)
                for name in files:
                    os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = Path(argv[0]).name
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, cwd="/")
        if check and result.returncode != 0:
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise SetupError(f"{tool} failed: {reason[-1] if reason else 'no output'}")
        return result
