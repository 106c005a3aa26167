"""Defect 7: `riskatlas serve` is not refused for ~60 s after a crash (TIME_WAIT on its port).

A crashed server's open connections stay in TIME_WAIT after the process is gone; uvicorn
binds with SO_REUSEADDR and would start, but the CLI's own "port in use" probe did not, so
the restart was refused until the kernel let go (60 s on Linux). The test leaves a real
connection in TIME_WAIT on the port, then runs the probe.
"""

from __future__ import annotations

import socket
import time

import pytest

from api.cli import _check_port_free
from geo.errors import SetupError
from tests.conftest import free_port

TIME_WAIT = "06"  # the state column of /proc/net/tcp


def _states(port: int) -> set[str]:
    with open("/proc/net/tcp", encoding="ascii") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return {row[3] for row in rows if int(row[1].split(":")[1], 16) == port}


def leave_time_wait(port: int) -> None:
    """Serve one connection on `port` and close it server-side first, as a crash does."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    served.close()  # the server's end closes first, so it is the one left in TIME_WAIT
    client.recv(1024)
    client.close()
    listener.close()
    deadline = time.monotonic() + 5
    while TIME_WAIT not in _states(port):
        assert time.monotonic() < deadline, f"no TIME_WAIT on port {port}: {_states(port)}"
        time.sleep(0.05)


def test_port_with_a_connection_in_time_wait_counts_as_free() -> None:
    port = free_port()
    leave_time_wait(port)
    # The plain bind the probe used to do is refused while the connection lingers...
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    # ...but the probe passes at once, as uvicorn's own bind does.
    started = time.monotonic()
    _check_port_free("127.0.0.1", port)
    assert time.monotonic() - started < 1
    assert TIME_WAIT in _states(port)


def test_port_another_program_listens_on_is_still_refused() -> None:
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(SetupError, match=f"port {port} on 127.0.0.1 is already in use"):
            _check_port_free("127.0.0.1", port)
