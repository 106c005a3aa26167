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
import re
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from api.caching import cache_headers, etag_of, not_modified_for

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


def profile_headers(run_id: int, path: str, query: list[tuple[str, str]], run_param: str,
                    role: str) -> dict[str, str]:
    """Return the ETag, Cache-Control and Vary of a risk profile response."""
    return {"ETag": etag_of(run_id, path, query, role), **cache_headers(run_param, role),
            "Vary": "Authorization, Accept-Encoding"}


def profile_response(packed: bytes, headers: dict[str, str], if_none_match: str,
                     accept_encoding: str) -> Response:
    """Return 304, the stored gzip bytes, or the plain JSON, as the client asked."""
    unchanged = not_modified_for(if_none_match, headers["ETag"], headers)
    if unchanged is not None:
        return unchanged
    if "gzip" in accept_encoding:
        return Response(packed, media_type="application/json",
                        headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(packed), media_type="application/json", headers=headers)


PROFILE_PATH = re.compile(r"/api/v1/localities/([^/]{1,64})/risk")


class ServeCachedProfiles:
    """Answer a public repeat lookup of a cached risk profile before routing.

    Polling clients ask for the same profiles again and again; FastAPI's routing, dependency
    injection and parameter validation cost more than the lookup itself. Only the plainest
    case is answered here — GET, no key, no parameter but `run`, the run and the profile
    already cached — with exactly the route's headers; everything else goes to the route,
    which stays the one place that validates, renders and fills the cache.
    """

    def __init__(self, app: ASGIApp, cache: ProfileCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the cached profile, or pass the request on untouched."""
        response = self._cached(scope) if scope["type"] == "http" else None
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def _cached(self, scope: Scope) -> Response | None:
        if scope["method"] != "GET":
            return None
        match = PROFILE_PATH.fullmatch(scope["path"])
        if match is None:
            return None
        wanted = {b"if-none-match": "", b"accept-encoding": ""}
        for name, value in scope["headers"]:
            if name == b"authorization":
                return None  # roles need the key looked up: the route does that
            if name in wanted:
                wanted[name] = value.decode("latin-1")
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        if any(name != "run" for name, _ in query) or len(query) > 1:
            return None
        run = query[0][1] if query else "latest"
        resolved = self.cache.known_run(run)
        if resolved is None:
            return None
        packed = self.cache.get((resolved["id"], match.group(1), False))
        if packed is None:
            return None
        # the path exactly as the route sees it (request.url.path), so the ETags agree
        headers = profile_headers(resolved["id"], Request(scope).url.path, query, run, "public")
        return profile_response(packed, headers, wanted[b"if-none-match"],
                                wanted[b"accept-encoding"])
