"""twins: twin endpoints, API bridges to private data (SPEC §3 twins).

An endpoint is a `mock` side anyone with access may call (fake data, to learn the shape and
prototype) and a `private` side with the real data that only its owners run directly; or one
`public` side. Each side is the Python source of one function plus helpers and secret settings,
analysed when it is defined and run in sandbox workers when it is called (functions/twins/calls.py).
Definitions live in `twins/{path}`; each side's state under its generation id (functions/twins/state.py).
Approval requests (functions/twins/approvals.py) run researchers' code against private sides once
their owners approve it; `?async=1` queues a call or a run as a job (functions/twins/jobs.py) that
the `job_work` worker carries out from Pub/Sub.

This module is the route table and its handlers; what the routes read and answer is in
functions/twins/models.py, their route checks in functions/twins/checks.py.
"""

from __future__ import annotations

import uuid
from typing import Any

from common import audit, errors, jsonio
from common.identity import auth, authz
from common.models import Paging
from common.storage import collections, datasets, store
from common.web import workers
from common.web.http import App, json_response, paged, public_items, streamed, trusted
from functions.twins import approvals, calls, jobs, sandbox, source
from functions.twins.checks import (
    APPROVAL_OWNERS,
    APPROVAL_VISIBLE,
    DEFAULT_SIDE,
    JOB_VISIBLE,
    MOCK_SIDE,
    OWNERS,
    PRIVATE_SIDE,
    REQUESTER,
    VISIBLE,
)
from functions.twins.models import (
    ApprovalCreate,
    ApprovalPublic,
    ApprovalsQuery,
    AsyncQuery,
    CallBody,
    CallPublic,
    CallResultPublic,
    DecisionCreate,
    EndpointCreate,
    EndpointPublic,
    EndpointQuery,
    EndpointUpdate,
    SideCreate,
    TryPublic,
    TwinJobPublic,
)
from functions.twins.state import FirestoreState, delete_generation

app = App(
    "twins",
    "Twin endpoints: mock and private sides of an API bridge to private data.",
    authenticate=auth.authenticate,
)
sandbox.warm_up()  # the sandbox boundary is proved (and logged) as the instance boots

SIDES = ("mock", "private", "public")
# What a call answers beyond the pipeline's: 202 as a job (?async=1), the rate limits (429),
# its code failing and its time limit (functions/twins/calls.py); a PublicError's own status as well.
CALL_ANSWERS = (202, 429, 500, 504)


# -- definitions --------------------------------------------------------------------------------


def _analysed(side: SideCreate, name: str):
    """The side's definition (name, parameters); bad source or a forbidden import is 422 with the line."""
    try:
        return source.analyse(side.code, list(side.helpers), source.allowed_modules_for_endpoints())
    except source.CodeError as exc:
        raise errors.ValidationFailed(
            f"{name}: {exc}",
            details=[
                {
                    "loc": ["body", name, "code"],
                    "message": exc.message,
                    "line": exc.line,
                    "type": "code_error",
                }
            ],
        ) from None


def _same_parameters(mock, private) -> None:
    if not source.same_parameters(mock, private):
        raise errors.ValidationFailed(
            "mock and private must declare the same parameters",
            details=[
                {
                    "loc": ["body"],
                    "message": "mock and private parameters differ",
                    "type": "parameters_differ",
                    "mock": mock.parameters,
                    "private": private.parameters,
                }
            ],
        )


def _stored_side(side: SideCreate, definition) -> dict[str, Any]:
    """A side as stored; a new generation id, so its state starts empty."""
    return {
        "code": side.code,
        "helpers": list(side.helpers),
        "settings": side.settings,
        "name": definition.name,
        "generation": uuid.uuid4().hex,
        "replaced_at": store.now(),
    }


