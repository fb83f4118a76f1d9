"""The transfer worker, `work` (main.py's second entry point: a CloudEvent function behind a
Pub/Sub push subscription on TRANSFER_TOPIC). `POST /transfer` publishes one message per job,
and one delivery sends every unfinished part of the job at once (TRANSFER_PARALLEL_PARTS at a
time), each attempt bounded by TRANSFER_TIMEOUT_SECONDS: the job is done when its slowest part
is, not after the subscription has pushed eight messages one or two at a time. Each part keeps
its own claim and attempt count (a lease in its record, common/storage/jobs.py; the parts a
delivery starts at once are claimed in one transaction), so a redelivery never counts twice. The message is acknowledged once every part has finished; while one failed
and may be tried again (or another delivery holds it), the delivery raises, Pub/Sub delivers the
message again after its retry policy's backoff, and that delivery sends only the unfinished parts.
After TRANSFER_ATTEMPTS a part is `failed` and so is the job. A message that names a part (as
they were published before jobs went out whole) is one attempt at that part alone.
"""

from __future__ import annotations

import datetime
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any

from common.config import settings
from common.storage import collections, jobs, store
from common.web import workers

CLAIM_MARGIN_SECONDS = 60  # a part "sending" for longer than the timeout plus this was abandoned
# A delivery starts no part later than this after it began, so it ends within one attempt's time
# and this (the worker's timeout is TRANSFER_TIMEOUT_SECONDS + 60, terraform/pubsub.tf); parts it
# could not start are the next delivery's.
START_WINDOW_SECONDS = 20


class TryAgain(workers.Retry):
    """Raised to have Pub/Sub deliver the message again (after its retry policy's backoff)."""


class Sent(StrEnum):
    """What one delivery did with one part."""

    UNCHANGED = "unchanged"  # finished already (or gone): nothing to do
    FINISHED = "finished"  # this delivery ended it, done or failed
    RETRY = "retry"  # the attempt failed; a later delivery tries again
    HELD = "held"  # another delivery holds it
    LEFT = "left"  # not started: too late in this delivery
    GONE = "gone"  # deleted while it was sent (its job went with its dataset)


UNFINISHED = (Sent.RETRY, Sent.HELD, Sent.LEFT)


@workers.worker("transfer")
def work(cloud_event):
    """One delivery of `{"job"}` (or `{"job", "part"}`): one attempt at each unfinished part."""
    try:
        message, _ = workers.payload_of(cloud_event)
        job_id, key = str(message["job"]), message.get("part")
        if "/" in job_id or not job_id or (key is not None and ("/" in str(key) or not str(key))):
            raise ValueError("not a document id")
    except (ValueError, KeyError) as exc:
        raise workers.Dropped(f"transfer worker: dropped a message that names no job ({exc})") from None
    job = store.collection(collections.TRANSFER_JOBS).document(job_id)
    keys = [str(key)] if key is not None else _unfinished(job)
    if not keys:
        return  # finished already, or the job is gone: a redelivery changes nothing
    results = _send_parts(job, keys)
    if any(sent == Sent.FINISHED for sent, _ in results):
        _settle(job)  # a part ended: the job may be done, or failed (as soon as one part has)
    waiting = [reason for sent, reason in results if sent in UNFINISHED]
    if waiting:
        raise TryAgain(f"transfer job {job_id}: " + "; ".join(waiting))
    gone = [reason for sent, reason in results if sent == Sent.GONE]
    if gone:
        raise workers.Gone(gone[0])


def _unfinished(job) -> list[str]:
    """The keys of the job's parts that are not done or failed (none when the job is gone)."""
    parts = store.stream(job.collection(collections.TRANSFER_PARTS))
    return [p.id for p in parts if p.to_dict().get("status") not in jobs.FINISHED]


