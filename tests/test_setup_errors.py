"""Set-up problems get one clear sentence and a non-zero exit, and corrupt nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from geo.embedded import EmbeddedCluster, find_postgres_bindir
from geo.errors import SetupError
from tests.conftest import _public_tmpdir, free_port

RISKATLAS = [sys.executable, "-m", "api.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `riskatlas` command line in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env.update(env or {})
    return subprocess.run([*RISKATLAS, *args], capture_output=True, text=True, env=full_env,
                          timeout=120, cwd=Path(__file__).parents[1])


def assert_one_clear_sentence(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip()
    assert message.startswith("riskatlas: "), message
    for word in words:
        assert word in message, message


def test_wrong_password_is_one_sentence(pg_cluster: EmbeddedCluster) -> None:
    url = f"postgresql://postgres:not-the-password@127.0.0.1:{pg_cluster.port}/riskatlas_template"
    result = run_cli("db", "status", env={"DATABASE_URL": url})
    assert_one_clear_sentence(result, "password", f"127.0.0.1:{pg_cluster.port}")


def test_unreachable_database_is_one_sentence() -> None:
    result = run_cli("db", "upgrade", env={"DATABASE_URL": f"postgresql://x:y@127.0.0.1:{free_port()}/db"})
    assert_one_clear_sentence(result, "cannot reach")


def test_port_taken_for_serve(pg_cluster: EmbeddedCluster) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "--port", str(port),
                         env={"DATABASE_URL": pg_cluster.url()})
    assert_one_clear_sentence(result, f"port {port}", "in use")


def test_data_dir_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_cli("db", "start", env={"RISKATLAS_DATA_DIR": str(blocker / "data")})
    assert_one_clear_sentence(result, "not writable", "RISKATLAS_DATA_DIR")


def test_postgis_missing_names_the_package(tmp_path: Path) -> None:
    # A copy of the server binaries whose pg_config points at a share dir without PostGIS.
    fake = tmp_path / "18" / "bin"
    fake.mkdir(parents=True)
    real = find_postgres_bindir()
    for tool in ("initdb", "pg_ctl"):
        (fake / tool).symlink_to(real / tool)
    (fake / "pg_config").write_text(f"#!/bin/sh\necho {tmp_path / 'share'}\n")
    (fake / "pg_config").chmod(0o755)
    result = run_cli("db", "start", env={"RISKATLAS_PG_BINDIR": str(fake),
                                         "RISKATLAS_DATA_DIR": str(tmp_path / "data")})
    assert_one_clear_sentence(result, "PostGIS", "postgresql-18-postgis-3")


def test_embedded_cluster_is_reused_and_already_running_is_reported() -> None:
    root = _public_tmpdir("riskatlas-reuse-")
    env = {"RISKATLAS_DATA_DIR": str(root), "RISKATLAS_DB_EMBEDDED_PORT": str(free_port())}
    try:
        first = run_cli("db", "start", env=env)
        assert first.returncode == 0, first.stderr
        pid = EmbeddedCluster(root, int(env["RISKATLAS_DB_EMBEDDED_PORT"])).status().pid
        again = run_cli("db", "start", env=env)
        assert_one_clear_sentence(again, "already running")
        # A second start through the normal path reuses the same server, untouched.
        upgraded = run_cli("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
        status = run_cli("db", "status", env=env)
        assert status.returncode == 0 and "schema_revision" in status.stdout
        assert EmbeddedCluster(root, int(env["RISKATLAS_DB_EMBEDDED_PORT"])).status().pid == pid
    finally:
        run_cli("db", "stop", env=env)
        shutil.rmtree(root, ignore_errors=True)


def test_embedded_port_taken_by_another_program() -> None:
    root = _public_tmpdir("riskatlas-port-")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        cluster = EmbeddedCluster(root, busy.getsockname()[1])
        with pytest.raises(SetupError, match="taken by another program"):
            cluster.ensure_running()
    # The cluster was initialised but not corrupted: it starts once the port is free.
    assert (root / "postgres" / "PG_VERSION").exists()
    shutil.rmtree(root, ignore_errors=True)
