"""Approval requests (SPEC §3 twins, Requests): a researcher's code that calls named twin
endpoints, run once against their private sides after the endpoints' owners approve it.

A request goes pending -> approved | denied, and approved -> running -> done | failed at most
once: the claim that starts a run is a transaction, so two runs at the same moment execute the
code once (an async run is `queued` for its job first). The approval binds the exact code (its
SHA-256), each endpoint's side generations and a hash of each side's settings as they were
approved: a side replaced, its settings changed, or an endpoint deleted and re-created, since
then makes the run a 409 instead of running new code.

The code runs in a sandbox worker like endpoint code, each endpoint bound to its private side
(`ep(...)`, `ep.private(...)`; `ep.mock(...)` too), each of those calls an ordinary twin call of
the requester's (recorded, masked for them). What the requester gets is the result, or an error
that says what kind of failure it was and nothing the code printed or raised; the owners read
all of it in the run record (`run` in the request's view).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import time
import uuid
from enum import StrEnum
from typing import Any

from common import audit, errors
from common.config import settings
from common.identity import authz
from common.logs import log
from common.storage import collections, datasets, jobs, store
from functions.twins import calls, results, sandbox, source
from functions.twins.calls import clip

ID = re.compile(r"[0-9a-f]{32}")


class ApprovalStatus(StrEnum):
    """An approval request's `status`, as stored and answered."""

    PENDING = "pending"  # -> APPROVED | DENIED, by an owner of every endpoint it names
    APPROVED = "approved"  # -> RUNNING at most once (QUEUED first for a job's run)
    DENIED = "denied"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINISHED = (ApprovalStatus.DONE, ApprovalStatus.FAILED)
LEASE_MARGIN_S = 30  # a run still `running` this long past its time limit was interrupted
POLL_S = 0.2
CLAIM_WAIT_S = 5.0  # how long a run that lost its claim to a concurrent one looks for that one
# A run's claim: `running` until its run record's `lease_until`, by that run (its id); single use.
RUN = jobs.Kind(
    lease_ends=lambda doc: (doc.get("run") or {}).get("lease_until"), holder="run.id", attempts=None
)
# A run queued for a job is held by that job (no lease: its worker starts it, or gives it back).
QUEUED = jobs.Kind(
    lease_ends=lambda doc: None, running=ApprovalStatus.QUEUED, holder="run.job", attempts=None
)


def load(approval_id: str) -> dict[str, Any] | None:
    if not ID.fullmatch(approval_id):
        return None
    snap = store.collection(collections.TWIN_REQUESTS).document(approval_id).get()
    return snap.to_dict() if snap.exists else None


def live(doc: dict[str, Any]) -> bool:
    """A request goes with the datasets of the endpoints it names: once one of them is deleted
    (also when a dataset of the same name is made again) nobody sees it, before the purge
    (functions/datasets/purge.py) has reclaimed it."""
    bound = doc.get("endpoint_datasets")
    if bound is None:  # submitted before requests recorded their datasets' generations
        return all(calls.dataset_lives(name, None, doc["created_at"]) for name in doc.get("datasets") or ())
    return all(
        calls.dataset_lives(ds["name"], ds["generation"], doc["created_at"])
        for ds in bound.values()
        if ds is not None
    )


def _named(doc: dict[str, Any], param: str, endpoint: calls.Endpoint | None) -> bool:
    """Whether `endpoint` (the one at the path now) is the endpoint the request named for `param`:
    one that lives, on the dataset it was on when the request was submitted (an endpoint made
    again at the path on that dataset counts; one made on another dataset does not)."""
    if endpoint is None or not endpoint.live():
        return False
    bound = (doc.get("endpoint_datasets") or {}).get(param, "unrecorded")
    if bound == "unrecorded":  # submitted before requests recorded it
        return True
    if bound is None:
        return endpoint.dataset is None
    return endpoint.dataset == bound["name"] and endpoint.doc.get("dataset_generation") == bound["generation"]


