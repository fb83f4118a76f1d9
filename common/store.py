"""Firestore: one client per instance, created on first use; paging helpers.

Collections: `users/{email}`, `datasets/{name}`, `api_keys/{id}`, `audit/{id}`.
"""

from __future__ import annotations

import base64
import datetime
import functools
import heapq
import itertools
from collections.abc import Iterator
from typing import Any

from common import backend, errors
from common.config import settings

# Firestore accepts at most 500 writes in one commit; the emulator does not enforce it, we do.
MAX_WRITES_PER_COMMIT = 500


@functools.cache
def db():
    from common import deadlines  # lazy: loads grpc and the Firestore client, at first use

    return deadlines.firestore_client(settings().project)


def collection(name: str):
    return db().collection(name)


# Firestore's limit on the values of one `in` / `array-contains-any` filter.
MAX_IN_VALUES = 30


def now() -> datetime.datetime:
    """The time stamps Gatehouse stores: timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


def transactional(fn, *, attempts: int = 5, rounds: int = 4):
    """Run `fn(transaction)` in a Firestore transaction, retried on contention: `attempts` at once,
    then again after a jittered pause, `rounds` times; still contended -> 503 with Retry-After."""
    import random
    import time

    from google.api_core.exceptions import Aborted
    from google.cloud import firestore

    for round_ in range(rounds):
        try:
            return firestore.transactional(fn)(db().transaction(max_attempts=attempts))
        except (Aborted, ValueError) as exc:
            # The client raises ValueError("Failed to commit transaction in N attempts.").
            if isinstance(exc, ValueError) and "Failed to commit transaction" not in str(exc):
                raise
            time.sleep(random.uniform(0.05, 0.2) * (2**round_))
    raise backend.contention()


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def server_time():
    from google.cloud import firestore

    return firestore.SERVER_TIMESTAMP


def encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def valid_id(value: str) -> bool:
    """Whether `value` can be a Firestore document id: not empty, at most 1,500 bytes, no `/`,
    not `.` or `..`, not `__x__` (reserved), valid Unicode."""
    if not value or "/" in value or value in (".", "..") or (value.startswith("__") and value.endswith("__")):
        return False
    try:
        return len(value.encode("utf-8")) <= 1500
    except UnicodeEncodeError:
        return False


def document(coll, doc_id: str, missing: str):
    """`coll.document(doc_id)` for an id that came from a caller: an impossible id is 404 (`missing`)."""
    if not valid_id(doc_id):
        raise errors.NotFound(missing)
    return coll.document(doc_id)


def decode_cursor(cursor: str) -> str:
    try:
        doc_id = base64.b64decode(
            cursor[:4096] + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True
        ).decode()
    except ValueError:
        raise errors.BadRequest("the cursor is not valid") from None
    if not valid_id(doc_id):  # a document id of the listed collection, nothing else
        raise errors.BadRequest("the cursor is not valid")
    return doc_id


class Page:
    """Snapshots of one page, and once they are consumed, the cursor of the next page
    (None when this page was not full, i.e. there is nothing after it)."""

    def __init__(self, snapshots: Iterator[Any], limit: int | None):
        self._snapshots, self._limit = snapshots, limit
        self._count, self._last = 0, None

    def __iter__(self) -> Iterator[Any]:
        for snap in itertools.islice(self._snapshots, self._limit):
            self._count += 1
            self._last = snap.id
            yield snap

    def next_cursor(self) -> str | None:
        if self._limit and self._count == self._limit and self._last:
            return encode_cursor(self._last)
        return None


def page(query, coll, *, limit: int | None, cursor: str | None) -> Page:
    """Stream `query` from after `cursor` (a document id of `coll`), `limit` at a time."""
    if cursor:
        after = coll.document(decode_cursor(cursor)).get()
        if not after.exists:
            raise errors.BadRequest("the cursor is not valid")
        query = query.start_after(after)
    if limit:
        query = query.limit(limit)
    return Page(query.stream(), limit)


def page_by_id(queries: list[Any], *, limit: int | None, cursor: str | None) -> Page:
    """Like `page`, for queries over one collection ordered by document id, merged into one
    ordered stream (an `in` filter over more than 30 values is several queries). The cursor
    is the last id seen, so it stays valid when that document is deleted."""
    after = decode_cursor(cursor) if cursor else None
    streams = []
    for query in queries:
        query = query.order_by("__name__")
        if after is not None:
            query = query.start_after({"__name__": after})
        if limit:
            query = query.limit(limit)
        streams.append(query.stream())
    merged = heapq.merge(*streams, key=lambda snap: snap.id) if len(streams) > 1 else iter(streams[0])
    return Page(merged, limit)
