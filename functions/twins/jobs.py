"""Async twin work (SPEC §3 twins, Async): `?async=1` on a call or a request's run answers 202
with `Location: /twins/jobs/{id}`; a message on TWIN_JOBS_TOPIC carries the job id to the twins
function's `job_work` worker (Pub/Sub push, with retries and a dead-letter topic).

A job goes pending -> running -> done | failed. Each delivery claims it in a transaction with a
lease (its time limit plus a margin; common/storage/jobs.py): a duplicate delivery while it runs
is sent back (Pub/Sub delivers it again later), one after it finished changes nothing, and one
after the lease ran out (the worker died) runs it again, at most MAX_ATTEMPTS times before the
job ends `failed`. Only the attempt that holds the claim stores the outcome, so the work
completes once. A request's run is single use: it is never started twice
(functions/twins/approvals.py).
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from typing import Any

from common import errors, jsonio
from common.config import settings
from common.identity import authz
from common.logs import log
from common.storage import collections, pubsub, store
from common.storage import jobs as leases  # the kernel of background work (this module is twins')
from functions.twins import approvals, calls, results

ID = re.compile(r"[0-9a-f]{32}")


JobStatus = leases.Status  # as stored and answered: PENDING -> RUNNING -> DONE | FAILED
FINISHED = leases.FINISHED
MAX_ATTEMPTS = 3
LEASE_MARGIN_S = 30
# A job still `running` this long past its lease gets no more deliveries (its message was
# dead-lettered): it ends `failed` when it is next read.
ABANDONED_AFTER_S = 900
# A job's claim: `running` until `lease_until`, by the attempt it counts.
JOB = leases.Kind(lease_ends=lambda job: job["lease_until"])


class TryAgain(Exception):
    """Raised by the worker to have Pub/Sub deliver the message again later."""


def submit_call(req, endpoint: calls.Endpoint, side: str | None, args: dict[str, Any]) -> dict[str, Any]:
    """Queue a call that has been authorized and admitted (arguments, rate limit)."""
    return _submit(
        req,
        {
            "kind": "call",
            "endpoint": endpoint.path,
            "endpoint_generation": endpoint.generation,  # a job of an earlier endpoint at the path is gone
            "dataset": endpoint.dataset,
            "dataset_generation": endpoint.doc.get("dataset_generation"),
            "side": side,
            "args_json": jsonio.dumps(args),  # as text: Firestore holds no array in an array
            "timeout_s": float(endpoint.doc["timeout_s"]),
        },
    )


def submit_run(req, approval_id: str) -> dict[str, Any]:
    """Queue the single run of an approved request; the same job again when it is queued or ran."""
    job_id = uuid.uuid4().hex
    state, doc = approvals.queue_run(req, approval_id, job_id)
    fields = {"kind": "run", "request": approval_id, "timeout_s": float(doc["timeout_s"])}
    if state == "claimed":
        return _submit(req, fields, job_id, on_failure=lambda: approvals.unqueue(approval_id, job_id))
    existing = (doc.get("run") or {}).get("job")
    job = load(existing) if existing else None
    if job is not None:
        return job
    # The request ran without a job (a plain run) or its job has expired: a finished job shows it.
    if doc["status"] not in approvals.FINISHED:  # a plain run of it is in progress: there is no job to follow
        raise errors.Conflict(
            f"the request is {doc['status']}; GET /twins/requests/{approval_id} shows its result when it is done"
        )
    job = _job(req, fields, status=doc["status"])
    store.collection(collections.TWIN_JOBS).document(job["id"]).set(job)
    return job


def _job(
    req, fields: dict[str, Any], job_id: str | None = None, status: str = JobStatus.PENDING
) -> dict[str, Any]:
    now = store.now()
    return {
        "id": job_id or uuid.uuid4().hex,
        "caller": req.caller.email,
        "status": status,
        "attempts": 0,
        "request_id": req.id,
        "created_at": now,
        "expire_at": now + datetime.timedelta(days=settings().twin_call_retention_days),
        **fields,
    }


def _submit(req, fields: dict[str, Any], job_id: str | None = None, on_failure=None) -> dict[str, Any]:
    job = _job(req, fields, job_id)
    ref = store.collection(collections.TWIN_JOBS).document(job["id"])
    ref.set(job)
    try:
        pubsub.publish(settings().twin_jobs_topic, {"job": job["id"]})
    except Exception as exc:
        log("ERROR", f"twin job {job['id']} not queued: {exc!r}", request_id=req.id)
        ref.update({"status": JobStatus.FAILED, "error": _queue_error(job["id"]), "finished_at": store.now()})
        if on_failure is not None:
            on_failure()
        raise errors.Unavailable("the job queue did not take the job; try again", retry_after=5) from None
    return job


def _queue_error(job_id: str) -> dict[str, Any]:
    return {
        "error": "unavailable",
        "message": "the job queue did not take the job",
        "details": {"reference": job_id},
    }


def accepted(job: dict[str, Any]):
    """The 202 answer: the job's view and where to follow it."""
    body = {"id": job["id"], "status": job["status"], "kind": job["kind"]}
    return body, 202, {"Location": f"/twins/jobs/{job['id']}"}