def _endpoints(doc: dict[str, Any]) -> list[calls.Endpoint | None]:
    """The endpoints the request names, as they are now (None for one that is gone)."""
    found = [(param, calls.load(path)) for param, path in doc["endpoints"].items()]
    return [endpoint if _named(doc, param, endpoint) else None for param, endpoint in found]


def owns_all(caller, doc: dict[str, Any]) -> bool:
    """Who approves, denies and reads the run record: admins, or owners of every endpoint named."""
    return caller.is_admin or all(e is not None and e.owned_by(caller) for e in _endpoints(doc))


def owns_any(caller, doc: dict[str, Any]) -> bool:
    return caller.is_admin or any(e is not None and e.owned_by(caller) for e in _endpoints(doc))


def visible(caller, doc: dict[str, Any]) -> bool:
    """The requester and the owners of any endpoint it names see a request; nobody else. An owner
    of some of them sees that it exists (a pending request involves their endpoint), not how it
    ran (see `sees_outcome`)."""
    return live(doc) and (doc["requester"] == caller.email or owns_any(caller, doc))


def sees_outcome(caller, doc: dict[str, Any]) -> bool:
    """Who sees a request's result (or error) and its job: the requester, and the owners of every
    endpoint it names (admins): the result may hold data of each of them."""
    return live(doc) and (doc["requester"] == caller.email or owns_all(caller, doc))


def get_visible(caller, approval_id: str) -> dict[str, Any]:
    doc = load(approval_id)
    if doc is None or not visible(caller, doc):
        raise errors.NotFound(f"request {approval_id!r} not found")
    return _settled(doc)


# -- submitting and deciding ---------------------------------------------------------------------


def submit(req, endpoints: dict[str, str], code: str, reason: str, timeout_s: float) -> dict[str, Any]:
    """Store a pending request after checking that the caller may see each endpoint and that the
    code is one function taking exactly the endpoints' names (422 otherwise)."""
    named = {}
    for param, path in endpoints.items():
        endpoint = calls.load(path)
        if endpoint is None or not endpoint.visible_to(req.caller):
            raise errors.ValidationFailed(
                f"twin endpoint {path!r} not found",
                details=[
                    {"loc": ["body", "endpoints", param], "message": "no such endpoint", "type": "not_found"}
                ],
            )
        named[param] = endpoint
    try:
        source.analyse_request(code, list(endpoints), source.allowed_modules_for_endpoints())
    except source.CodeError as exc:
        raise errors.ValidationFailed(
            f"code: {exc}",
            details=[
                {"loc": ["body", "code"], "message": exc.message, "line": exc.line, "type": "code_error"}
            ],
        ) from None
    now = store.now()
    doc = {
        "id": uuid.uuid4().hex,
        "requester": req.caller.email,
        "endpoints": dict(endpoints),
        "datasets": sorted({e.dataset for e in named.values() if e.dataset}),
        # The request goes with these datasets as they are now (see `live`).
        "endpoint_datasets": {
            param: {"name": e.dataset, "generation": e.doc.get("dataset_generation")} if e.dataset else None
            for param, e in named.items()
        },
        "code": code,
        "code_sha256": _sha256(code),
        "reason": reason,
        "timeout_s": timeout_s,
        "status": ApprovalStatus.PENDING,
        "created_at": now,
        "modified_at": now,
    }
    batch = store.db().batch()
    batch.set(store.collection(collections.TWIN_REQUESTS).document(doc["id"]), doc)
    audit.record(batch, req, "twin_request_submit", "twin_request", doc["id"], after=_summary(doc))
    batch.commit()
    return doc


