"""How long `riskatlas serve` is refused after a crash: the old port probe vs the current one.

A uvicorn server is started in a child process, a client makes a keep-alive request, and
the server is killed with SIGKILL (a crash). Its connection lingers in TIME_WAIT; the
script then times how long each probe calls the port busy: a plain bind (the probe before
the fix) and `api.cli._check_port_free` (SO_REUSEADDR, as uvicorn binds).

    .venv/bin/python bench/bench_restart_port.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from api.cli import _check_port_free
from geo.errors import SetupError

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plain_bind_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def current_probe_free(port: int) -> bool:
    try:
        _check_port_free("127.0.0.1", port)
    except SetupError:
        return False
    return True


def crash_server(port: int, workdir: str) -> None:
    with open(os.path.join(workdir, "crash_app.py"), "w", encoding="utf-8") as module:
        module.write(APP)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "crash_app:app", "--port", str(port),
         "--log-level", "warning"], cwd=workdir)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
                    client.get("/")
                    client.get("/")  # keep-alive: the connection stays open
                    server.send_signal(signal.SIGKILL)
                    server.wait()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        if server.poll() is None:
            server.kill()


def refused_for(probe, port: int, limit_s: float = 180.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not probe(port):
        if time.monotonic() - started > limit_s:
            return float("inf")
        time.sleep(0.5)
    return time.monotonic() - started


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        port = free_port()
        crash_server(port, workdir)
        after = refused_for(current_probe_free, port)
        before = refused_for(plain_bind_free, port)
    print(f"restart refused after a crash: {before:.1f} s with a plain bind (before), "
          f"{after:.1f} s with SO_REUSEADDR (now)")


if __name__ == "__main__":
    main()