def _summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What an audit entry keeps of a definition: no settings, no source (managers read audit logs)."""
    return {
        "path": doc["path"],
        "kind": doc["kind"],
        "dataset": doc.get("dataset"),
        "description": doc.get("description"),
        "timeout_s": doc.get("timeout_s"),
        "rate_limit": doc.get("rate_limit"),
        "hide_mock_definition": doc.get("hide_mock_definition"),
        "generations": {name: side["generation"] for name, side in doc["sides"].items()},
    }


def view(endpoint: calls.Endpoint, *, full: bool = False) -> dict[str, Any]:
    """The endpoint as callers see it: never settings, state or private source (those only
    with `full`, for admins)."""
    doc = endpoint.doc
    out = {
        k: doc.get(k)
        for k in (
            "path",
            "description",
            "kind",
            "dataset",
            "parameters",
            "timeout_s",
            "rate_limit",
            "hide_mock_definition",
            "created_at",
            "modified_at",
        )
    }
    shown = "public" if doc["kind"] == "public" else "mock"
    if not doc.get("hide_mock_definition"):
        side = doc["sides"][shown]
        out[shown] = {"code": side["code"], "helpers": side.get("helpers", [])}
    if full:
        out["sides"] = {
            name: {
                "code": side["code"],
                "helpers": side.get("helpers", []),
                "settings": side.get("settings", {}),
                "generation": side["generation"],
                "replaced_at": side.get("replaced_at"),
                "state": FirestoreState(side["generation"]).items(),
            }
            for name, side in doc["sides"].items()
        }
    return out


@app.post(
    "/twins", check=authz.ADMIN, body=EndpointCreate, status=201, answers=(409,), response=EndpointPublic
)
def create(req):
    """Create an endpoint (201 with its view); 409 when the path is taken (by an endpoint whose
    dataset still exists: one of a deleted dataset is replaced, its state dropped)."""
    body: EndpointCreate = req.body
    record = datasets.record(body.dataset) if body.dataset is not None else None
    if body.dataset is not None and record is None:
        raise errors.ValidationFailed(
            f"dataset {body.dataset!r} does not exist",
            details=[{"loc": ["body", "dataset"], "message": "no such dataset", "type": "not_found"}],
        )
    if body.public is not None:
        definition = _analysed(body.public, "public")
        sides = {"public": _stored_side(body.public, definition)}
    else:
        assert body.mock is not None and body.private is not None  # EndpointCreate's validator: both sides
        definition, private = _analysed(body.mock, "mock"), _analysed(body.private, "private")
        _same_parameters(definition, private)
        sides = {"mock": _stored_side(body.mock, definition), "private": _stored_side(body.private, private)}
    now = store.now()
    doc = {
        "path": body.path,
        # The endpoint's own id and its dataset's: call records and jobs are bound to the first,
        # the endpoint itself to the second (it goes with its dataset, as the dataset's data does).
        "generation": uuid.uuid4().hex,
        "description": body.description,
        "kind": "public" if body.public else "twin",
        "dataset": body.dataset,
        "dataset_generation": datasets.generation(record),
        "timeout_s": body.timeout_s,
        "rate_limit": body.rate_limit.model_dump() if body.rate_limit else None,
        "hide_mock_definition": body.hide_mock_definition,
        "parameters": definition.parameters,
        "sides": sides,
        "created_at": now,
        "created_by": req.caller.email,
        "modified_at": now,
        "modified_by": req.caller.email,
    }
    ref = store.collection(collections.TWINS).document(body.path)

    def write(transaction) -> dict[str, Any] | None:
        snap = ref.get(transaction=transaction)
        old = snap.to_dict() if snap.exists else None
        if old is not None and calls.Endpoint(body.path, old).live():
            raise errors.Conflict(f"twin endpoint {body.path!r} exists; PATCH it or DELETE it first")
        transaction.set(ref, doc)
        audit.record(
            transaction, req, "twin_create", "twin", body.path, dataset=body.dataset, after=_summary(doc)
        )
        return old

    replaced = store.transactional(write)
    calls.forget(body.path)
    for side in (replaced or {}).get("sides", {}).values():  # of a deleted dataset's endpoint
        delete_generation(side["generation"])
    return view(calls.Endpoint(body.path, doc))


@app.patch("/twins/<path>", check=authz.ADMIN, body=EndpointUpdate, response=EndpointPublic)
def update(req, path):
    """Replace sides, description, timeout_s, rate_limit, hide_mock_definition or settings.
    A replaced side's state starts empty; the other side and the visibility are kept."""
    body: EndpointUpdate = req.body
    given = body.model_fields_set
    new_sides = {name: getattr(body, name) for name in SIDES if getattr(body, name) is not None}
    analysed = {name: _analysed(side, name) for name, side in new_sides.items()}
    ref = store.collection(collections.TWINS).document(path)
    result: dict[str, Any] = {}

    def write(transaction) -> None:
        snap = ref.get(transaction=transaction) if calls.valid_path(path) else None
        if snap is None or not snap.exists or not calls.Endpoint(path, snap.to_dict()).visible_to(req.caller):
            raise errors.NotFound(f"twin endpoint {path!r} not found")
        old = snap.to_dict()
        doc = {**old, "sides": dict(old["sides"])}
        wrong = set(new_sides) - set(doc["sides"])
        if wrong:
            raise errors.ValidationFailed(f"a {doc['kind']} endpoint has no side {sorted(wrong)[0]!r}")
        for name, side in new_sides.items():
            doc["sides"][name] = _stored_side(side, analysed[name])
        if doc["kind"] == "twin" and new_sides:
            mine = {
                name: analysed.get(name) or source.Definition(doc["sides"][name]["name"], old["parameters"])
                for name in ("mock", "private")
            }
            _same_parameters(mine["mock"], mine["private"])
        if new_sides:
            doc["parameters"] = next(iter(analysed.values())).parameters
        for name, values in (body.settings or {}).items():
            if name not in doc["sides"]:
                raise errors.ValidationFailed(f"a {doc['kind']} endpoint has no side {name!r}")
            if name in new_sides:
                raise errors.ValidationFailed(
                    f"settings of {name!r} are given twice (in the side and in settings)"
                )
            doc["sides"][name] = {**doc["sides"][name], "settings": values}
        for field in ("description", "timeout_s", "hide_mock_definition"):
            if field in given and getattr(body, field) is not None:
                doc[field] = getattr(body, field)
        if "rate_limit" in given:
            doc["rate_limit"] = body.rate_limit.model_dump() if body.rate_limit else None
        doc["modified_at"], doc["modified_by"] = store.now(), req.caller.email
        transaction.set(ref, doc)
        audit.record(
            transaction,
            req,
            "twin_update",
            "twin",
            path,
            dataset=doc.get("dataset"),
            before=_summary(old),
            after=_summary(doc),
        )
        result.update(old=old, new=doc)

    store.transactional(write)
    calls.forget(path)
    for name in new_sides:
        delete_generation(result["old"]["sides"][name]["generation"])
    return view(calls.Endpoint(path, result["new"]))