def decide(req, approval_id: str, *, approve: bool, reason: str) -> dict[str, Any]:
    """Approve (binding the code and the endpoints as they are now) or deny a request that has
    not run. Needs ownership of every endpoint it names (403), else 404 when not visible."""
    ref = store.collection(collections.TWIN_REQUESTS).document(approval_id)
    caller = req.caller

    def write(transaction) -> dict[str, Any]:
        snap = ref.get(transaction=transaction) if ID.fullmatch(approval_id) else None
        if snap is None or not snap.exists or not visible(caller, snap.to_dict()):
            raise errors.NotFound(f"request {approval_id!r} not found")
        doc = snap.to_dict()
        if not owns_all(caller, doc):
            raise errors.Forbidden(
                "approving or denying needs admin or manage on the dataset of every endpoint it names"
            )
        if doc["status"] not in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
            raise errors.Conflict(
                f"the request is {doc['status']}; only a request that has not run is decided"
            )
        now = store.now()
        change = {
            "status": ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED,
            "decided_by": caller.email,
            "decided_at": now,
            "decision_reason": reason,
            "approved": _binding(transaction, doc) if approve else None,
            "modified_at": now,
        }
        transaction.update(ref, change)
        action = "twin_request_approve" if approve else "twin_request_deny"
        audit.record(
            transaction,
            req,
            action,
            "twin_request",
            approval_id,
            before={"status": doc["status"]},
            after={"status": change["status"], "reason": reason, "approved": change["approved"]},
        )
        return {**doc, **change}

    return store.transactional(write)


def _binding(transaction, doc: dict[str, Any]) -> dict[str, Any]:
    """What an approval binds: the code's hash, each endpoint's side generations and a hash of
    each side's settings, read in the transaction (never from a cache that may be seconds old)."""
    generations, settings_hashes = {}, {}
    for param, path in doc["endpoints"].items():
        endpoint = _read(transaction, path)
        if not _named(doc, param, endpoint):
            raise errors.Conflict(f"twin endpoint {path!r} no longer exists")
        assert endpoint is not None  # _named: it exists
        generations[param] = _generations(endpoint.doc)
        settings_hashes[param] = _settings_hashes(endpoint.doc, doc["id"])
    return {"code_sha256": doc["code_sha256"], "generations": generations, "settings": settings_hashes}


def _read(transaction, path: str) -> calls.Endpoint | None:
    """The endpoint at `path` as stored, in `transaction` (past the definition cache)."""
    snap = store.collection(collections.TWINS).document(path).get(transaction=transaction)
    return calls.Endpoint(path, snap.to_dict()) if snap.exists else None


def _generations(endpoint_doc: dict[str, Any]) -> dict[str, str]:
    """What identifies an endpoint's definition: each side's generation (new when it is replaced)."""
    return {name: side["generation"] for name, side in sorted(endpoint_doc["sides"].items())}


def _settings_hashes(endpoint_doc: dict[str, Any], approval_id: str) -> dict[str, str]:
    """Each side's settings as the approval binds them: a hash (salted with the request's id),
    never the settings, which are secrets. A settings-only PATCH keeps the side's generation."""
    return {
        name: hashlib.sha256(
            (approval_id + json.dumps(side.get("settings") or {}, sort_keys=True, default=str)).encode()
        ).hexdigest()
        for name, side in sorted(endpoint_doc["sides"].items())
    }


def _changed(doc: dict[str, Any], param: str, endpoint_doc: dict[str, Any]) -> str | None:
    """How the endpoint of `param` differs from the one approved (its sides replaced or
    re-created; its settings changed), or None."""
    bound = doc.get("approved") or {}
    path = doc["endpoints"][param]
    if _generations(endpoint_doc) != (bound.get("generations") or {}).get(param):
        return f"twin endpoint {path!r} was replaced after the approval; ask for a new approval"
    if _settings_hashes(endpoint_doc, doc["id"]) != (bound.get("settings") or {}).get(param):
        return f"the settings of twin endpoint {path!r} changed after the approval; ask for a new approval"
    return None


