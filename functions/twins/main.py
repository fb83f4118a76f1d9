"""twins: twin endpoints, API bridges to private data (SPEC §3 twins).

An endpoint is a `mock` side anyone with access may call (fake data, to learn the shape and
prototype) and a `private` side with the real data that only its owners run directly; or one
`public` side. Each side is the Python source of one function plus helpers and secret settings,
analysed when it is defined and run in sandbox workers when it is called (common/twinrun.py).
Definitions live in `twins/{path}`; each side's state under its generation id (common/twinstate.py).
Approval requests (common/twinrequests.py) run researchers' code against private sides once
their owners approve it; `?async=1` queues a call or a run as a job (common/twinjobs.py) that
the `job_work` worker carries out from Pub/Sub.
"""

from __future__ import annotations

import datetime
import keyword
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from common import (
    audit,
    auth,
    authz,
    errors,
    jsonio,
    queue,
    sandbox,
    store,
    twincode,
    twinjobs,
    twinrequests,
    twinrun,
)
from common.http import App, Check, json_response, paged, public_items, streamed
from common.models import DatasetName, Paging, Payload, Public, Query, Strict
from common.twinstate import FirestoreState, delete_generation

app = App(
    "twins",
    "Twin endpoints: mock and private sides of an API bridge to private data.",
    authenticate=auth.authenticate,
)
sandbox.warm_up()  # the sandbox boundary is proved (and logged) as the instance boots

SIDES = ("mock", "private", "public")
# What a call answers beyond the pipeline's: 202 as a job (?async=1), the rate limits (429),
# its code failing and its time limit (common/twinrun.py); a PublicError's own status as well.
CALL_ANSWERS = (202, 429, 500, 504)
MAX_SOURCE = 200_000
MAX_TIMEOUT_S = 280  # under the function's own 300 s request timeout


def _not_reserved(path: str) -> str:
    if path in twinrun.RESERVED_PATHS:
        raise ValueError(f"{path!r} is one of the function's own routes")
    return path


TwinPath = Annotated[
    str, StringConstraints(pattern=twinrun.PATH, max_length=200), AfterValidator(_not_reserved)
]
Source = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SOURCE)]


class SideIn(Strict):
    """One side: the source of `def name(context, <keyword params>)`, helper function sources
    (reached as `context.code.<name>`) and secret settings (`context.settings`)."""

    code: Source
    helpers: Annotated[list[Source], Field(max_length=50)] = []
    settings: Payload = {}


class RateLimit(Strict):
    calls: Annotated[int, Field(ge=1, le=1_000_000)]
    per_seconds: Annotated[int, Field(ge=1, le=86_400)]


Description = Annotated[str, StringConstraints(max_length=10_000)]
TimeoutS = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]


class EndpointIn(Strict):
    """A new endpoint: `public`, or `mock` and `private` (with the same parameters)."""

    path: TwinPath
    description: Description
    dataset: DatasetName | None = None
    timeout_s: TimeoutS = 60
    rate_limit: RateLimit | None = None
    hide_mock_definition: bool = False
    public: SideIn | None = None
    mock: SideIn | None = None
    private: SideIn | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if self.public is not None and (self.mock is not None or self.private is not None):
            raise ValueError("an endpoint is either public (one side) or a twin (mock and private)")
        if self.public is None and (self.mock is None or self.private is None):
            raise ValueError("a twin endpoint needs both mock and private (or give public alone)")
        return self


class EndpointPatch(Strict):
    """Fields to replace; a side given replaces that side (code, helpers and settings) and resets
    its state; `settings` replaces only the named sides' settings; `rate_limit: null` removes it."""

    description: Description | None = None
    timeout_s: TimeoutS | None = None
    rate_limit: RateLimit | None = None
    hide_mock_definition: bool | None = None
    public: SideIn | None = None
    mock: SideIn | None = None
    private: SideIn | None = None
    settings: dict[Literal["mock", "private", "public"], Payload] | None = None


# -- answers -------------------------------------------------------------------------------------

Number = int | float  # kept as given: a timeout of 60 answers 60, not 60.0


class RateLimitPublic(Public):
    calls: int
    per_seconds: int


class SidePublic(Public):
    """The side callers may read (unless hide_mock_definition): its source, never its settings."""

    code: str
    helpers: list[str] = []


class SideFullPublic(SidePublic):
    """A side as admins read it with `?full=true`."""

    settings: dict[str, Any] = {}
    generation: str
    replaced_at: datetime.datetime | None = None
    state: dict[str, Any] = {}