@app.delete("/twins/<path>", check=authz.ADMIN, status=204)
def remove(req, path):
    """Delete an endpoint and its state. Its call records and jobs are no longer shown, also not
    for a new endpoint at the path (they expire on their own)."""
    endpoint = calls.load(path)
    if endpoint is None or not endpoint.visible_to(req.caller):
        raise errors.NotFound(f"twin endpoint {path!r} not found")
    ref = store.collection(collections.TWINS).document(path)
    audit.delete_existing(
        req,
        ref,
        missing=f"twin endpoint {path!r} not found",
        action="twin_delete",
        target_type="twin",
        target_id=path,
        dataset=endpoint.dataset,
        before=lambda snap: _summary(snap.to_dict()),
    )
    calls.forget(path)
    for side in endpoint.doc["sides"].values():
        delete_generation(side["generation"])
    return None


@app.get("/twins", check=authz.AUTHENTICATED, response=list[EndpointPublic])
def list_endpoints(req):
    """The endpoints the caller may see (their dataset readable, or none), as views."""
    snaps = store.stream(store.collection(collections.TWINS).order_by("__name__"))
    endpoints = (calls.Endpoint(s.id, s.to_dict()) for s in snaps)
    return streamed(
        jsonio.stream_array(public_items(req, (view(e) for e in endpoints if e.visible_to(req.caller))))
    )