def _requester_now(doc: dict[str, Any], via: str):
    """The requester as their record is now, read past the per-instance role cache (a grant
    revoked or an account disabled on another instance counts at once): 403 when disabled."""
    authz.forget_user(doc["requester"])
    for name in doc.get("datasets") or ():
        datasets.forget(name)
    return authz.caller_for(doc["requester"], via)


def _refusal(transaction, doc: dict[str, Any], requester) -> errors.ApiError | None:
    """Why `requester` may not run the approved request now, or None: 404 for an endpoint they
    may no longer see (e.g. a grant revoked after the approval); 409 when the approval no longer
    holds (the code, or an endpoint replaced, re-created, gone or its settings changed)."""
    bound = doc.get("approved") or {}
    if bound.get("code_sha256") != _sha256(doc["code"]):
        return errors.Conflict("the code is not the code that was approved")
    for param, path in doc["endpoints"].items():
        endpoint = _read(transaction, path)
        if endpoint is None or not _named(doc, param, endpoint):
            return errors.Conflict(f"twin endpoint {path!r} was deleted after the approval")
        if not endpoint.visible_to(requester):
            return errors.NotFound(f"twin endpoint {path!r} not found: the requester may no longer see it")
        why = _changed(doc, param, endpoint.doc)
        if why:
            return errors.Conflict(why)
    return None


# A run refused when it was to start: the outcome's status is the error's code.
REFUSED = {"forbidden": 403, "not_found": 404, "conflict": 409}


def _refused(exc: errors.ApiError) -> dict[str, Any]:
    return {"status": exc.code, "message": exc.message}


# -- running -------------------------------------------------------------------------------------


def run(req, approval_id: str) -> tuple[int, dict[str, Any]]:
    """Run an approved request once, for its requester: (status, body). A request that has run
    answers its stored outcome; one running elsewhere is waited for."""
    contained()
    try:
        state, doc, requester = _claim(req, approval_id, job_id=None)
    except errors.Unavailable as exc:
        # The claim lost to another one on the same request (a concurrent run of the requester's):
        # that run's answer is this one's too, once it has claimed it.
        doc = _claimed_elsewhere(req, approval_id, exc)
        state = "finished" if doc["status"] in FINISHED else doc["status"]
    if state == "claimed":
        doc = execute(doc, requester, req.id)
    elif state != "finished":
        doc = _wait(approval_id, doc)
    return answer(doc, req.caller)


def _claimed_elsewhere(req, approval_id: str, contended: errors.Unavailable) -> dict[str, Any]:
    """After a claim gave up on contention: the request, if the requester's concurrent run has
    claimed it meanwhile (running or finished); the contention error otherwise."""
    if (contended.details or {}).get("reason") != "contention":
        raise contended
    deadline = time.monotonic() + CLAIM_WAIT_S
    while time.monotonic() < deadline:
        doc = load(approval_id)
        if doc is None or doc["requester"] != req.caller.email:
            break
        if doc["status"] in ("running", "queued", *FINISHED):
            return doc
        time.sleep(POLL_S)
    raise contended


def queue_run(req, approval_id: str, job_id: str) -> tuple[str, dict[str, Any]]:
    """Claim the single run for a job (status `queued`): ("claimed", doc); or the request's state
    when it was claimed before ("queued"/"running" with its job, or "finished"). The job's worker
    checks the requester and the approval again when it starts the run."""
    contained()
    state, doc, _ = _claim(req, approval_id, job_id=job_id)
    return state, doc


def contained() -> None:
    """503 where this instance cannot contain request code (functions/twins/sandbox.py): the single run
    is not used up, and nothing runs without the boundary."""
    held = sandbox.boundary()
    if not held.ok:
        raise errors.Unavailable(
            f"request code cannot be run on this instance: {held.reason}",
            retry_after=60,
            details={"reason": "sandbox_unavailable"},
        )