class EndpointPublic(Public):
    """An endpoint as callers see it: never settings, state or private source (`sides` only for
    admins with `?full=true`)."""

    path: str
    description: str
    kind: Literal["public", "twin"]
    dataset: str | None = None
    parameters: dict[str, Any] = Field(description="JSON schema of the keyword parameters")
    timeout_s: Number
    rate_limit: RateLimitPublic | None = None
    hide_mock_definition: bool | None = None
    created_at: datetime.datetime | None = None
    modified_at: datetime.datetime | None = None
    public: SidePublic | None = None
    mock: SidePublic | None = None
    sides: dict[str, SideFullPublic] | None = None


class CallResultPublic(Public):
    result: Any = Field(description="what the endpoint's (or the request's) code returned")


class CallPublic(Public):
    """A call record, with the captured output (owners)."""

    id: str
    endpoint: str
    side: str
    generation: str | None = None
    dataset: str | None = None
    caller: str
    status: str
    http_status: int
    duration_ms: Number
    request_id: str
    origin: str | None = None
    at: datetime.datetime
    expire_at: datetime.datetime | None = None
    message: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class RequestPublic(Public):
    """An approval request as its viewer sees it (`run`, the captured output, for owners only)."""

    id: str
    status: str
    requester: str
    endpoints: dict[str, str]
    code: str
    reason: str | None = None
    timeout_s: Number
    created_at: datetime.datetime
    decided_by: str | None = None
    decided_at: datetime.datetime | None = None
    decision_reason: str | None = None
    finished_at: datetime.datetime | None = None
    job: str | None = None
    started_at: datetime.datetime | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    run: dict[str, Any] | None = None


class TwinJobPublic(Public):
    """A job: `result` when done, `error` when failed (masked as for its caller)."""

    id: str
    kind: str
    status: str
    endpoint: str | None = None
    side: str | None = None
    request: str | None = None
    caller: str | None = None
    attempts: int | None = None
    created_at: datetime.datetime | None = None
    started_at: datetime.datetime | None = None
    finished_at: datetime.datetime | None = None
    http_status: int | None = None
    result: Any = None
    error: Any = None


# -- checks: each loads the endpoint it authorizes and hands it to the handler ------------------


def _endpoint_check(describe: str, side: str | None = None, *, owners: bool = False) -> Check:
    def run(req, params: dict[str, Any]) -> None:
        endpoint, chosen = twinrun.resolve(req.caller, params["path"], side)
        if owners and not endpoint.owned_by(req.caller):
            raise errors.Forbidden("this needs admin or manage on the endpoint's dataset")
        params["endpoint"], params["side"] = endpoint, chosen

    return Check(describe, run)


VISIBLE = _endpoint_check("read on the endpoint's dataset (any authenticated user when it has none)")
OWNERS = _endpoint_check("admin or manage on the endpoint's dataset", owners=True)
DEFAULT_SIDE = _endpoint_check(
    "read on the endpoint's dataset; runs the private side for admins and "
    "manage on the dataset, the mock side for everyone else"
)
MOCK_SIDE = _endpoint_check("read on the endpoint's dataset", "mock")
PRIVATE_SIDE = _endpoint_check("admin or manage on the endpoint's dataset", "private")


def _request_check(describe: str, *, owners: bool = False, requester: bool = False) -> Check:
    """Loads the request (404 unless the caller is its requester or owns an endpoint it names)."""

    def run(req, params: dict[str, Any]) -> None:
        doc = twinrequests.get_visible(req.caller, params["request_id"])
        if owners and not twinrequests.owns_all(req.caller, doc):
            raise errors.Forbidden(
                "this needs admin or manage on the dataset of every endpoint the request names"
            )
        if requester and doc["requester"] != req.caller.email:
            raise errors.Forbidden("only the requester runs a request")
        params["request"] = doc

    return Check(describe, run)


REQUEST_VISIBLE = _request_check("the requester, or admin or manage on an endpoint the request names")
REQUEST_OWNERS = _request_check(
    "admin or manage on the dataset of every endpoint the request names", owners=True
)
REQUESTER = _request_check("the requester (once the request is approved)", requester=True)


def _see_job(req, params: dict[str, Any]) -> None:
    params["job"] = twinjobs.get_visible(req.caller, params["job_id"])


JOB_VISIBLE = Check(
    "the job's caller, or admin or manage on what it ran (a request's run: on every endpoint it names)",
    _see_job,
)


# -- definitions --------------------------------------------------------------------------------


