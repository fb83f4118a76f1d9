"""The twins function's models: what its routes read (bodies, queries) and answer (`XPublic`),
checked by pydantic where a request enters and as it is answered (common.web.http)."""

from __future__ import annotations

import datetime
import keyword
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema, model_validator

from common.models import DatasetName, Payload, Public, Query, Strict
from functions.twins import calls
from functions.twins.approvals import ApprovalStatus

MAX_SOURCE = 200_000
MAX_TIMEOUT_S = 280  # under the function's own 300 s request timeout


# -- bodies --------------------------------------------------------------------------------------


def _not_reserved(path: str) -> str:
    if path in calls.RESERVED_PATHS:
        raise ValueError(f"{path!r} is one of the function's own routes")
    return path


TwinPath = Annotated[
    str, StringConstraints(pattern=calls.PATH, max_length=200), AfterValidator(_not_reserved)
]


Source = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SOURCE)]


class SideCreate(Strict):
    """One side: the source of `def name(context, <keyword params>)`, helper function sources
    (reached as `context.code.<name>`) and secret settings (`context.settings`)."""

    code: Source
    helpers: Annotated[list[Source], Field(max_length=50)] = []
    settings: Payload = {}


class RateLimitCreate(Strict):
    calls: Annotated[int, Field(ge=1, le=1_000_000)]
    per_seconds: Annotated[int, Field(ge=1, le=86_400)]


Description = Annotated[str, StringConstraints(max_length=10_000)]


TimeoutS = Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)]


class EndpointCreate(Strict):
    """A new endpoint: `public`, or `mock` and `private` (with the same parameters)."""

    path: TwinPath
    description: Description
    dataset: DatasetName | None = None
    timeout_s: TimeoutS = 60
    rate_limit: RateLimitCreate | None = None
    hide_mock_definition: bool = False
    public: SideCreate | None = None
    mock: SideCreate | None = None
    private: SideCreate | None = None

    @model_validator(mode="after")
    def _one_kind(self):
        if self.public is not None and (self.mock is not None or self.private is not None):
            raise ValueError("an endpoint is either public (one side) or a twin (mock and private)")
        if self.public is None and (self.mock is None or self.private is None):
            raise ValueError("a twin endpoint needs both mock and private (or give public alone)")
        return self


class EndpointUpdate(Strict):
    """Fields to replace; a side given replaces that side (code, helpers and settings) and resets
    its state; `settings` replaces only the named sides' settings; `rate_limit: null` removes it."""

    description: Description | None = None
    timeout_s: TimeoutS | None = None
    rate_limit: RateLimitCreate | None = None
    hide_mock_definition: bool | None = None
    public: SideCreate | None = None
    mock: SideCreate | None = None
    private: SideCreate | None = None
    settings: dict[Literal["mock", "private", "public"], Payload] | None = None


CallBody = dict[str, Any]


def _param_name(name: str) -> str:
    if keyword.iskeyword(name):
        raise ValueError(f"{name!r} is a Python keyword")
    return name


ParamName = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"), AfterValidator(_param_name)
]


Reason = Annotated[str, StringConstraints(max_length=10_000)]


class ApprovalCreate(Strict):
    """Code that takes the named endpoints as arguments: `{param: endpoint path}`."""

    endpoints: Annotated[dict[ParamName, TwinPath], Field(min_length=1, max_length=20)]
    code: Source
    reason: Reason = ""
    timeout_s: TimeoutS = 60


class DecisionCreate(Strict):
    reason: Reason = ""


# -- queries -------------------------------------------------------------------------------------


class EndpointQuery(Query):
    full: bool = Field(False, description="true: settings, private source and state (admins)")


class AsyncQuery(Query):
    run_async: bool = Field(
        False,
        alias="async",
        description="1: answer 202 at once and carry the work out as a job (Location: /twins/jobs/{id})",
    )


# An approval status as a query takes it: inline in the document, a plain enum of strings.
StatusName = Annotated[
    ApprovalStatus, WithJsonSchema({"enum": [s.value for s in ApprovalStatus], "type": "string"})
]


class ApprovalsQuery(Query):
    status: StatusName | None = None


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


class TryPublic(CallResultPublic):
    """A request's code tried on the mock sides, with what it printed and its call records."""

    stdout: str | None = None
    stderr: str | None = None
    calls: list[str] = []


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


class ApprovalPublic(Public):
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