def _claim(req, approval_id: str, *, job_id: str | None) -> tuple[str, dict[str, Any], Any]:
    """(state, the request, the requester as they are now when "claimed"). An approved request
    is claimed only if its requester may run it now (403, 404, 409 otherwise: nothing runs)."""
    ref = store.collection(collections.TWIN_REQUESTS).document(approval_id)
    caller = req.caller

    def claim(transaction) -> tuple[str, dict[str, Any], Any]:
        snap = ref.get(transaction=transaction) if ID.fullmatch(approval_id) else None
        if snap is None or not snap.exists or not visible(caller, snap.to_dict()):
            raise errors.NotFound(f"request {approval_id!r} not found")
        doc = snap.to_dict()
        if doc["requester"] != caller.email:
            raise errors.Forbidden("only the requester runs a request")
        status = doc["status"]
        if status == ApprovalStatus.PENDING:
            raise errors.Conflict("the request waits for its owners' approval")
        if status == ApprovalStatus.DENIED:
            reason = f": {doc['decision_reason']}" if doc.get("decision_reason") else ""
            raise errors.Conflict(f"the request was denied{reason}")
        if status != ApprovalStatus.APPROVED:
            return ("finished" if status in FINISHED else status), doc, None
        requester = _requester_now(doc, caller.via)
        refused = _refusal(transaction, doc, requester)
        if refused is not None:
            raise refused
        now = store.now()
        run_record: dict[str, Any] = {"id": uuid.uuid4().hex, "request_id": req.id, "job": job_id}
        if job_id is None:
            run_record.update(started_at=now, lease_until=_lease(doc, now))
        change = {
            "status": ApprovalStatus.QUEUED if job_id else ApprovalStatus.RUNNING,
            "run": run_record,
            "modified_at": now,
        }
        transaction.update(ref, change)
        audit.record(transaction, req, "twin_request_run", "twin_request", approval_id, after={"job": job_id})
        return "claimed", {**doc, **change}, requester

    return store.transactional(claim)


def unqueue(approval_id: str, job_id: str) -> None:
    """Give the run back (approved again) when its job could not be queued, if it still holds it."""
    change = {"status": ApprovalStatus.APPROVED, "run": None, "modified_at": store.now()}
    jobs.finish(store.collection(collections.TWIN_REQUESTS).document(approval_id), QUEUED, job_id, change)


