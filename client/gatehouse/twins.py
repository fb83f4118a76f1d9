"""Twin endpoints, read like PySyft's: a dotted path is a chain of attributes.

    gh.twins.warehouse.query(sql="SELECT ...")          # the default side (private for owners, else mock)
    gh.twins.warehouse.query.mock(sql="SELECT ...")     # the mock side
    gh.twins.warehouse.query.private(sql="...")         # the private side (owners)
    job = gh.twins.warehouse.query.call_async(sql="...") ; job.wait()
    request = gh.twins.submit(my_analysis, endpoints={"wh": gh.twins.warehouse.query}, reason="...")
    request.run()                                       # once an owner approved it
    gh.twins.requests.list(status="pending"); r.show(); r.try_on_mock(); r.approve("why")  # owners

`gh.twins.<TAB>` lists the endpoints; an endpoint's repr and `help()` show its description and
parameters, and arguments that do not match them fail before the request. A result shaped
`{"columns", "rows"}` is a `Table` (`.to_dataframe()`).

A path whose first name is one of this object's own (`list`, `define`, `submit`, ...) is
reached as `gh.twins["list.x"]`.
"""

from __future__ import annotations

import builtins
import datetime
import functools
import hashlib
import html
import inspect
import json
import operator
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gatehouse import errors
from gatehouse._http import segment
from gatehouse.records import EndpointInfo, Listing, Record, listing, tabled

if TYPE_CHECKING:
    from gatehouse.client import Gatehouse

CALL_TIMEOUT_S = 300  # an endpoint may run 280 s; the HTTP call waits a little longer

# The envelope's codes and their statuses, for errors that come back inside a job.
_CODE_STATUS = {
    "bad_request": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "validation_error": 422,
    "rate_limited": 429,
    "internal": 500,
    "endpoint_error": 500,
    "bad_gateway": 502,
    "unavailable": 503,
    "timeout": 504,
}


def _path_of(endpoint: Endpoint | str) -> str:
    return endpoint.path if isinstance(endpoint, Endpoint) else str(endpoint)


def _job_from(client: Gatehouse, response: Any) -> Job:
    """The job a `202 Location: /twins/jobs/{id}` answer started."""
    body = response.json() if response.content else {}
    job_id = (body or {}).get("id") or response.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
    return Job(client, job_id, body or None)


