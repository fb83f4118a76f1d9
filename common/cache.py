"""Per-instance caches, all of one kind: bounded in size and in time.

An instance keeps what it read (roles, dataset records, twin definitions, verified tokens...)
for a few seconds, to save a backend read per request. Each such cache is a `TTLCache`: at most
`max_entries` entries (the oldest goes first when full), each for `ttl` seconds by `clock`, which
tests replace to move time instead of waiting; a cache of values of very different sizes (objects
read from Cloud Storage) is also bounded in bytes (`max_bytes`, by `len`). `clear_all` empties
every one (a cold instance).
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
    settings), at most `max_entries` of them, and with `max_bytes` at most that many bytes of
    values (their `len`; a larger value is not kept). Safe to share between a function's threads."""

    def __init__(
        self,
        ttl: float | Callable[[], float],
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int | None = None,
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}  # insertion order: oldest first
        self._bytes = 0  # the values' sizes, when bounded by max_bytes
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
        size = self._size(value)
        with self._lock:
            self._forget(key)  # a renewed entry becomes the newest
            if self.max_bytes is not None and size > self.max_bytes:
                return
            while self._entries and (
                len(self._entries) >= self.max_entries
                or (self.max_bytes is not None and self._bytes + size > self.max_bytes)
            ):
                self._forget(next(iter(self._entries)))
            self._entries[key] = (self.clock() + seconds, value)
            self._bytes += size

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
            self._forget(key)

    def pop_where(self, test: Callable[[K, V], bool]) -> None:
        """Forget every entry for which `test(key, value)` is true."""
        with self._lock:
            for key in [k for k, (_, v) in self._entries.items() if test(k, v)]:
                self._forget(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _size(self, value: Any) -> int:
        return len(value) if self.max_bytes is not None else 0

    def _forget(self, key: K) -> None:
        """Drop `key` (the lock held)."""
        hit = self._entries.pop(key, None)
        if hit is not None:
            self._bytes -= self._size(hit[1])

    @property
    def bytes(self) -> int:
        """The size of the values held, when bounded by `max_bytes` (0 otherwise)."""
        return self._bytes

    def __len__(self) -> int:
        """Entries held, expired ones not yet replaced or evicted included."""
        return len(self._entries)


def clear_all() -> None:
    """Empty every cache of this process, as on a new instance (tests start from one)."""
    for cache in list(_every):
        cache.clear()