def _analysed(side: SideIn, name: str):
    """The side's definition (name, parameters); bad source or a forbidden import is 422 with the line."""
    try:
        return twincode.analyse(side.code, list(side.helpers), twincode.allowed_modules_for_endpoints())
    except twincode.CodeError as exc:
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
    if not twincode.same_parameters(mock, private):
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


def _stored_side(side: SideIn, definition) -> dict[str, Any]:
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


def view(endpoint: twinrun.Endpoint, *, full: bool = False) -> dict[str, Any]:
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


@app.post("/twins", role=authz.ADMIN, body=EndpointIn, status=201, answers=(409,), response=EndpointPublic)
def create(req):
    """Create an endpoint (201 with its view); 409 when the path is taken (by an endpoint whose
    dataset still exists: one of a deleted dataset is replaced, its state dropped)."""
    body: EndpointIn = req.body
    record = authz.dataset_record(body.dataset) if body.dataset is not None else None
    if body.dataset is not None and record is None:
        raise errors.ValidationFailed(
            f"dataset {body.dataset!r} does not exist",
            details=[{"loc": ["body", "dataset"], "message": "no such dataset", "type": "not_found"}],
        )
    if body.public is not None:
        definition = _analysed(body.public, "public")
        sides = {"public": _stored_side(body.public, definition)}
    else:
        assert body.mock is not None and body.private is not None  # EndpointIn's validator: both sides
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
        "dataset_generation": authz.generation(record),
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
    ref = store.collection(twinrun.ENDPOINTS).document(body.path)

    def write(transaction) -> dict[str, Any] | None:
        snap = ref.get(transaction=transaction)
        old = snap.to_dict() if snap.exists else None
        if old is not None and twinrun.Endpoint(body.path, old).live():
            raise errors.Conflict(f"twin endpoint {body.path!r} exists; PATCH it or DELETE it first")
        transaction.set(ref, doc)
        audit.record(
            transaction, req, "twin_create", "twin", body.path, dataset=body.dataset, after=_summary(doc)
        )
        return old

    replaced = store.transactional(write)
    twinrun.forget(body.path)
    for side in (replaced or {}).get("sides", {}).values():  # of a deleted dataset's endpoint
        delete_generation(side["generation"])
    return view(twinrun.Endpoint(body.path, doc))


@app.patch("/twins/<path>", role=authz.ADMIN, body=EndpointPatch, response=EndpointPublic)
def update(req, path):
    """Replace sides, description, timeout_s, rate_limit, hide_mock_definition or settings.
    A replaced side's state starts empty; the other side and the visibility are kept."""
    body: EndpointPatch = req.body
    given = body.model_fields_set
    new_sides = {name: getattr(body, name) for name in SIDES if getattr(body, name) is not None}
    analysed = {name: _analysed(side, name) for name, side in new_sides.items()}
    ref = store.collection(twinrun.ENDPOINTS).document(path)
    result: dict[str, Any] = {}

    def write(transaction) -> None:
        snap = ref.get(transaction=transaction) if twinrun.valid_path(path) else None
        if (
            snap is None
            or not snap.exists
            or not twinrun.Endpoint(path, snap.to_dict()).visible_to(req.caller)
        ):
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
                name: analysed.get(name) or twincode.Definition(doc["sides"][name]["name"], old["parameters"])
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
    twinrun.forget(path)
    for name in new_sides:
        delete_generation(result["old"]["sides"][name]["generation"])
    return view(twinrun.Endpoint(path, result["new"]))


@app.delete("/twins/<path>", role=authz.ADMIN, status=204)
def remove(req, path):
    """Delete an endpoint and its state. Its call records and jobs are no longer shown, also not
    for a new endpoint at the path (they expire on their own)."""
    endpoint = twinrun.load(path)
    if endpoint is None or not endpoint.visible_to(req.caller):
        raise errors.NotFound(f"twin endpoint {path!r} not found")
    ref = store.collection(twinrun.ENDPOINTS).document(path)
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
    twinrun.forget(path)
    for side in endpoint.doc["sides"].values():
        delete_generation(side["generation"])
    return None


@app.get("/twins", role=authz.AUTHENTICATED, response=list[EndpointPublic])
def list_endpoints(req):
    """The endpoints the caller may see (their dataset readable, or none), as views."""
    snaps = store.collection(twinrun.ENDPOINTS).order_by("__name__").stream()
    endpoints = (twinrun.Endpoint(s.id, s.to_dict()) for s in snaps)
    return streamed(
        jsonio.stream_array(public_items(req, (view(e) for e in endpoints if e.visible_to(req.caller))))
    )


