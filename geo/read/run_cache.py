"""A small cache for what is computed from one completed score run, which never changes."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class RunCache:
    """Keeps what was computed from one completed run, which never changes, for the next caller.

    Map options, class breaks and rank denominators take long over tens of thousands of
    localities and sit on hot paths; every caller of a run asks for the same ones. Keys
    must name the database and the run (id and completion time), so a recreated database with
    reused run ids is never served stale entries.
    """

    def __init__(self, size: int = 128) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """Return the cached value of `key`, computing and keeping it when absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]  # type: ignore[no-any-return]
        # Computed outside the lock: two first callers may both compute; both get equal results.
        value = compute()
        with self._lock:
            self._entries[key] = value
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value
