"""In-process cache of rendered risk profiles, so repeat lookups never touch the database.

A profile derives from an immutable run, plus two live inventories (community priorities
and institution counts). Entries are therefore dropped when any job of this process finishes
(an ingest or a run may change what a profile shows) and, to bound staleness from other
processes (a CLI ingest), after ENTRY_TTL_S — the `max-age` clients are already told for
`latest`. Bodies are kept gzip-compressed (~20 KB of JSON becomes ~4 KB), so a country's worth
of localities fits in a bounded amount of memory; clients that accept gzip get the stored
bytes as they are.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import OrderedDict
from typing import Any

ENTRY_TTL_S = 60.0
# `latest` moves when a run completes; another process (the CLI) may complete one, so the
# answer is re-read this often. Runs completed by this process clear it at once.
LATEST_TTL_S = 1.0


class ProfileCache:
    """A byte-bounded LRU of gzip-compressed JSON bodies, plus the resolved runs they use."""

    def __init__(self, max_bytes: int = 128 * 1024**2) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, bytes]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[float, dict[str, Any]]] = {}

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        """Return the compressed body, or None when absent or expired."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if now - entry[0] > ENTRY_TTL_S:
                self._size -= len(self._entries.pop(key)[1])
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[Any, ...], body: bytes) -> bytes:
        """Compress and store a body; return the compressed bytes."""
        packed = gzip.compress(body, compresslevel=5, mtime=0)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._size -= len(old[1])
            self._entries[key] = (time.monotonic(), packed)
            self._size += len(packed)
            while self._size > self.max_bytes and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._size -= len(dropped)
        return packed

    def known_run(self, run: str) -> dict[str, Any] | None:
        """Return a run resolved earlier: ids for good (runs are immutable), `latest` briefly."""
        found = self._runs.get(run)
        if found is None:
            return None
        if run == "latest" and time.monotonic() - found[0] > LATEST_TTL_S:
            return None
        return found[1]

    def remember_run(self, run: str, resolved: dict[str, Any]) -> None:
        """Keep a resolved run; only completed runs reach here (others raise)."""
        if len(self._runs) > 10_000:
            self._runs.clear()
        self._runs[run] = (time.monotonic(), resolved)

    def clear(self) -> None:
        """Forget everything: a job of this process changed the data profiles are made of."""
        with self._lock:
            self._entries.clear()
            self._size = 0
            self._runs.clear()

    def __len__(self) -> int:
        return len(self._entries)