class EndpointQuery(Query):
    full: bool = Field(False, description="true: settings, private source and state (admins)")


@app.get("/twins/<path>", role=VISIBLE, query=EndpointQuery, response=EndpointPublic)
def get_endpoint(req, path, endpoint, side):
    """The endpoint's view; `?full=true` (admins) adds each side's source, settings and state."""
    if req.query.full:
        if not req.caller.is_admin:
            raise errors.Forbidden("full=true needs the admin role")
        return view(endpoint, full=True)
    return view(endpoint)


class ASYNC(Query):
    run_async: bool = Field(
        False,
        alias="async",
        description="1: answer 202 at once and carry the work out as a job (Location: /twins/jobs/{id})",
    )


def _async(req) -> bool:
    return req.query.run_async


def _call(req, endpoint, side, asked_side: str | None):
    args = req.body or {}
    if _async(req):
        twinrun.admit(endpoint, req.caller, args)
        return twinjobs.accepted(twinjobs.submit_call(req, endpoint, asked_side, args))
    with twinrun.running(req.caller):
        answer = twinrun.invoke(endpoint, side, req.caller, args, req.id)
    if answer.ok:
        return answer.body
    return json_response({**answer.body, "request_id": req.id}, answer.status, answer.headers)


CallBody = dict[str, Any]