def start_queued(approval_id: str, job_id: str) -> tuple[str, dict[str, Any] | None, Any]:
    """The job's worker starts the queued run: ("claimed", doc, requester) to execute it now for
    the requester as they are now; ("finished", doc, None) when it has run, or may not run now
    (the requester disabled 403, an endpoint they may no longer see 404, the approval no longer
    holding 409: it ends `failed` with that error and nothing runs); ("busy", doc, None) while
    another delivery runs it; ("gone", None, None). A run that started and was interrupted is
    not run again (single use): it ends `failed`."""
    requester = None

    def start(transaction, doc: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
        nonlocal requester
        try:
            requester = _requester_now(doc, "job")
            refused = _refusal(transaction, doc, requester)
        except errors.Forbidden as exc:  # the account was disabled since the run was queued
            refused = exc
        if refused is not None:
            requester = None
            return _failed(_refused(refused), now)
        return {"run": {**doc["run"], "started_at": now, "lease_until": _lease(doc, now)}, "modified_at": now}

    claimed = jobs.claim(
        store.collection(collections.TWIN_REQUESTS).document(approval_id),
        RUN,
        start=start,
        abandon=_interrupted,
        claimable=lambda doc: (doc.get("run") or {}).get("job") == job_id,
    )
    if claimed.outcome == jobs.Outcome.CLAIMED:
        return "claimed", claimed.record, requester
    state = {jobs.Outcome.HELD: "busy", jobs.Outcome.GONE: "gone"}.get(claimed.outcome, "finished")
    return state, claimed.record, None


def _lease(doc: dict[str, Any], now: datetime.datetime) -> datetime.datetime:
    return now + datetime.timedelta(seconds=float(doc["timeout_s"]) + LEASE_MARGIN_S)


def _failed(outcome: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    return {"status": ApprovalStatus.FAILED, "outcome": outcome, "finished_at": now, "modified_at": now}


def _interrupted(doc: dict[str, Any], now: datetime.datetime) -> dict[str, Any]:
    """A run whose instance stopped: it ends `failed` and is not run again (single use)."""
    return _failed({"status": "interrupted"}, now)


def execute(doc: dict[str, Any], requester, request_id: str) -> dict[str, Any]:
    """Run the claimed request's code, each endpoint bound as approved, and store the outcome;
    the request as stored."""
    made: list[str] = []  # the call records of the endpoint calls the code makes
    services = {}
    for param, path in doc["endpoints"].items():
        endpoint = _as_approved(doc, param, path)
        if endpoint is None:  # changed since the claim: each call of it fails
            services[param] = services[f"{param}.private"] = services[f"{param}.mock"] = _gone(path)
            continue
        default = "public" if endpoint.kind == "public" else "private"
        services[param] = services[f"{param}.private"] = _bound(
            endpoint, default, doc, requester, request_id, made
        )
        services[f"{param}.mock"] = _bound(
            endpoint, "public" if endpoint.kind == "public" else "mock", doc, requester, request_id, made
        )
    outcome = calls.run_code(
        sandbox.Program(code=doc["code"]),
        {},
        user={"email": requester.email},
        state=sandbox.NoState(),
        timeout_s=float(doc["timeout_s"]),
        services=services,
        handles=list(doc["endpoints"]),
    )
    return finish(doc, outcome, made)


def _bound(
    endpoint: calls.Endpoint,
    side: str,
    doc: dict[str, Any],
    requester,
    request_id: str,
    made: list[str],
    *,
    origin: str = "request",
    rate_limited: bool = False,  # the owners approved a run's calls
):
    """One side of an endpoint as the request's code calls it: an ordinary call of the
    requester's, answered as they may see it (an error is an EndpointError in the code)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if args:
            raise TypeError(f"{endpoint.path} takes keyword arguments only")
        try:
            answer = calls.invoke(
                endpoint,
                side,
                requester,
                kwargs,
                request_id,
                origin=f"{origin}:{doc['id']}",
                rate_limited=rate_limited,
            )
        except errors.ApiError as exc:
            raise sandbox.ServiceError(exc.message, exc.status) from None
        made.append(answer.reference)
        if not answer.ok:
            raise sandbox.ServiceError(answer.body["message"], answer.status)
        return answer.body["result"]

    return call


def _as_approved(doc: dict[str, Any], param: str, path: str) -> calls.Endpoint | None:
    """The endpoint as stored now, read past the per-instance definition cache (which may hold a
    definition seconds old), when its sides and settings are still the ones approved; None
    otherwise."""
    endpoint = _read(None, path)
    if endpoint is None or not _named(doc, param, endpoint):
        return None
    return endpoint if _changed(doc, param, endpoint.doc) is None else None


def try_on_mock(req, doc: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Run a request's code for an owner deciding it, each endpoint (`ep(...)`, `ep.private(...)`
    and `ep.mock(...)` alike) bound to its MOCK side, in a sandbox worker as a run is: its
    status, its approval and its single run are untouched. Each call is an ordinary mock call
    of the owner's (rate limited, recorded with origin `try:<id>`). The owner reads everything:
    (200, {"result", "stdout", "stderr", "calls"}), or (status, an error envelope with the code's
    own message and traceback)."""
    contained()
    made: list[str] = []
    services = {}
    for param, path in doc["endpoints"].items():
        endpoint = calls.load(path)
        if endpoint is None:
            services[param] = services[f"{param}.private"] = services[f"{param}.mock"] = _gone(path)
            continue
        mock = "public" if endpoint.kind == "public" else "mock"
        services[param] = services[f"{param}.private"] = services[f"{param}.mock"] = _bound(
            endpoint, mock, doc, req.caller, req.id, made, origin="try", rate_limited=True
        )
    outcome = calls.run_code(
        sandbox.Program(code=doc["code"]),
        {},
        user={"email": req.caller.email},
        state=sandbox.NoState(),
        timeout_s=float(doc["timeout_s"]),
        services=services,
        handles=list(doc["endpoints"]),
    )
    shown = {"stdout": clip(outcome.stdout), "stderr": clip(outcome.stderr), "calls": made}
    if outcome.status == "ok":
        return 200, {"result": outcome.result, **shown}
    tried = {
        **doc,
        "outcome": {"status": outcome.status, "message": outcome.message, "error_type": outcome.error_type},
    }
    status, body = failure(tried, owner=True)
    body["details"].update(shown, traceback=clip(outcome.traceback))
    return status, body


def _gone(path: str):

    def call(*args: Any, **kwargs: Any) -> Any:
        raise sandbox.ServiceError(f"twin endpoint {path!r} changed or was deleted after the approval", 409)

    return call


def finish(doc: dict[str, Any], outcome, made: list[str]) -> dict[str, Any]:
    """Store the run's outcome (the result in Cloud Storage when large), if this run still holds
    the claim; the request as stored."""
    now = store.now()
    change: dict[str, Any] = {
        "status": ApprovalStatus.DONE if outcome.status == "ok" else ApprovalStatus.FAILED,
        "finished_at": now,
        "modified_at": now,
        "outcome": {
            "status": outcome.status,
            "message": clip(outcome.message),
            "error_type": outcome.error_type,
            "traceback": clip(outcome.traceback),
            "stdout": clip(outcome.stdout),
            "stderr": clip(outcome.stderr),
            "duration_ms": round(float(outcome.duration_ms or 0.0), 3),
            "calls": made,
        },
    }
    if outcome.status == "ok":
        try:
            change.update(results.stored("requests", doc["id"], outcome.result))
        except Exception as exc:  # the run is single use: its outcome is stored all the same
            log("ERROR", f"the result of twin request {doc['id']} was not stored", exc=exc)
            change["status"] = ApprovalStatus.FAILED
            change["outcome"].update(status="result_not_stored", message=f"{type(exc).__name__}: {exc}")
    ref = store.collection(collections.TWIN_REQUESTS).document(doc["id"])
    # Not written when settled meanwhile (e.g. as interrupted); the request as stored then.
    return jobs.finish(ref, RUN, doc["run"]["id"], change).record or {**doc, **change}


def _wait(approval_id: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The request once the run in progress elsewhere has finished; 409 when it does not finish
    within the run's time limit (its result is then read with GET)."""
    deadline = time.monotonic() + float(doc["timeout_s"]) + 5
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        doc = _settled(load(approval_id) or doc)
        if doc["status"] in FINISHED:
            return doc
    raise errors.Conflict(
        f"the request is {doc['status']}; GET /twins/requests/{approval_id} shows its result when it is done"
    )


def _settled(doc: dict[str, Any]) -> dict[str, Any]:
    """A run still `running` well past its lease was interrupted (its instance stopped): it ends
    `failed` and is not run again."""
    return jobs.settle(
        store.collection(collections.TWIN_REQUESTS).document(doc["id"]), RUN, doc, _interrupted
    )


# -- what callers see ----------------------------------------------------------------------------


def answer(doc: dict[str, Any], viewer) -> tuple[int, dict[str, Any]]:
    """The run's answer for `viewer`: (200, {"result"}) or (status, error envelope fields)."""
    if doc["status"] == ApprovalStatus.DONE:
        return 200, {"result": results.loaded(doc)}
    if doc["status"] != ApprovalStatus.FAILED:
        return 202, {"status": doc["status"]}
    return failure(doc, owns_all(viewer, doc))


def failure(doc: dict[str, Any], owner: bool) -> tuple[int, dict[str, Any]]:
    """A failed run as an error: what kind of failure it was; the code's own text only for owners
    (the requester wrote the code, but what it raised or printed may hold private data)."""
    outcome = doc.get("outcome") or {}
    kind = outcome.get("status", "error")
    details: dict[str, Any] = {"reference": doc["id"], "reason": kind}
    if kind == "timeout":
        return 504, _envelope(
            "timeout",
            f"the request's code did not finish within {doc['timeout_s']} s; its work was stopped",
            details,
        )
    if kind in REFUSED:  # refused when it was to start: nothing ran
        return REFUSED[kind], _envelope(kind, outcome.get("message") or "the run was refused", details)
    fixed = {
        "interrupted": "the run was interrupted before it finished; a request runs at most once",
        "memory": f"the request's code used more than {settings().twin_memory_mb} MiB of memory and was stopped",
        "result_too_large": "the request's result is too large to return",
        "not_serializable": "the request's result is not JSON-serializable",
        "result_not_stored": "the run finished but its result could not be stored; "
        "a request runs once, so submit it again",
    }
    message = fixed.get(kind, "the request's code failed")
    if owner and outcome.get("message"):
        kind_text = f"{outcome['error_type']}: " if outcome.get("error_type") else ""
        message += f": {kind_text}{outcome['message']}"
    elif kind not in fixed:
        message += f"; its owners can look it up by the reference {doc['id']}"
    return 500, _envelope("endpoint_error", message, details)


def _envelope(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"error": code, "message": message, "details": details}


def view(doc: dict[str, Any], viewer) -> dict[str, Any]:
    """A request as `viewer` sees it: its result or error for the requester and the owners of
    every endpoint it names (admins too), who also read the run record (`run`: the captured
    output); an owner of only some of them sees the request without either."""
    out = {
        k: doc.get(k)
        for k in (
            "id",
            "status",
            "requester",
            "endpoints",
            "code",
            "reason",
            "timeout_s",
            "created_at",
            "decided_by",
            "decided_at",
            "decision_reason",
            "finished_at",
        )
    }
    record = doc.get("run") or {}
    if record:
        out["job"] = record.get("job")
        out["started_at"] = record.get("started_at")
    if not sees_outcome(viewer, doc):
        return out
    owner = owns_all(viewer, doc)
    if doc["status"] == ApprovalStatus.DONE:
        out["result"] = results.loaded(doc)
    elif doc["status"] == ApprovalStatus.FAILED:
        out["error"] = failure(doc, owner)[1]
    if doc.get("outcome") and owner:
        out["run"] = doc["outcome"]
    return out


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry keeps of a request (its code by hash: the request holds the source)."""
    return {k: doc[k] for k in ("requester", "endpoints", "code_sha256", "reason", "timeout_s")}


def _sha256(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def listed(caller, status: str | None = None) -> list[dict[str, Any]]:
    """The requests `caller` sees, newest first: their own, and (owners) those naming an endpoint
    on a dataset they manage; admins see all."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    coll = store.collection(collections.TWIN_REQUESTS)
    if caller.is_admin:
        queries = [coll]
    else:
        managed = sorted(ds for ds in caller.datasets if caller.can_manage(ds))
        queries = [coll.where(filter=FieldFilter("requester", "==", caller.email))]
        queries += [
            coll.where(filter=FieldFilter("datasets", "array_contains_any", chunk))
            for chunk in store.chunks(managed, 30)
        ]
    found: dict[str, dict[str, Any]] = {}
    for query in queries:
        for snap in store.stream(query):
            found.setdefault(snap.id, snap.to_dict())
    docs = [
        _settled(d)
        for d in found.values()
        if (status is None or d["status"] == status) and visible(caller, d)
    ]
    return sorted(docs, key=lambda d: d["created_at"], reverse=True)