@app.get("/twins/<path>", check=VISIBLE, query=EndpointQuery, response=EndpointPublic)
def get_endpoint(req, path, endpoint, side):
    """The endpoint's view; `?full=true` (admins) adds each side's source, settings and state."""
    if req.query.full:
        if not req.caller.is_admin:
            raise errors.Forbidden("full=true needs the admin role")
        return view(endpoint, full=True)
    return view(endpoint)


def _async(req) -> bool:
    return req.query.run_async


def _call(req, endpoint, side, asked_side: str | None):
    args = req.body or {}
    if _async(req):
        calls.admit(endpoint, req.caller, args)
        return jobs.accepted(jobs.submit_call(req, endpoint, asked_side, args))
    with calls.running(req.caller):
        answer = calls.invoke(endpoint, side, req.caller, args, req.id)
    if answer.ok:
        return answer.body
    return json_response({**answer.body, "request_id": req.id}, answer.status, answer.headers)


@app.post(
    "/twins/<path>",
    check=DEFAULT_SIDE,
    body=CallBody,
    body_required=False,
    query=AsyncQuery,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_default(req, path, endpoint, side):
    """Call the endpoint with `{kwarg: value}`: the private side for its owners, the mock side
    for everyone else (a public endpoint's one side) -> `{"result"}`."""
    return _call(req, endpoint, side, None)


@app.post(
    "/twins/<path>/mock",
    check=MOCK_SIDE,
    body=CallBody,
    body_required=False,
    query=AsyncQuery,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_mock(req, path, endpoint, side):
    """Call the mock side -> `{"result"}`."""
    return _call(req, endpoint, side, "mock")


@app.post(
    "/twins/<path>/private",
    check=PRIVATE_SIDE,
    body=CallBody,
    body_required=False,
    query=AsyncQuery,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_private(req, path, endpoint, side):
    """Call the private side (owners only) -> `{"result"}`."""
    return _call(req, endpoint, side, "private")


@app.get("/twins/<path>/calls", check=OWNERS, query=Paging, response=list[CallPublic])
def list_calls(req, path, endpoint, side):
    """The endpoint's call records, newest first, with the captured output (owners); not those
    of an earlier endpoint at the same path."""
    calls.flush_records()  # this instance's latest calls are in the list
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    coll = store.collection(collections.TWIN_CALLS)
    if endpoint.generation is not None:
        query = coll.where(filter=FieldFilter("endpoint_generation", "==", endpoint.generation))
    else:  # made before endpoints had generations: the records since it was made
        query = coll.where(filter=FieldFilter("endpoint", "==", path))
        if endpoint.doc.get("created_at") is not None:
            query = query.where(filter=FieldFilter("at", ">=", endpoint.doc["created_at"]))
    query = query.order_by("at", direction=firestore.Query.DESCENDING)
    limit = req.query.limit
    page = store.page(query, coll, limit=limit, cursor=req.query.cursor)
    # Call records are written here only (functions/twins/calls.py): no pydantic round trip.
    return paged(req, page, lambda snap: trusted(CallPublic, snap.to_dict()), limit)


# -- approval requests (the HTTP paths' `/twins/requests`; `approval` in the code) ---------------
# Each route keeps its operation id (`submit_request`, ...): the OpenAPI document is the contract.


@app.post(
    "/twins/requests",
    check=authz.AUTHENTICATED,
    body=ApprovalCreate,
    status=201,
    response=ApprovalPublic,
    operation_id="submit_request",
)
def submit_approval(req):
    """Submit code for approval: `{"endpoints": {param: path}, "code", "reason"?, "timeout_s"?}`
    -> 201 the request, `pending`. The caller must see every endpoint named (422 otherwise)."""
    body: ApprovalCreate = req.body
    approval = approvals.submit(req, body.endpoints, body.code, body.reason, body.timeout_s)
    return approvals.view(approval, req.caller)


@app.get(
    "/twins/requests",
    check=authz.AUTHENTICATED,
    query=ApprovalsQuery,
    response=list[ApprovalPublic],
    operation_id="list_requests",
)
def list_approvals(req):
    """The caller's requests, and those naming an endpoint the caller owns (admins: all), newest first."""
    wanted = req.query.status
    return [approvals.view(approval, req.caller) for approval in approvals.listed(req.caller, wanted)]


@app.get(
    "/twins/requests/<request_id>",
    check=APPROVAL_VISIBLE,
    response=ApprovalPublic,
    operation_id="get_request",
)
def get_approval(req, request_id, approval):
    """The request: status, code, decision, and when it has run its result or error (for the
    requester and the owners of every endpoint it names, who also read the run record `run`:
    captured output, error, the endpoint calls it made). An owner of only some of its endpoints
    sees the request without its result, error or run record."""
    return approvals.view(approval, req.caller)


@app.post(
    "/twins/requests/<request_id>/approve",
    check=APPROVAL_OWNERS,
    body=DecisionCreate,
    body_required=False,
    answers=(409,),
    response=ApprovalPublic,
    operation_id="approve_request",
)
def approve(req, request_id, approval):
    """Approve the request as its code and endpoints are now (`{"reason"?}`); 409 once it has run."""
    return _decide(req, approval["id"], approve=True)


@app.post(
    "/twins/requests/<request_id>/deny",
    check=APPROVAL_OWNERS,
    body=DecisionCreate,
    body_required=False,
    answers=(409,),
    response=ApprovalPublic,
    operation_id="deny_request",
)
def deny(req, request_id, approval):
    """Deny the request (`{"reason"?}`); 409 once it has run."""
    return _decide(req, approval["id"], approve=False)


def _decide(req, approval_id: str, *, approve: bool):
    reason = req.body.reason if req.body else ""
    return approvals.view(approvals.decide(req, approval_id, approve=approve, reason=reason), req.caller)


@app.post(
    "/twins/requests/<request_id>/run",
    check=REQUESTER,
    query=AsyncQuery,
    answers=(409, *CALL_ANSWERS),
    response=CallResultPublic,
    operation_id="run_request",
)
def run_approval(req, request_id, approval):
    """Run the approved request once, each endpoint bound to its private side -> `{"result"}`;
    again -> the same answer without running. 409 when it is not approved or an endpoint
    changed since the approval."""
    if _async(req):
        return jobs.accepted(jobs.submit_run(req, approval["id"]))
    with calls.running(req.caller):  # before the claim: a run refused here has not started
        status, body = approvals.run(req, approval["id"])
    if status == 200:
        return body
    return json_response({**body, "request_id": req.id}, status)


@app.post(
    "/twins/requests/<request_id>/try",
    check=APPROVAL_OWNERS,
    answers=(*CALL_ANSWERS[1:],),
    response=TryPublic,
    operation_id="try_request",
)
def try_approval(req, request_id, approval):
    """Try the request's code before deciding it: it runs in the sandbox as a run would, with
    every endpoint bound to its mock side, for the owner (their own mock calls) -> `{"result",
    "stdout", "stderr", "calls"}`. The request's status and its single run are untouched."""
    with calls.running(req.caller):
        status, body = approvals.try_on_mock(req, approval)
    if status == 200:
        return body
    return json_response({**body, "request_id": req.id}, status)


# -- jobs ----------------------------------------------------------------------------------------


@app.get("/twins/jobs/<job_id>", check=JOB_VISIBLE, response=TwinJobPublic)
def get_job(req, job_id, job):
    """The job: `pending`, `running`, `done` with `result`, or `failed` with `error` (masked as
    for its caller)."""
    return jobs.view(job, req.caller)


@workers.worker("twins", retry=(jobs.TryAgain,))
def job_work(cloud_event):
    """One delivery of `{"job"}` from TWIN_JOBS_TOPIC: carry the job out, or nothing when it has
    finished (a redelivered message never completes the work twice)."""
    jobs.work(workers.named_id(cloud_event, "job", jobs.ID, "twin job worker"))


def handle(request):
    return app(request)