class Job:
    """An asynchronous call: `status()` reads it, `wait()` returns its result (or raises the
    endpoint's error)."""

    def __init__(self, client: Gatehouse, job_id: str, record: dict[str, Any] | None = None):
        self._client, self.id, self.record = client, job_id, record or {"id": job_id, "status": "pending"}

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.record.get('status')!r})"

    def status(self) -> dict[str, Any]:
        """`{"id", "status": pending|running|done|failed, "result"?, "error"?}`."""
        self.record = self._client.get(f"/twins/jobs/{segment(self.id)}")
        return self.record

    @property
    def done(self) -> bool:
        return self.record.get("status") in ("done", "failed")

    def wait(self, timeout: float | None = None, *, poll: float = 0.2) -> Any:
        """Polls until the job ends: its `result`, or the endpoint's error raised as a
        GatehouseError; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id} is still {self.record.get('status')} after {timeout} s")
            time.sleep(poll)
            poll = min(poll * 1.5, 5.0)
            self.status()
        if self.record["status"] == "done":
            return tabled(self.record.get("result"))
        raise self._error()

    def _error(self) -> errors.GatehouseError:
        error = self.record.get("error")
        if isinstance(error, dict) and isinstance(error.get("error"), str):
            status = int(self.record.get("http_status") or _CODE_STATUS.get(error["error"], 500))
            return errors.from_envelope(status, error)
        return errors.JobFailed(500, "job_failed", str(error or "the job failed"), None, self.record)


# -- the parameters' JSON schema, checked as the server checks it (functions/twins/source.py) ---------


def _matches(value: Any, schema: dict[str, Any]) -> bool:
    if "anyOf" in schema:
        return any(_matches(value, s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind is None:
        return True
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if kind == "array":
        return isinstance(value, list) and all(_matches(v, schema.get("items", {})) for v in value)
    if kind == "object":
        return (
            isinstance(value, dict)
            and all(isinstance(k, str) for k in value)
            and all(_matches(v, schema.get("additionalProperties", {})) for v in value.values())
        )
    return False


def _describe(schema: dict[str, Any]) -> str:
    if "anyOf" in schema:
        return " or ".join(_describe(s) for s in schema["anyOf"])
    kind = schema.get("type", "any JSON value")
    if kind == "array" and schema.get("items"):
        return f"array of {_describe(schema['items'])}"
    extra = schema.get("additionalProperties")
    if kind == "object" and isinstance(extra, dict) and extra:
        return f"object of {_describe(extra)}"
    return {
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "boolean": "a boolean",
        "null": "null",
        "array": "an array",
        "object": "an object",
    }.get(kind, kind)


ARGUMENTS_MESSAGE = "the arguments do not match the endpoint's parameters"  # the server's words


def check_arguments(parameters: dict[str, Any], args: dict[str, Any]) -> list[dict[str, Any]]:
    """What the server would find wrong with `args` (as JSON) for an endpoint's `parameters`:
    its `details` list (missing, unknown and mistyped arguments), empty when nothing."""
    problems = [
        {"loc": [name], "message": "missing argument", "type": "missing"}
        for name in parameters.get("required", [])
        if name not in args
    ]
    for name, value in args.items():
        expected = parameters.get("properties", {}).get(name)
        if expected is None:
            problems.append({"loc": [name], "message": "unknown argument", "type": "extra_forbidden"})
        elif not _matches(value, expected):
            problems.append(
                {"loc": [name], "message": f"expected {_describe(expected)}", "type": "wrong_type"}
            )
    return problems


_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "null": type(None),
    "array": list,
    "object": dict,
}


def _annotation(schema: dict[str, Any]) -> Any:
    """The Python annotation of a parameter's schema (`str`, `list[int]`, `int | None`, Any)."""
    if "anyOf" in schema:
        return functools.reduce(operator.or_, [_annotation(s) for s in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "array" and schema.get("items"):
        return list[_annotation(schema["items"])]  # type: ignore[misc]
    extra = schema.get("additionalProperties")
    if kind == "object" and isinstance(extra, dict) and extra:
        return dict[str, _annotation(extra)]  # type: ignore[misc]
    return _PYTHON_TYPES.get(kind or "", Any)


def signature(parameters: dict[str, Any]) -> inspect.Signature:
    """The keyword-only signature an endpoint's parameters (JSON schema) describe."""
    return inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=inspect.Parameter.empty if required else schema.get("default"),
                annotation=_annotation(schema),
            )
            for name, schema, required in _ordered(parameters)
        ]
    )


def _ordered(parameters: dict[str, Any]) -> builtins.list[tuple[str, dict[str, Any], bool]]:
    """(name, schema, required) of each parameter: the required ones first, in their order."""
    properties = parameters.get("properties", {})
    required = [n for n in parameters.get("required", []) if n in properties]
    return [(n, properties[n], True) for n in required] + [
        (n, s, False) for n, s in properties.items() if n not in required
    ]