@app.post(
    "/twins/<path>",
    role=DEFAULT_SIDE,
    body=CallBody,
    body_required=False,
    query=ASYNC,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_default(req, path, endpoint, side):
    """Call the endpoint with `{kwarg: value}`: the private side for its owners, the mock side
    for everyone else (a public endpoint's one side) -> `{"result"}`."""
    return _call(req, endpoint, side, None)


@app.post(
    "/twins/<path>/mock",
    role=MOCK_SIDE,
    body=CallBody,
    body_required=False,
    query=ASYNC,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_mock(req, path, endpoint, side):
    """Call the mock side -> `{"result"}`."""
    return _call(req, endpoint, side, "mock")


@app.post(
    "/twins/<path>/private",
    role=PRIVATE_SIDE,
    body=CallBody,
    body_required=False,
    query=ASYNC,
    answers=CALL_ANSWERS,
    response=CallResultPublic,
)
def call_private(req, path, endpoint, side):
    """Call the private side (owners only) -> `{"result"}`."""
    return _call(req, endpoint, side, "private")


@app.get("/twins/<path>/calls", role=OWNERS, query=Paging, response=list[CallPublic])
def list_calls(req, path, endpoint, side):
    """The endpoint's call records, newest first, with the captured output (owners); not those
    of an earlier endpoint at the same path."""
    twinrun.flush_records()  # this instance's latest calls are in the list
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    coll = store.collection(twinrun.CALLS)
    if endpoint.generation is not None:
        query = coll.where(filter=FieldFilter("endpoint_generation", "==", endpoint.generation))
    else:  # made before endpoints had generations: the records since it was made
        query = coll.where(filter=FieldFilter("endpoint", "==", path))
        if endpoint.doc.get("created_at") is not None:
            query = query.where(filter=FieldFilter("at", ">=", endpoint.doc["created_at"]))
    query = query.order_by("at", direction=firestore.Query.DESCENDING)
    limit = req.query.limit
    page = store.page(query, coll, limit=limit, cursor=req.query.cursor)
    return paged(req, page, lambda snap: snap.to_dict(), limit)


# -- approval requests ---------------------------------------------------------------------------


def _param_name(name: str) -> str:
    if keyword.iskeyword(name):
        raise ValueError(f"{name!r} is a Python keyword")
    return name


ParamName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"), AfterValidator(_param_name)
]
Reason = Annotated[str, StringConstraints(max_length=10_000)]


class RequestIn(Strict):
    """Code that takes the named endpoints as arguments: `{param: endpoint path}`."""

    endpoints: Annotated[dict[ParamName, TwinPath], Field(min_length=1, max_length=20)]
    code: Source
    reason: Reason = ""
    timeout_s: TimeoutS = 60


class Decision(Strict):
    reason: Reason = ""


@app.post("/twins/requests", role=authz.AUTHENTICATED, body=RequestIn, status=201, response=RequestPublic)
def submit_request(req):
    """Submit code for approval: `{"endpoints": {param: path}, "code", "reason"?, "timeout_s"?}`
    -> 201 the request, `pending`. The caller must see every endpoint named (422 otherwise)."""
    body: RequestIn = req.body
    doc = twinrequests.submit(req, body.endpoints, body.code, body.reason, body.timeout_s)
    return twinrequests.view(doc, req.caller)


class RequestsQuery(Query):
    status: Literal["pending", "approved", "denied", "queued", "running", "done", "failed"] | None = None


@app.get(
    "/twins/requests",
    role=authz.AUTHENTICATED,
    query=RequestsQuery,
    response=list[RequestPublic],
)
def list_requests(req):
    """The caller's requests, and those naming an endpoint the caller owns (admins: all), newest first."""
    wanted = req.query.status
    return [twinrequests.view(doc, req.caller) for doc in twinrequests.listed(req.caller, wanted)]


@app.get("/twins/requests/<request_id>", role=REQUEST_VISIBLE, response=RequestPublic)
def get_request(req, request_id, request):
    """The request: status, code, decision, and when it has run its result or error (for the
    requester and the owners of every endpoint it names, who also read the run record `run`:
    captured output, error, the endpoint calls it made). An owner of only some of its endpoints
    sees the request without its result, error or run record."""
    return twinrequests.view(request, req.caller)


@app.post(
    "/twins/requests/<request_id>/approve",
    role=REQUEST_OWNERS,
    body=Decision,
    body_required=False,
    answers=(409,),
    response=RequestPublic,
)
def approve_request(req, request_id, request):
    """Approve the request as its code and endpoints are now (`{"reason"?}`); 409 once it has run."""
    return _decide(req, request_id, approve=True)


@app.post(
    "/twins/requests/<request_id>/deny",
    role=REQUEST_OWNERS,
    body=Decision,
    body_required=False,
    answers=(409,),
    response=RequestPublic,
)
def deny_request(req, request_id, request):
    """Deny the request (`{"reason"?}`); 409 once it has run."""
    return _decide(req, request_id, approve=False)


def _decide(req, request_id: str, *, approve: bool):
    reason = req.body.reason if req.body else ""
    return twinrequests.view(twinrequests.decide(req, request_id, approve=approve, reason=reason), req.caller)


@app.post(
    "/twins/requests/<request_id>/run",
    role=REQUESTER,
    query=ASYNC,
    answers=(409, *CALL_ANSWERS),
    response=CallResultPublic,
)
def run_request(req, request_id, request):
    """Run the approved request once, each endpoint bound to its private side -> `{"result"}`;
    again -> the same answer without running. 409 when it is not approved or an endpoint
    changed since the approval."""
    if _async(req):
        return twinjobs.accepted(twinjobs.submit_run(req, request_id))
    with twinrun.running(req.caller):  # before the claim: a run refused here has not started
        status, body = twinrequests.run(req, request_id)
    if status == 200:
        return body
    return json_response({**body, "request_id": req.id}, status)


class TryPublic(CallResultPublic):
    """A request's code tried on the mock sides, with what it printed and its call records."""

    stdout: str | None = None
    stderr: str | None = None
    calls: list[str] = []


@app.post(
    "/twins/requests/<request_id>/try",
    role=REQUEST_OWNERS,
    answers=(*CALL_ANSWERS[1:],),
    response=TryPublic,
)
def try_request(req, request_id, request):
    """Try the request's code before deciding it: it runs in the sandbox as a run would, with
    every endpoint bound to its mock side, for the owner (their own mock calls) -> `{"result",
    "stdout", "stderr", "calls"}`. The request's status and its single run are untouched."""
    with twinrun.running(req.caller):
        status, body = twinrequests.try_on_mock(req, request)
    if status == 200:
        return body
    return json_response({**body, "request_id": req.id}, status)


# -- jobs ----------------------------------------------------------------------------------------


@app.get("/twins/jobs/<job_id>", role=JOB_VISIBLE, response=TwinJobPublic)
def get_job(req, job_id, job):
    """The job: `pending`, `running`, `done` with `result`, or `failed` with `error` (masked as
    for its caller)."""
    return twinjobs.view(job, req.caller)


@queue.worker("twins", retry=(twinjobs.TryAgain,))
def job_work(cloud_event):
    """One delivery of `{"job"}` from TWIN_JOBS_TOPIC: carry the job out, or nothing when it has
    finished (a redelivered message never completes the work twice)."""
    job_id = queue.named_id(cloud_event, "job", twinjobs.ID, "twin job worker")
    if job_id is not None:
        twinjobs.work(job_id)


def handle(request):
    return app(request)
