"""Firestore: one client per instance, created on first use; paging helpers.

Collections: `users/{email}`, `datasets/{name}`, `api_keys/{id}` (and `api_key_slots/{owner}-{n}`),
`audit/{id}`.
"""

from __future__ import annotations

import base64
import datetime
import functools
import heapq
import itertools
import random
import time
from collections.abc import Iterator
from typing import Any

from common import errors
from common.config import settings
from common.storage import failures

# Firestore accepts at most 500 writes in one commit; the emulator does not enforce it, we do.
MAX_WRITES_PER_COMMIT = 500


@functools.cache
def db():
    from common.storage import clients  # lazy: loads grpc and the Firestore client, at first use

    return clients.firestore_client(settings().project)


def collection(name: str):
    return db().collection(name)


def stream(query) -> Iterator[Any]:
    """The documents of `query` (common.storage.wire: as `query.stream()`, decoded at the wire)."""
    from common.storage import wire  # lazy: loads grpc and the Firestore client, at first read

    return wire.stream(db(), query)


def get_all(references) -> Iterator[Any]:
    """The documents at `references`, in the order they arrive; a missing one's `exists` is False
    (common.storage.wire: as `Client.get_all`, decoded at the wire)."""
    from common.storage import wire  # lazy: loads grpc and the Firestore client, at first read

    return wire.get_all(db(), references)


# Firestore's limit on the values of one `in` / `array-contains-any` filter.
MAX_IN_VALUES = 30


def now() -> datetime.datetime:
    """The time stamps Gatehouse stores: timezone-aware UTC."""
    return datetime.datetime.now(datetime.UTC)


# How long a write keeps retrying on contention before it answers 503 (Retry-After 1): contention
# on one document clears in moments, and a caller who comes back shortly does better than a
# request that waits out its whole backend budget while others hold the document.
CONTENTION_SECONDS = 2.0
_MAX_ATTEMPTS = 100  # of one transaction; time, not this count, is what ends the retries


class _Contended(Exception):
    """Raised inside a transaction's function to stop the client retrying it."""


def transactional(fn, *, patience: float = CONTENTION_SECONDS):
    """Run `fn(transaction)` in a Firestore transaction, retried on contention (by the client, which
    keeps a retried transaction's place in line) for about `patience` seconds; still contended ->
    503 with Retry-After. At least two attempts are made: a contended commit may first wait for a
    lock (about 2 s in the emulator, where concurrent transactions on one document queue up).
    A hot document with many concurrent writers wants `guarded_update` or per-writer documents."""
    from google.api_core.exceptions import Aborted
    from google.cloud import firestore

    started = time.monotonic()
    attempts = 0

    def attempt(transaction):
        nonlocal attempts
        attempts += 1
        if attempts > 2 and time.monotonic() - started >= patience:
            raise _Contended
        return fn(transaction)

    while True:
        try:
            return firestore.transactional(attempt)(db().transaction(max_attempts=_MAX_ATTEMPTS))
        except _Contended:
            raise failures.contention() from None
        except ValueError as exc:  # the client's "Failed to commit transaction in N attempts."
            if "Failed to commit transaction" in str(exc):
                raise failures.contention() from None
            raise
        except Aborted:  # on a read (the client retries only aborted commits)
            if attempts >= 2 and time.monotonic() - started >= patience:
                raise failures.contention() from None
            time.sleep(random.uniform(0.02, 0.1))


def guarded_update(ref, change_for, *, patience: float = CONTENTION_SECONDS):
    """Read-modify-write of one hot document without a transaction. `change_for(snapshot, batch)`
    returns `(change, result)` and may add other writes to `batch` (an audit entry); `change` is
    written to `ref` only if the document is as it was read (its update time, a precondition the
    commit checks), else all of it is done again on a fresh read, for about `patience` seconds;
    still contended -> 503 with Retry-After. No lock is held between the read and the commit, so
    concurrent writers get through one after another (one wins each round) instead of holding
    each other's locks as transactions on one document do. Returns `result`."""
    from google.api_core.exceptions import FailedPrecondition, NotFound

    started = time.monotonic()
    pause = 0.01
    while True:
        snap = ref.get()
        batch = db().batch()
        change, result = change_for(snap, batch)
        batch.update(ref, change, option=db().write_option(last_update_time=snap.update_time))
        try:
            batch.commit()
            return result
        except (FailedPrecondition, NotFound):  # changed or deleted since the read: read again
            if time.monotonic() - started >= patience:
                raise failures.contention() from None
        time.sleep(random.uniform(0, pause))
        pause = min(2 * pause, 0.2)


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
    return Page(stream(query), limit)


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
        streams.append(stream(query))
    merged = heapq.merge(*streams, key=lambda snap: snap.id) if len(streams) > 1 else iter(streams[0])
    return Page(merged, limit)