def load(job_id: str) -> dict[str, Any] | None:
    if not ID.fullmatch(job_id):
        return None
    snap = store.collection(collections.TWIN_JOBS).document(job_id).get()
    return snap.to_dict() if snap.exists else None


# -- the worker ----------------------------------------------------------------------------------


def work(job_id: str) -> None:
    """One delivery of a job: claim it and carry it out, or nothing when it has finished."""
    claimed = leases.claim(
        store.collection(collections.TWIN_JOBS).document(job_id),
        JOB,
        start=lambda transaction, job, now: {
            "started_at": now,
            "lease_until": now + datetime.timedelta(seconds=job["timeout_s"] + LEASE_MARGIN_S),
        },
        abandon=lambda job, now: _failed_change(_stopped(job), now),
        max_attempts=MAX_ATTEMPTS,
    )
    if claimed.outcome == leases.Outcome.HELD:
        raise TryAgain(f"twin job {job_id} is being carried out by another delivery")
    if claimed.outcome != leases.Outcome.CLAIMED:
        return
    assert claimed.record is not None  # claimed: the job as it is now
    if claimed.record["kind"] == "run":
        _work_run(claimed.record, claimed.attempt)
    else:
        _work_call(claimed.record, claimed.attempt)


def _stopped(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "error": "internal",
        "message": f"the job's worker stopped {job['attempts']} times before it finished; it is not tried again",
        "details": {"reference": job["id"], "reason": "worker_stopped"},
    }


def _failed_change(error: dict[str, Any], now) -> dict[str, Any]:
    return {"status": JobStatus.FAILED, "error": error, "http_status": _status_of(error), "finished_at": now}


def _status_of(error: dict[str, Any]) -> int:
    return {"unavailable": 503, "conflict": 409, "forbidden": 403, "not_found": 404}.get(
        str(error.get("error")), 500
    )


def _work_call(job: dict[str, Any], attempt: int) -> None:
    try:
        caller = authz.caller_for(job["caller"], "job")
        endpoint, side = calls.resolve(caller, job["endpoint"], job["side"])
        if not _same_endpoint(job, endpoint):
            raise errors.NotFound(f"twin endpoint {job['endpoint']!r} was deleted since the job was queued")
        answer = calls.invoke(
            endpoint,
            side,
            caller,
            json.loads(job["args_json"]),
            job["request_id"],
            origin=f"job:{job['id']}",
            rate_limited=False,
        )
        status, body = answer.status, answer.body
    except errors.ApiError as exc:  # access or the endpoint gone since it was queued
        status = exc.status
        body = {"error": exc.code, "message": exc.message, "details": {"reference": job["id"]}}
    _finish(job, attempt, status, body)


