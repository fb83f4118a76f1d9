"""The transfer worker, `work` (main.py's second entry point: a CloudEvent function behind a
Pub/Sub push subscription on TRANSFER_TOPIC): one delivery is one attempt at one part, bounded
by TRANSFER_TIMEOUT_SECONDS. A failed attempt raises, so Pub/Sub delivers the message again after
its retry policy's backoff; after TRANSFER_ATTEMPTS the part is `failed` and so is the job. The
part's record decides what a delivery does (a claim with a lease, common/storage/jobs.py), so a
redelivered message never counts twice.
"""

from __future__ import annotations

import datetime
from typing import Any

from common.config import settings
from common.storage import collections, jobs, store
from common.web import workers

CLAIM_MARGIN_SECONDS = 60  # a part "sending" for longer than the timeout plus this was abandoned


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
    if claimed.outcome in (jobs.Outcome.GONE, jobs.Outcome.FINISHED):
        return  # finished already, or the job is gone: a redelivery changes nothing
    if claimed.outcome == jobs.Outcome.HELD:
        raise TryAgain(f"part {key} is being sent by another delivery")
    if claimed.outcome == jobs.Outcome.ABANDONED:  # its last attempt was: the part failed
        _settle(job)
        return
    assert claimed.record is not None  # claimed: the part as it is now
    attempt = claimed.attempt
    error, retry = _send(claimed.record["request"])
    if error is None:
        _record(part, attempt, {"status": "done", "error": None, "finished_at": store.now()})
    elif retry and attempt < settings().transfer_attempts:
        _record(part, attempt, {"status": "retrying", "error": error})
        raise TryAgain(f"transfer job {job_id} part {key}, attempt {attempt}: {error}")
    else:
        _record(part, attempt, {"status": "failed", "error": error, "finished_at": store.now()})
    _settle(job)


def _lease_ends(part: dict[str, Any]) -> datetime.datetime:
    limit = settings().transfer_timeout_seconds + CLAIM_MARGIN_SECONDS
    return part["claimed_at"] + datetime.timedelta(seconds=limit)


# A part's claim: "sending" by one delivery, told apart by its attempt count.
PART = jobs.Kind(lease_ends=_lease_ends, running="sending")


def _claim(part) -> jobs.Claim:
    """Count one attempt at the part, in a transaction on its own record."""
    return jobs.claim(
        part,
        PART,
        start=lambda transaction, record, now: {"claimed_at": now},
        abandon=lambda record, now: {
            "status": "failed",
            "error": f"no answer after {record['attempts']} attempts",
        },
        max_attempts=settings().transfer_attempts,
    )


def _record(part, attempt: int, change: dict[str, Any]) -> None:
    """Write how the attempt went, if it still holds the part. A part deleted meanwhile (its
    job went with its dataset) is workers.Gone: nothing is left to do; a part claimed by a
    later delivery (this one outlived its lease) is that delivery's: this message comes again."""
    held, record = jobs.finish(part, PART, attempt, change)
    if record is None:
        raise workers.Gone(f"transfer job {part.parent.parent.id} part {part.id} was deleted meanwhile")
    if not held:
        raise TryAgain(f"part {part.id} was claimed by another delivery after this one's lease ran out")


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

    parts = {p.id: p.to_dict() for p in store.stream(job.collection(collections.TRANSFER_PARTS))}
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
