"""Per-instance caches, all of one kind: bounded in size and in time.

An instance keeps what it read (roles, dataset records, twin definitions, verified tokens...)
for a few seconds, to save a backend read per request. Each such cache is a `TTLCache`: at most
`max_entries` entries (the oldest goes first when full), each for `ttl` seconds by `clock`, which
tests replace to move time instead of waiting. `clear_all` empties every one (a cold instance).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_MISSING: Any = object()  # a cached None is a value (e.g. "no such dataset"), not a miss
_every: weakref.WeakSet[TTLCache[Any, Any]] = weakref.WeakSet()


class TTLCache(Generic[K, V]):
    """Values by key for `ttl` seconds (a number, or a function read at each `put`, e.g. of the
    settings), at most `max_entries` of them. Safe to share between a function's threads."""

    def __init__(
        self,
        ttl: float | Callable[[], float],
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}  # insertion order: oldest first
        self._lock = threading.Lock()
        _every.add(self)

    def _lookup(self, key: K) -> V:
        # No lock: one dict read is atomic. An expired entry stays until it is renewed or, the
        # oldest, evicted (the size stays bounded either way).
        hit = self._entries.get(key)
        if hit is None or hit[0] <= self.clock():
            return _MISSING
        return hit[1]

    def get(self, key: K) -> V | None:
        """The value of `key`, or None when it is not cached (or has expired)."""
        value = self._lookup(key)
        return None if value is _MISSING else value

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        """Keep `value` for `ttl` seconds (the cache's own when None)."""
        seconds = ttl if ttl is not None else (self.ttl() if callable(self.ttl) else self.ttl)
        with self._lock:
            self._entries.pop(key, None)  # a renewed entry becomes the newest
            while self._entries and len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (self.clock() + seconds, value)

    def load(self, key: K, loader: Callable[[K], V]) -> V:
        """The cached value of `key`; on a miss, `loader(key)`, kept (None included)."""
        value = self._lookup(key)
        if value is _MISSING:
            value = loader(key)
            self.put(key, value)
        return value

    def pop(self, key: K) -> None:
        """Forget `key` (it was just changed)."""
        with self._lock:
            self._entries.pop(key, None)

    def pop_where(self, test: Callable[[K, V], bool]) -> None:
        """Forget every entry for which `test(key, value)` is true."""
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if test(k, v)]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        """Entries held, expired ones not yet replaced or evicted included."""
        return len(self._entries)


def clear_all() -> None:
    """Empty every cache of this process, as on a new instance (tests start from one)."""
    for cache in list(_every):
        cache.clear()