def _send_parts(job, keys: list[str]) -> list[tuple[Sent, str]]:
    """One attempt at each part, TRANSFER_PARALLEL_PARTS at a time; an unexpected failure of one
    is raised once the others have finished."""
    token = functools.cache(_id_token)  # fetched once per delivery, when a part is sent
    parts = [job.collection(collections.TRANSFER_PARTS).document(key) for key in keys]
    if len(keys) == 1:
        return [_attempt(parts[0], _claim(parts[0]), token)]
    parallel = min(settings().transfer_parallel_parts, len(keys))
    # The first `parallel` are claimed together (one transaction) and start at once; a later one
    # is claimed when it starts, only while the window is open (a claim counts an attempt).
    claims = _claim_all(parts[:parallel])
    latest_start = time.monotonic() + START_WINDOW_SECONDS

    def attempt(index: int, part) -> tuple[Sent, str]:
        if index < parallel:
            return _attempt(part, claims[index], token)
        if time.monotonic() > latest_start:
            return Sent.LEFT, f"part {part.id} left for the next delivery"
        return _attempt(part, _claim(part), token)

    with ThreadPoolExecutor(parallel, thread_name_prefix="transfer-part") as pool:
        futures = [pool.submit(attempt, i, part) for i, part in enumerate(parts)]
    return [future.result() for future in futures]


def _attempt(part, claimed: jobs.Claim, token: Callable[[], str | None]) -> tuple[Sent, str]:
    """Send the part as `claimed`, and write how it went (if this delivery still holds it)."""
    key = part.id
    if claimed.outcome in (jobs.Outcome.GONE, jobs.Outcome.FINISHED):
        return Sent.UNCHANGED, ""
    if claimed.outcome == jobs.Outcome.HELD:
        return Sent.HELD, f"part {key} is being sent by another delivery"
    if claimed.outcome == jobs.Outcome.ABANDONED:  # its last attempt was: the part failed
        return Sent.FINISHED, ""
    assert claimed.record is not None  # claimed: the part as it is now
    attempt = claimed.attempt
    error, retry = _send(claimed.record["request"], token())
    try:
        if error is None:
            _record(part, attempt, {"status": "done", "error": None, "finished_at": store.now()})
        elif retry and attempt < settings().transfer_attempts:
            _record(part, attempt, {"status": "retrying", "error": error})
            return Sent.RETRY, f"part {key}, attempt {attempt}: {error}"
        else:
            _record(part, attempt, {"status": "failed", "error": error, "finished_at": store.now()})
    except workers.Gone as exc:
        return Sent.GONE, str(exc)
    except TryAgain as exc:
        return Sent.HELD, str(exc)
    return Sent.FINISHED, ""


def _lease_ends(part: dict[str, Any]) -> datetime.datetime:
    limit = settings().transfer_timeout_seconds + CLAIM_MARGIN_SECONDS
    return part["claimed_at"] + datetime.timedelta(seconds=limit)


# A part's claim: "sending" by one delivery, told apart by its attempt count.
PART = jobs.Kind(lease_ends=_lease_ends, running="sending")


def _claim(part) -> jobs.Claim:
    """Count one attempt at the part, in a transaction on its own record."""
    return jobs.claim(part, PART, **_claiming())


def _claim_all(parts) -> list[jobs.Claim]:
    """Count one attempt at each part (each in its own record), in one transaction."""
    return jobs.claim_all(parts, PART, **_claiming())


def _claiming() -> dict[str, Any]:
    return {
        "start": lambda transaction, record, now: {"claimed_at": now},
        "abandon": lambda record, now: {
            "status": "failed",
            "error": f"no answer after {record['attempts']} attempts",
        },
        "max_attempts": settings().transfer_attempts,
    }


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


def _send(request: dict[str, Any], token: str | None) -> tuple[str | None, bool]:
    """POST one part to the transfer network (with `token`, an ID token for it): (None, _) when
    it was written, else (the error, whether another attempt may help: timeouts, connection
    errors, 429 and 5xx)."""
    import requests

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
