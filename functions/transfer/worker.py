"""The transfer worker, `work` (main.py's second entry point: a CloudEvent function behind a
Pub/Sub push subscription on TRANSFER_TOPIC): one delivery is one attempt at one part, bounded
by TRANSFER_TIMEOUT_SECONDS. A failed attempt raises, so Pub/Sub delivers the message again after
its retry policy's backoff; after TRANSFER_ATTEMPTS the part is `failed` and so is the job. The
part's record decides what a delivery does, so a redelivered message never counts twice.
"""

from __future__ import annotations

import datetime
from typing import Any

from common.config import settings
from common.storage import collections, store
from common.web import workers

CLAIM_MARGIN_SECONDS = 60  # a part "sending" for longer than the timeout plus this was abandoned
FINISHED = ("done", "failed")


class TryAgain(workers.Retry):
    """Raised to have Pub/Sub deliver the message again (after its retry policy's backoff)."""


@workers.worker("transfer")
def work(cloud_event):
    """One delivery of `{"job", "part"}`: one attempt at that part (SPEC §3 transfer)."""
    try:
        message, _ = workers.payload_of(cloud_event)
        job_id, key = str(message["job"]), str(message["part"])
        if "/" in job_id or "/" in key or not job_id or not key:
            raise ValueError("not a document id")
    except (ValueError, KeyError) as exc:
        raise workers.Dropped(f"transfer worker: dropped a message that names no part ({exc})") from None
    job = store.collection(collections.TRANSFER_JOBS).document(job_id)
    part = job.collection(collections.TRANSFER_PARTS).document(key)
    claimed = _claim(part)
    if claimed is None:
        return  # finished already, or the job is gone: a redelivery changes nothing
    request, attempt = claimed
    if request is None:  # an abandoned last attempt
        _record(part, {"status": "failed", "error": f"no answer after {attempt} attempts"})
        _settle(job)
        return
    error, retry = _send(request)
    if error is None:
        _record(part, {"status": "done", "error": None, "finished_at": store.now()})
    elif retry and attempt < settings().transfer_attempts:
        _record(part, {"status": "retrying", "error": error})
        raise TryAgain(f"transfer job {job_id} part {key}, attempt {attempt}: {error}")
    else:
        _record(part, {"status": "failed", "error": error, "finished_at": store.now()})
    _settle(job)


def _record(part, change: dict[str, Any]) -> None:
    """Write how the attempt went; a part deleted meanwhile (its job went with its dataset) is
    workers.Gone: nothing is left to do."""
    from google.api_core.exceptions import NotFound

    try:
        part.update(change)
    except NotFound:
        raise workers.Gone(
            f"transfer job {part.parent.parent.id} part {part.id} was deleted meanwhile"
        ) from None


def _claim(part) -> tuple[dict[str, Any] | None, int] | None:
    """Count one attempt at the part, in a transaction on its own record: None when there is
    nothing to do; (None, attempts) when its last attempt was abandoned. TryAgain while
    another delivery of it is still sending."""
    from google.cloud import firestore

    now = store.now()

    @firestore.transactional
    def claim(transaction):
        snap = part.get(transaction=transaction)
        if not snap.exists or snap.get("status") in FINISHED:
            return None
        record = snap.to_dict()
        if record["status"] == "sending":
            limit = settings().transfer_timeout_seconds + CLAIM_MARGIN_SECONDS
            if now - record["claimed_at"] < datetime.timedelta(seconds=limit):
                raise TryAgain(f"part {part.id} is being sent by another delivery")
            if record["attempts"] >= settings().transfer_attempts:
                return None, record["attempts"]
        attempt = record["attempts"] + 1
        transaction.update(part, {"status": "sending", "attempts": attempt, "claimed_at": now})
        return record["request"], attempt

    return claim(store.db().transaction())


def _id_token() -> str | None:
    """An ID token for TRANSFER_FUNC in the cloud; none against the emulators (local service)."""
    if settings().on_emulators:
        return None
    import google.auth.transport.requests
    from google.oauth2 import id_token

    return id_token.fetch_id_token(google.auth.transport.requests.Request(), settings().transfer_func)


def _send(request: dict[str, Any]) -> tuple[str | None, bool]:
    """POST one part to the transfer network: (None, _) when it was written, else (the error,
    whether another attempt may help: timeouts, connection errors, 429 and 5xx)."""
    import requests

    token = _id_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = settings().transfer_timeout_seconds
    try:
        response = requests.post(settings().transfer_func, json=request, headers=headers, timeout=timeout)
    except requests.Timeout:
        return f"no answer within {timeout:g} s", True
    except requests.RequestException as exc:
        return type(exc).__name__, True
    if response.ok:
        return None, False
    detail = response.text.strip()[:200]
    error = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
    return error, response.status_code == 429 or response.status_code >= 500


def _settle(job) -> None:
    """The job's status from its parts: `failed` naming the failed parts as soon as one has
    failed, `done` when all are done. Idempotent: every finishing delivery may call it."""
    from google.api_core.exceptions import NotFound

    parts = {p.id: p.to_dict() for p in job.collection(collections.TRANSFER_PARTS).stream()}
    failed = sorted(k for k, part in parts.items() if part["status"] == "failed")
    if failed:
        change = {
            "status": "failed",
            "failed_parts": failed,
            "error": "the transfer network failed "
            + "; ".join(
                f"part {k} ({parts[k]['attempts']} attempts, last: {parts[k]['error']})" for k in failed
            ),
        }
    elif parts and all(part["status"] == "done" for part in parts.values()):
        change = {"status": "done"}
    else:
        return
    try:
        job.update({**change, "finished_at": store.now()})
    except NotFound:
        pass  # the job was deleted meanwhile (its dataset was)
