"""Per-caller rate limits, exact across instances (SPEC §3 twins `rate_limit`).

A fixed window: the calls of one (scope, caller) in window `floor(now / per_seconds)` are counted
in one Firestore document by an `Increment` transform, whose new value comes back with the write.
Every increment is atomic, so exactly `calls` callers see a count <= `calls`; the rest are 429
with `Retry-After` up to the window's end. No transaction (they deadlock on one document in the
emulator), no read-modify-write. The documents expire through the TTL on `expire_at`.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import time

from common import errors
from common.storage import store

COLLECTION = "rate_limits"


def take(scope: str, caller: str, calls: int, per_seconds: int) -> int:
    """Count one call of `caller` in `scope`; raise RateLimited past `calls` in the window.
    Returns how many calls the window has counted (this one included)."""
    from google.cloud import firestore

    now = time.time()
    window = math.floor(now / per_seconds)
    doc_id = hashlib.sha256(f"{scope}\0{caller}\0{per_seconds}\0{window}".encode()).hexdigest()[:40]
    ends = (window + 1) * per_seconds
    result = (
        store.collection(COLLECTION)
        .document(doc_id)
        .set(
            {
                "scope": scope,
                "caller": caller,
                "window_start": window * per_seconds,
                "count": firestore.Increment(1),
                "expire_at": datetime.datetime.fromtimestamp(ends, datetime.UTC) + datetime.timedelta(days=1),
            },
            merge=True,
        )
    )
    count = result.transform_results[0].integer_value
    if count > calls:
        raise errors.RateLimited(
            f"at most {calls} calls per {per_seconds} s; try again later", retry_after=math.ceil(ends - now)
        )
    return count