def _work_run(job: dict[str, Any], attempt: int) -> None:
    try:
        approvals.contained()
    except errors.Unavailable as exc:  # this instance cannot contain the code: the run is kept
        approvals.unqueue(job["request"], job["id"])
        body = {"error": exc.code, "message": exc.message, "details": {"reference": job["id"], **exc.details}}
        _finish(job, attempt, exc.status, body)
        return
    state, doc, requester = approvals.start_queued(job["request"], job["id"])
    if state == "busy":
        raise TryAgain(f"request {job['request']} is being run by another delivery")
    if state == "claimed":  # the requester may run it now (checked as it started)
        assert doc is not None  # a claimed run comes with its request
        doc = approvals.execute(doc, requester, job["request_id"])
    if doc is None:
        _finish(
            job,
            attempt,
            404,
            {"error": "not_found", "message": "the request no longer exists", "details": {}},
        )
    elif doc["status"] == approvals.ApprovalStatus.DONE:
        _finish(job, attempt, 200, {}, result_from_request=True)
    else:  # the job keeps the requester's masked error; its view asks the request again
        _finish(job, attempt, *approvals.failure(doc, owner=False))


def _finish(
    job: dict[str, Any], attempt: int, status: int, body: dict[str, Any], *, result_from_request: bool = False
) -> None:
    """Store the outcome if this attempt still holds the job (a late attempt changes nothing)."""
    now = store.now()
    if status == 200:
        change: dict[str, Any] = {"status": JobStatus.DONE, "http_status": 200, "finished_at": now}
        if not result_from_request:
            change.update(results.stored("jobs", job["id"], body["result"]))
    else:
        change = {"status": JobStatus.FAILED, "http_status": status, "error": body, "finished_at": now}
    leases.finish(store.collection(collections.TWIN_JOBS).document(job["id"]), JOB, attempt, change)


# -- what callers see ----------------------------------------------------------------------------


def get_visible(caller, job_id: str) -> dict[str, Any]:
    """The job for its caller and the owners of what it ran; 404 for anyone else."""
    job = load(job_id)
    if job is None or not _visible(caller, job):
        raise errors.NotFound(f"job {job_id!r} not found")
    return _settled(job)


def _visible(caller, job: dict[str, Any]) -> bool:
    """A run job is seen by whoever sees its request's outcome (the requester, the owners of
    every endpoint it names); a call job by its caller and the endpoint's owners, while the
    endpoint it called exists."""
    if job["kind"] == "run":
        approval = approvals.load(job["request"])
        return approval is not None and approvals.sees_outcome(caller, approval)
    endpoint = calls.load(job["endpoint"])
    if endpoint is None or not _same_endpoint(job, endpoint):
        return False  # its endpoint was deleted (or its dataset): the job went with it
    return job["caller"] == caller.email or endpoint.owned_by(caller)


def _same_endpoint(job: dict[str, Any], endpoint: calls.Endpoint) -> bool:
    """Whether a call job was queued for this endpoint, not an earlier one at the same path."""
    return job.get("endpoint_generation") == endpoint.generation


def _settled(job: dict[str, Any]) -> dict[str, Any]:
    """A job whose worker stopped and whose message was dead-lettered ends `failed` here."""
    error = {
        "error": "internal",
        "message": "the job's worker stopped and its message was not delivered again (dead-lettered)",
        "details": {"reference": job["id"], "reason": "dead_lettered"},
    }
    ref = store.collection(collections.TWIN_JOBS).document(job["id"])
    return leases.settle(ref, JOB, job, lambda job, now: _failed_change(error, now), grace=ABANDONED_AFTER_S)


def view(job: dict[str, Any], viewer) -> dict[str, Any]:
    """`{"id", "status", "kind", ..., "result"? | "error"?}`; a run job's result and error come
    from its approval, as that viewer may see them."""
    out: dict[str, Any] = {
        k: job.get(k)
        for k in (
            "id",
            "kind",
            "status",
            "endpoint",
            "side",
            "request",
            "caller",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        )
        if k in job
    }
    if job["kind"] == "run" and job["status"] in FINISHED:
        approval = approvals.load(job["request"])
        if approval is not None and approval["status"] in approvals.FINISHED:
            status, body = approvals.answer(approval, viewer)
            out["status"] = JobStatus.DONE if status == 200 else JobStatus.FAILED
            out["http_status"] = status
            out["result" if status == 200 else "error"] = body["result"] if status == 200 else body
            return out
    out["http_status"] = job.get("http_status")
    if job["status"] == JobStatus.DONE:
        out["result"] = results.loaded(job)
    elif job["status"] == JobStatus.FAILED:
        out["error"] = job.get("error")
    return out
