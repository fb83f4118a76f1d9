"""Firestore: one client per instance, created on first use; paging helpers.

Collections: `users/{email}`, `datasets/{name}`, `api_keys/{id}`, `audit/{id}`.
"""
from __future__ import annotations

import base64
import functools
from typing import Any, Iterator

from common import errors
from common.config import settings

# Firestore accepts at most 500 writes in one commit; the emulator does not enforce it, we do.
MAX_WRITES_PER_COMMIT = 500


@functools.cache
def db():
    from google.cloud import firestore
    return firestore.Client(project=settings().project)


def collection(name: str):
    return db().collection(name)


def transactional(fn):
    """Run `fn(transaction)` in a Firestore transaction, retried on contention."""
    from google.cloud import firestore
    return firestore.transactional(fn)(db().transaction())


def server_time():
    from google.cloud import firestore
    return firestore.SERVER_TIMESTAMP


def encode_cursor(doc_id: str) -> str:
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except ValueError:
        raise errors.BadRequest("the cursor is not valid") from None


def page(query, coll, *, limit: int | None, cursor: str | None) -> tuple[Iterator[Any], callable]:
    """Stream `query` from after `cursor` (a document id of `coll`), `limit` at a time.

    Returns the snapshots and a function giving the next cursor once they are consumed
    (None when the page was not full, i.e. there is nothing after it).
    """
    if cursor:
        after = coll.document(decode_cursor(cursor)).get()
        if not after.exists:
            raise errors.BadRequest("the cursor is not valid")
        query = query.start_after(after)
    if limit:
        query = query.limit(limit)
    seen = {"count": 0, "last": None}

    def snapshots():
        for snap in query.stream():
            seen["count"] += 1
            seen["last"] = snap.id
            yield snap

    def next_cursor() -> str | None:
        if limit and seen["count"] == limit and seen["last"]:
            return encode_cursor(seen["last"])
        return None

    return snapshots(), next_cursor