def _as_json(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments as the server receives them (tuples as lists, ...)."""
    return json.loads(json.dumps(kwargs))


class _Described:
    """A docstring or signature that is the class's for the class and computed for an instance
    (what `help(gh.twins.warehouse.query)` and `inspect.signature` read)."""

    def __init__(self, for_class: Any, compute: str):
        self.for_class, self.compute = for_class, compute

    def __get__(self, obj: Any, cls: Any = None) -> Any:
        return self.for_class if obj is None else getattr(obj, self.compute)()

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("read-only")


# -- endpoints ------------------------------------------------------------------------------------


class Side:
    """One side of an endpoint (`mock` or `private`): call it, or `call_async` it."""

    def __init__(self, endpoint: Endpoint, side: str):
        self._endpoint, self.side = endpoint, side

    def __repr__(self) -> str:
        return f"<twin endpoint {self._endpoint.path} ({self.side} side)>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._endpoint._call(self.side, self._endpoint._checked(args, kwargs))

    def call_async(self, *args: Any, **kwargs: Any) -> Job:
        return self._endpoint._call_async(self.side, self._endpoint._checked(args, kwargs))


class Endpoint:
    """A twin endpoint, or a prefix of one: attributes extend the dotted path.

    Call it with keyword arguments (the default side: private for its owners, mock for
    everyone else), or `.mock(...)`, `.private(...)`, `.call_async(...)`. Its repr and
    `help()` show its description and parameters; arguments that do not match them fail
    before the request, with the server's message."""

    def __init__(self, client: Gatehouse, path: str, twins: Twins | None = None):
        self._client, self.path = client, path
        self._twins = twins if twins is not None else client.twins

    # What `help()` and `inspect.signature()` read for this endpoint.
    __doc__ = _Described(__doc__, "_help_text")
    __signature__ = _Described(None, "_signature")

    def _view(self) -> dict[str, Any] | None:
        return self._twins._view(self.path)

    def _children(self) -> builtins.list[str]:
        return self._twins._children(self.path)

    def _signature(self) -> inspect.Signature | None:
        view = self._view()
        return signature(view.get("parameters") or {}) if view else None

    def _head(self, view: dict[str, Any]) -> str:
        params = str(signature(view.get("parameters") or {}))
        return f"{self.path}{params}"

    def __repr__(self) -> str:
        try:
            view = self._view()
            if view is not None:
                where = f" on {view['dataset']}" if view.get("dataset") else ""
                first = (view.get("description") or "").strip().splitlines()
                about = f": {first[0]}" if first else ""
                return f"<twin endpoint {self._head(view)}{where}{about}>"
            children = self._children()
            if children:
                return f"<twin endpoints under {self.path}: {', '.join(children)}>"
        except errors.GatehouseError:
            pass
        return f"<twin endpoint {self.path}>"

    def _help_text(self) -> str:
        try:
            view = self._view()
            children = [] if view else self._children()
        except errors.GatehouseError as exc:
            return f"Twin endpoint {self.path} (not described: {exc})"
        if view is None:
            if children:
                return f"Twin endpoints under {self.path}: " + ", ".join(f"{self.path}.{c}" for c in children)
            return f"Twin endpoint {self.path}: no such endpoint is visible to this caller."
        lines = [self._head(view), ""]
        lines += [(view.get("description") or "").strip() or "(no description)", ""]
        kind = "a twin (mock and private sides)" if view.get("kind") == "twin" else "public (one side)"
        dataset = f", on dataset {view['dataset']}" if view.get("dataset") else ""
        lines.append(f"Kind: {kind}{dataset}; time limit {view.get('timeout_s')} s.")
        ordered = _ordered(view.get("parameters") or {})
        if ordered:
            lines.append("Parameters (keyword only):")
            for name, schema, required in ordered:
                default = "required" if required else f"default {schema.get('default')!r}"
                lines.append(f"  {name}: {_describe(schema)} ({default})")
        lines += [
            "",
            f"Call: gh.twins.{self.path}(...) (the private side for its owners, the mock side for",
            "everyone else), .mock(...), .private(...) (owners), .call_async(...) -> a Job.",
        ]
        mock = view.get("mock") or view.get("public")
        if mock and mock.get("code"):
            side = "mock" if view.get("mock") else "public"
            lines += ["", f"The {side} side's source:", textwrap.indent(mock["code"].rstrip(), "    ")]
        return "\n".join(lines)

    def __dir__(self) -> builtins.list[str]:
        own = ["call_async", "calls", "info", "mock", "path", "private"]
        try:
            return sorted(set(own) | set(self._children()))
        except errors.GatehouseError:
            return own

    def __getattr__(self, name: str) -> Endpoint:
        if name.startswith("_"):
            raise AttributeError(name)
        return Endpoint(self._client, f"{self.path}.{name}", self._twins)

    def __getitem__(self, name: str) -> Endpoint:
        return Endpoint(self._client, f"{self.path}.{name}", self._twins)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calls the default side (private for the endpoint's owners, mock for everyone else) -> its result."""
        return self._call(None, self._checked(args, kwargs))

    @property
    def mock(self) -> Side:
        return Side(self, "mock")

    @property
    def private(self) -> Side:
        return Side(self, "private")

    def call_async(self, *args: Any, **kwargs: Any) -> Job:
        """Starts a call of the default side in the background -> a Job (`job.wait()` -> result)."""
        return self._call_async(None, self._checked(args, kwargs))

    def info(self, *, full: bool = False) -> Record:
        """The endpoint's view: description, parameters (JSON schema), the mock's source unless
        hidden; `full=True` (admins) adds every side's source, settings and state."""
        return Record(self._client.get(f"/twins/{self.path}", params={"full": "true" if full else None}))

    def calls(self, *, page_size: int = 100) -> Listing[Record]:
        """The endpoint's call records with captured output, newest first (owners)."""
        pages = self._client.pages(f"/twins/{self.path}/calls", page_size=page_size)
        return listing(pages, Record, f"calls of {self.path}")

    def _checked(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments, checked against the endpoint's parameters before the request: a
        ValidationError with the server's message and details when they do not match (checked
        again against a fresh view first, so a redefined endpoint is never refused wrongly)."""
        if args:
            raise TypeError(f"{self.path} takes keyword arguments only: {self!r}")
        try:
            body = _as_json(kwargs)
        except TypeError as exc:
            raise TypeError(f"the arguments of {self.path} must be JSON values: {exc}") from None
        problems: builtins.list[dict[str, Any]] = []
        for fresh in (False, True):
            try:
                view = self._twins._view(self.path, fresh=fresh)
            except errors.GatehouseError:
                return kwargs  # not described to this caller: the server answers
            problems = check_arguments(view.get("parameters") or {}, body) if view else []
            if not problems:
                return kwargs
        raise errors.ValidationError(422, "validation_error", ARGUMENTS_MESSAGE, None, problems)

    def _url(self, side: str | None) -> str:
        return f"/twins/{self.path}" + (f"/{side}" if side else "")

    def _call(self, side: str | None, kwargs: dict[str, Any]) -> Any:
        timeout = max(self._client.timeout, CALL_TIMEOUT_S)
        return tabled(self._client.post(self._url(side), json=kwargs, timeout=timeout)["result"])

    def _call_async(self, side: str | None, kwargs: dict[str, Any]) -> Job:
        response = self._client.post(self._url(side), params={"async": "1"}, json=kwargs, raw=True)
        return _job_from(self._client, response)


# -- requests -------------------------------------------------------------------------------------


def _when(value: Any) -> datetime.datetime | None:
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


BINDS = (
    "Approving binds this code exactly (its SHA-256) and each endpoint's sides and settings as\n"
    "they are now: a change to an endpoint after the approval refuses the run until it is\n"
    "approved again. The requester may then run it once, each endpoint bound to its private\n"
    "side, and receives its result; you read the run record (output, calls) afterwards."
)


class Request:
    """A request to run code over private endpoints, which an owner approves or denies:
    `id`, `status` (`pending`, `approved`, `denied`, `done`, ...), `code`, `requester`,
    `reason`, `endpoints`, `created_at`, and the server's `record`. `show()` prints what an
    owner reviews; `try_on_mock()` runs it on the mock sides first."""

    def __init__(self, client: Gatehouse, record: dict[str, Any]):
        self._client, self.record = client, record
        self.tried: Record | None = None

    id = property(lambda self: self.record["id"])
    status = property(lambda self: self.record.get("status"))
    code = property(lambda self: self.record.get("code") or "", doc="The source submitted.")
    requester = property(lambda self: self.record.get("requester"))
    reason = property(lambda self: self.record.get("reason") or "")
    endpoints = property(
        lambda self: dict(self.record.get("endpoints") or {}), doc="`{parameter: endpoint path}`."
    )
    created_at = property(lambda self: _when(self.record.get("created_at")))
    decided_by = property(lambda self: self.record.get("decided_by"))
    decision_reason = property(lambda self: self.record.get("decision_reason"))

    @property
    def result(self) -> Any:
        """The run's result once it is done (None before)."""
        return tabled(self.record.get("result"))

    @property
    def code_sha256(self) -> str:
        return hashlib.sha256(self.code.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"Request({self.id!r}, status={self.status!r}, requester={self.requester!r}, endpoints={self.endpoints!r})"

    def _url(self, action: str = "") -> str:
        return f"/twins/requests/{segment(self.id)}" + (f"/{action}" if action else "")

    def refresh(self) -> Request:
        self.record = self._client.get(self._url())
        return self

    def approve(self, reason: str | None = None) -> Request:
        """Approves the request (owners of every endpoint it names), binding its code and the
        endpoints as they are now; `reason` is kept with the decision."""
        self.record = self._client.post(self._url("approve"), json={"reason": reason} if reason else {})
        return self

    def deny(self, reason: str | None = None) -> Request:
        """Denies the request; `reason` is what the requester reads when a run is refused."""
        self.record = self._client.post(self._url("deny"), json={"reason": reason} if reason else {})
        return self

    def run(self) -> Any:
        """Runs the approved code over the private endpoints (once) -> its result."""
        timeout = max(self._client.timeout, CALL_TIMEOUT_S)
        return tabled(self._client.post(self._url("run"), timeout=timeout)["result"])

    def run_async(self) -> Job:
        response = self._client.post(self._url("run"), params={"async": "1"}, raw=True)
        return _job_from(self._client, response)

    def try_on_mock(self) -> Any:
        """Runs the request's code on the MOCK sides before you decide (owners of every endpoint
        it names) -> its result; what it printed and its calls are in `request.tried`.

        The code runs on the server, in the same sandbox a run uses, never in this Python
        process: each endpoint (`ep(...)`, `ep.private(...)`, `ep.mock(...)` alike) is bound to
        its mock side and each call is your own mock call. The request's status and its single
        run are untouched. A failure raises its error, with the code's message and traceback
        (`e.details["traceback"]`)."""
        timeout = max(self._client.timeout, CALL_TIMEOUT_S)
        answer = self._client.post(self._url("try"), timeout=timeout)
        self.tried = Record(answer)
        return tabled(answer.get("result"))

    def _endpoint_lines(self) -> builtins.list[tuple[str, str, str, str]]:
        """(parameter, path, dataset, description) of each endpoint named."""
        rows = []
        for param, path in self.endpoints.items():
            try:
                view = self._client.twins._view(path) or {}
            except errors.GatehouseError:
                view = {}
            dataset = view.get("dataset") or ("(none)" if view else "(not visible)")
            about = ((view.get("description") or "").strip().splitlines() or [""])[0]
            rows.append((param, path, dataset, about))
        return rows

    def describe(self) -> str:
        """What `show()` prints."""
        when = self.created_at
        stamp = when.strftime("%Y-%m-%d %H:%M UTC") if when else "?"
        lines = [f"Request {self.id} ({self.status}), from {self.requester}, {stamp}"]
        lines.append(f"Reason: {self.reason or '(none given)'}")
        lines.append("Endpoints (each a parameter of the code; a run calls their private sides):")
        for param, path, dataset, about in self._endpoint_lines():
            lines.append(f"  {param} -> {path} (dataset {dataset})" + (f": {about}" if about else ""))
        timeout = self.record.get("timeout_s")
        lines.append(f"Code (SHA-256 {self.code_sha256[:16]}..., time limit {timeout} s):")
        width = len(str(len(self.code.splitlines()) or 1))
        for number, line in enumerate(self.code.splitlines(), 1):
            lines.append(f"  {number:>{width}} | {line}")
        if self.decided_by:
            why = f": {self.decision_reason}" if self.decision_reason else ""
            lines.append(f"Decided: {self.status} by {self.decided_by}{why}")
        if self.status in ("pending", "approved"):
            lines.append(BINDS)
        if self.status == "pending":
            lines.append(
                "Next: request.try_on_mock() runs it on the mock sides (in the server's sandbox);\n"
                'request.approve("why") or request.deny("why").'
            )
        return "\n".join(lines)

    def show(self) -> None:
        """Prints what an owner reviews before deciding: the code with line numbers, the
        endpoints with their datasets, the reason, and what an approval binds."""
        print(self.describe())

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td><code>{e(p)}</code></td><td><code>{e(path)}</code></td><td>{e(ds)}</td><td>{e(about)}</td></tr>"
            for p, path, ds, about in self._endpoint_lines()
        )
        code = "\n".join(
            f"<span style='color:#888'>{n:>3} </span>{e(line)}"
            for n, line in enumerate(self.code.splitlines(), 1)
        )
        decided = (
            f"<p>Decided: {e(str(self.status))} by {e(str(self.decided_by))}"
            + (f": {e(str(self.decision_reason))}" if self.decision_reason else "")
            + "</p>"
            if self.decided_by
            else ""
        )
        binds = f"<p><i>{e(BINDS)}</i></p>" if self.status in ("pending", "approved") else ""
        return (
            f"<div><b>Request <code>{e(self.id)}</code></b> ({e(str(self.status))}), from "
            f"{e(str(self.requester))}<br>Reason: {e(self.reason or '(none given)')}"
            "<table><tr><th>parameter</th><th>endpoint</th><th>dataset</th><th>about</th></tr>"
            f"{rows}</table><pre>{code}</pre>{decided}{binds}</div>"
        )


class Requests:
    """`client.twins.requests`: the requests the caller may see (their own; an owner's to decide)."""

    def __init__(self, client: Gatehouse):
        self._client = client

    def __repr__(self) -> str:
        return "<twin requests: .list(status=...), .get(id), or iterate>"

    def list(self, status: str | None = None) -> Listing[Request]:
        """Newest first: the caller's own, and those naming an endpoint the caller owns;
        `status` (`pending`, `approved`, `denied`, `done`, ...) filters."""
        records = self._client.get("/twins/requests", params={"status": status})
        return Listing((Request(self._client, record) for record in records), "requests")

    def __iter__(self) -> Iterator[Request]:
        return iter(self.list())

    def get(self, request_id: str) -> Request:
        return Request(self._client, {"id": request_id}).refresh()

    __getitem__ = get


def _source(fn: Callable[..., Any]) -> str:
    """The source of a function, as written in its file or notebook cell."""
    name = getattr(fn, "__name__", "the function")
    try:
        return textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        raise ValueError(
            f"the source of {name} cannot be found (Python keeps none for a function typed at the "
            f">>> prompt): define it in a file or a notebook cell, or pass its source as a string: "
            f"gh.twins.submit(code='def {name}(...):\\n    ...', endpoints={{...}})"
        ) from None


VIEW_TTL_S = 60.0  # how long an endpoint's view (for repr, help and argument checks) is reused


class Twins:
    """`client.twins`: the endpoints as attributes (`gh.twins.<TAB>` lists them), their
    definitions (admins) and code requests (`gh.twins.submit(...)`, `gh.twins.requests`)."""

    def __init__(self, client: Gatehouse):
        self._client = client
        self.requests = Requests(client)
        self._views: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._paths: tuple[float, builtins.list[str]] | None = None

    def refresh(self) -> None:
        """Forgets the endpoints' views read so far (they are read again when needed)."""
        self._views.clear()
        self._paths = None

    def _view(self, path: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The endpoint's view (cached a minute), None when there is no such endpoint."""
        cached = self._views.get(path)
        if cached and not fresh and time.monotonic() - cached[0] < VIEW_TTL_S:
            return cached[1]
        try:
            view: dict[str, Any] | None = self._client.get(f"/twins/{path}")
        except (errors.NotFound, errors.Forbidden, errors.BadRequest, errors.ValidationError):
            view = None
        self._views[path] = (time.monotonic(), view)
        return view

    def _all_paths(self) -> builtins.list[str]:
        if self._paths is None or time.monotonic() - self._paths[0] >= VIEW_TTL_S:
            self._paths = (time.monotonic(), [e["path"] for e in self._client.get("/twins")])
        return self._paths[1]

    def _children(self, prefix: str) -> builtins.list[str]:
        """The next names of the endpoints under `prefix` ("" for the first names)."""
        start = f"{prefix}." if prefix else ""
        return sorted({p[len(start) :].split(".")[0] for p in self._all_paths() if p.startswith(start)})

    def __repr__(self) -> str:
        try:
            paths = self._all_paths()
        except errors.GatehouseError:
            paths = []
        shown = ", ".join(paths) if paths else "none visible"
        return f"<twin endpoints: {shown}; call gh.twins.<path>(...); .list(), .submit(...), .requests>"

    def __dir__(self) -> builtins.list[str]:
        own = [n for n in type(self).__dict__ if not n.startswith("_")] + ["requests"]
        try:
            return sorted(set(own) | set(self._children("")))
        except errors.GatehouseError:
            return sorted(own)

    def __getattr__(self, name: str) -> Endpoint:
        if name.startswith("_"):
            raise AttributeError(name)
        return Endpoint(self._client, name, self)

    def __getitem__(self, path: str) -> Endpoint:
        return Endpoint(self._client, path, self)

    def list(self) -> Listing[EndpointInfo]:
        """The endpoints the caller may see."""
        return listing(self._client.get("/twins"), EndpointInfo, "twin endpoints")

    def define(self, definition: dict[str, Any] | None = None, **fields: Any) -> Record:
        """Creates an endpoint (admins): `path`, `description`, `dataset`, `public` or `mock` +
        `private` (`{"code", "helpers"?, "settings"?}`), ... -> its view."""
        self.refresh()
        return Record(self._client.post("/twins", json={**(definition or {}), **fields}))

    def update(self, path: str, **fields: Any) -> Record:
        self.refresh()
        return Record(self._client.patch(f"/twins/{path}", json=fields))

    def remove(self, path: str) -> None:
        self.refresh()
        self._client.delete(f"/twins/{path}")

    def submit(
        self,
        fn: Callable[..., Any] | str | None = None,
        endpoints: dict[str, Endpoint | str] | None = None,
        reason: str | None = None,
        *,
        code: str | None = None,
        timeout_s: float | None = None,
    ) -> Request:
        """Asks the endpoints' owners to run your code over their private sides -> the pending
        Request; once approved, `request.run()` runs it (once) and returns its result.

        The code is a function whose parameters are the keys of `endpoints` (`{parameter:
        endpoint}`, an endpoint or its path); inside it each parameter is the endpoint
        (`query(sql=...)`, `query.mock(...)`). Pass the function (defined in a file or a
        notebook cell, whose source Python keeps), or its source as a string (`code=`, or in
        place of the function): a function typed at a plain `>>>` prompt has no source to send."""
        if code is None and fn is None:
            raise TypeError("submit() needs the code: a function, or its source as code='def f(...): ...'")
        if code is None:
            code = fn if isinstance(fn, str) else _source(fn)  # type: ignore[arg-type]
        if not endpoints:
            raise TypeError("submit() needs endpoints={parameter: endpoint}, one per parameter of the code")
        body: dict[str, Any] = {"endpoints": {k: _path_of(v) for k, v in endpoints.items()}, "code": code}
        if reason:
            body["reason"] = reason
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        return Request(self._client, self._client.post("/twins/requests", json=body))

    def job(self, job_id: str) -> Job:
        """A job started earlier (by its id), read once."""
        job = Job(self._client, job_id)
        job.status()
        return job
