"""A twin endpoint side's persistent state on Firestore (SPEC §3 twins: `context.state`).

Each key is its own document, `twin_state/{generation}/keys/{hash of the key}` holding
`{"key", "value"}`, so a call that sets one key never overwrites another key a concurrent call
set, and `increment` is a Firestore `Increment` transform whose result comes back with the write:
atomic across threads and instances, without transactions (which deadlock on one document in
the emulator). `generation` is the side's id, new each time the side is replaced, so a replaced
side starts from an empty state. Only the parent process talks to Firestore: the sandbox's
workers reach this object through it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from common import jsonio
from common.models import check_storable
from common.storage import collections, store

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 512 << 10  # a Firestore document holds at most 1 MiB


def _key_id(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError("a state key is a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ValueError(f"a state key has at most {MAX_KEY_BYTES} bytes")
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def _storable(value: Any) -> Any:
    check_storable(value, "state value")
    if len(jsonio.dumps(value).encode()) > MAX_VALUE_BYTES:
        raise ValueError(f"a state value is at most {MAX_VALUE_BYTES} bytes as JSON")
    return value


class FirestoreState:
    """The StateStore of one endpoint side (see functions.twins.sandbox.StateStore)."""

    def __init__(self, generation: str):
        self.generation = generation

    def _keys(self):
        return (
            store.collection(collections.TWIN_STATE)
            .document(self.generation)
            .collection(collections.TWIN_STATE_KEYS)
        )

    def get(self, key: str, default: Any = None) -> Any:
        snap = self._keys().document(_key_id(key)).get()
        return snap.get("value") if snap.exists else default

    def set(self, key: str, value: Any) -> None:
        self._keys().document(_key_id(key)).set({"key": key, "value": _storable(value)})

    def delete(self, key: str) -> None:
        self._keys().document(_key_id(key)).delete()

    def increment(self, key: str, n: int | float = 1) -> int | float:
        """Add `n` atomically and return the new value (a missing or non-numeric value counts as 0)."""
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise TypeError("increment takes an int or a float")
        from google.cloud import firestore

        result = (
            self._keys().document(_key_id(key)).set({"key": key, "value": firestore.Increment(n)}, merge=True)
        )
        return _number(result.transform_results[0])

    def items(self) -> dict[str, Any]:
        return {snap.get("key"): snap.get("value") for snap in store.stream(self._keys())}


def _number(value) -> int | float:
    kind = type(value).pb(value).WhichOneof("value_type")
    return value.integer_value if kind == "integer_value" else value.double_value


def delete_generation(generation: str) -> None:
    """Drop a replaced side's state (every key), in batches of the commit limit."""
    keys = FirestoreState(generation)._keys()
    while True:
        snaps = list(store.stream(keys.limit(store.MAX_WRITES_PER_COMMIT).select([])))
        if not snaps:
            return
        batch = store.db().batch()
        for snap in snaps:
            batch.delete(snap.reference)
        batch.commit()
