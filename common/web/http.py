"""Routing, request and response, the error envelope, CORS and request ids, for every function.

A function builds one `App`, declares its routes as a table (`@app.get(path, check=...)`) and
exposes `handle(request)` to functions-framework. The flow of one request:
route match -> CORS preflight -> authentication (who; a step the app is given, so this module
knows nothing of tokens or roles) -> the route's check (may they; it hands the handler what it
loaded to decide) -> body model -> handler.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import functions_framework
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, MapAdapter, Rule
from werkzeug.utils import import_string
from werkzeug.wrappers import Request, Response

from common import errors, jsonio, logs
from common.config import settings
from common.storage import deadlines, failures
from common.web import clio

# Who is calling: the app's authentication step (common.identity.auth.authenticate), run before a route's
# check. It returns the caller the checks and handlers read as `req.caller`, or raises.
Authenticate = Callable[[Request], Any]

JSON_LIMIT = 1 << 20  # SPEC §1: request bodies above 1 MiB -> 413
MAX_QUERY_VALUE_BYTES = 1500  # what Firestore can compare in a filter
# curl -d sends form-urlencoded by default; the seed's curl lines must work, so that is read as JSON too.
_JSON_CONTENT_TYPES = {"", "application/json", "application/x-www-form-urlencoded", "text/plain"}
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Range, Idempotency-Key"
CORS_EXPOSED = "X-Request-Id, Link, Location, Retry-After"
_ROUTE, _CALLER = "gatehouse.route", "gatehouse.caller"  # set in the WSGI environ for the log line


class Check:
    """A route's check, run after authentication with the path parameters: raises
    Forbidden/NotFound, or returns what it loaded to decide (the dataset, the endpoint, the
    request), by name. The handler receives each as a keyword argument beside the path
    parameters, so what was checked is what is used, and nothing is looked up twice."""

    def __init__(self, describe: str, run: Callable[[Req, dict[str, Any]], Mapping[str, Any] | None]):
        self.describe = describe
        self.run = run


@dataclass(eq=False)  # hashed by identity: werkzeug keys its rules by endpoint
class Route:
    method: str
    path: str
    handler: Callable[..., Any]
    check: Check | None  # None only for the public meta routes
    body: Any = None  # a pydantic type; validated strictly into req.body
    status: int = 200
    max_body: int = JSON_LIMIT
    multipart: bool = False
    query: Any = None  # a models.Query class: the route's query parameters, typed into req.query
    body_required: bool = True  # False: an empty body gives req.body None
    max_items: int | None = None  # a JSON array body longer than this is 413, before validation
    answers: tuple[int, ...] = ()  # statuses the handler answers beyond the pipeline's (OpenAPI)
    doc: str | None = None  # the summary, when not the handler's docstring
    operation_id: str | None = None  # the OpenAPI operationId, when not the handler's name
    # What a success answers (fields beyond it are dropped): a pydantic type, or its name as
    # "module:Name", imported on first use, so that a function whose first answer needs no
    # model loads no pydantic at cold start (roles). Read it as `response`.
    declared_response: Any = None
    clio: bool = False  # one of clio's /v2 routes (common.web.clio): lenient, as clio's clients expect

    @functools.cached_property
    def response(self) -> Any:
        """The response type (imported here when declared by name), or None."""
        if isinstance(self.declared_response, str):
            return import_string(self.declared_response)
        return self.declared_response

    @functools.cached_property
    def adapter(self) -> Any:
        """The body type's TypeAdapter, built on the route's first request (not at import: cold
        start), or None."""
        from pydantic import TypeAdapter  # lazy: a function without bodies may never need pydantic

        return None if self.body is None else TypeAdapter(self.body)

    @functools.cached_property
    def response_adapter(self) -> Any:
        """The response type's TypeAdapter, built on the route's first answer (not at import:
        cold start), or None."""
        from pydantic import TypeAdapter  # lazy: a function without models may never need pydantic

        return None if self.response is None else TypeAdapter(self.response)

    @functools.cached_property
    def item_adapter(self) -> Any:
        """For a `list[X]` or `dict[str, X]` response, X's adapter: a streamed answer applies
        it item by item (common.web.http.public_items)."""
        from pydantic import TypeAdapter  # lazy: a function without models may never need pydantic

        origin = typing.get_origin(self.response)
        if origin not in (list, dict):
            return None
        return TypeAdapter(typing.get_args(self.response)[-1])

    def public(self, value: Any, adapter: Any = None) -> Any:
        """`value` as the response type says: validated (a stored document that no longer fits
        is our bug, a 500, never a leak) and with fields the type does not declare dropped.
        What `trusted` made (an item, or a list of them) is in that shape already: sent as it is."""
        if isinstance(value, Trusted) or (
            type(value) is list and value and all(isinstance(v, Trusted) for v in value)
        ):
            return value
        adapter = adapter or self.response_adapter
        return adapter.dump_python(adapter.validate_python(value), by_alias=True, exclude_unset=True)

    @property
    def summary(self) -> str:
        return (self.doc or self.handler.__doc__ or self.handler.__name__).strip().splitlines()[0]

    @property
    def name(self) -> str:
        return self.operation_id or self.handler.__name__.lstrip("_")


class Req:
    """What a handler receives besides its path parameters."""

    __slots__ = ("raw", "id", "caller", "body", "query", "route")

    def __init__(self, raw: Request, request_id: str, route: Route):
        self.raw, self.id, self.route = raw, request_id, route
        self.caller: Any = None
        self.body: Any = None
        self.query: Any = None  # an instance of the route's query model

    @property
    def args(self):
        return self.raw.args


def query_names(model: Any) -> list[str]:
    """The query parameters a query model declares (a field's alias when it has one: `async`)."""
    fields = model.model_fields if model is not None else {}
    return [info.alias or name for name, info in fields.items()]


class Trusted(dict):
    """An answer already in its response model's shape (made by `trusted`)."""

    __slots__ = ()


@functools.cache
def _declared(model: Any) -> tuple[str, ...]:
    return tuple(info.alias or name for name, info in model.model_fields.items())


def trusted(model: Any, record: dict[str, Any]) -> Trusted:
    """`record`, a document this code wrote from a validated body in `model`'s shape, as its
    answer without a pydantic round trip: the fields `model` declares, in its order, as
    validation would give them. tests/integration/conftest.py checks every answer of the test
    session against its route's response model, these included."""
    return Trusted({k: record[k] for k in _declared(model) if k in record})


def public_item(req: Req, item: Any) -> Any:
    """One item of a streamed list (or one value of a streamed map), shaped by the route's
    response model (`list[X]` / `dict[str, X]`): App._to_response cannot see inside a stream."""
    adapter = req.route.item_adapter
    return item if adapter is None else req.route.public(item, adapter)


def public_items(req: Req, items: Iterable[Any]) -> Iterable[Any]:
    return (public_item(req, item) for item in items)


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(jsonio.dumps(value), status=status, headers=headers, mimetype="application/json")


def streamed(chunks: Iterable[bytes], headers: dict[str, str] | None = None) -> Response:
    """A JSON response sent as it is produced (see common.jsonio.stream_*). Its first chunk is
    made here, before the status is sent, so a query that fails at once is an error answer; one
    that fails later cuts the body short (never a closed, complete-looking list)."""
    chunks = iter(chunks)
    first = next(chunks, None)
    body = chunks if first is None else itertools.chain([first], chunks)
    return Response(body, status=200, headers=headers, mimetype="application/json", direct_passthrough=True)


def paged(
    req: Req,
    page: Any,
    view: Callable[[Any], Any],
    limit: int | None,
    keep: Callable[[Any], bool] | None = None,
) -> Any:
    """A list route's answer (SPEC §1 Lists) from a `store.Page`: the whole list streamed when
    there is no `limit`; otherwise one page, with `Link: <...cursor=...>; rel="next"` when there
    may be more. `keep` leaves items out (e.g. what EXPOSE hides); the cursor still moves past them."""
    items = (view(snap) for snap in page if keep is None or keep(snap))
    if limit is None:
        # Shaped item by item as it streams; a page's list is shaped whole in App._to_response.
        return streamed(jsonio.stream_array(public_items(req, items)))
    listed = list(items)
    cursor = page.next_cursor()
    if not cursor:
        return listed
    query = urlencode({**{k: v for k, v in req.args.items() if k != "cursor"}, "cursor": cursor})
    return listed, 200, {"Link": f'<{req.raw.base_url}?{query}>; rel="next"'}


def _answer_unrouted_paths() -> None:
    """A path functions-framework itself cannot route (e.g. one with a newline) gets our 404
    envelope, not its HTML page. Registered on the app functions-framework is creating."""

    def not_found(_exc):
        request_id = uuid.uuid4().hex
        response = error_response(errors.NotFound("no such route"), request_id)
        response.headers["X-Request-Id"] = request_id
        return response

    try:
        functions_framework.errorhandler(404)(not_found)
    except AssertionError:  # an App made outside functions-framework, after its app served (tests)
        pass


def error_response(error: errors.ApiError, request_id: str, *, detail: bool = False) -> Response:
    """The error envelope; `detail` adds the message again as `detail`, where clio's clients
    read it (on its /v2 routes)."""
    body: dict[str, Any] = {"error": error.code, "message": error.message, "request_id": request_id}
    if error.details is not None:
        body["details"] = error.details
    if detail:
        body["detail"] = error.message
    return json_response(body, error.status, error.headers)


def validation_details(exc: Any) -> list[dict[str, Any]]:
    """pydantic's errors without the rejected input (it may hold secrets)."""
    return [
        {"loc": list(e["loc"]), "message": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


class _Table:
    """`@x.get(path, ...)` and friends, for an App and for a Router."""

    route: Callable[..., Callable[[Callable[..., Any]], Callable[..., Any]]]  # (method, path, **options)

    def get(self, path: str, **kw):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.route("PUT", path, **kw)

    def patch(self, path: str, **kw):
        return self.route("PATCH", path, **kw)

    def delete(self, path: str, **kw):
        return self.route("DELETE", path, **kw)


class Router(_Table):
    """Routes declared apart from an App, with the same decorators (Powertools' Router): a
    function includes them with `app.include_router(router, prefix=...)`."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, str, dict[str, Any], Callable[..., Any]]] = []

    def route(self, method: str, path: str, **kw: Any):
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.routes.append((method, path, kw, handler))
            return handler

        return register


class App(_Table):
    """One HTTP function: its route table and the pipeline every request goes through."""

    def __init__(self, name: str, description: str = "", *, authenticate: Authenticate | None = None):
        self.name = name
        self.authenticate = authenticate
        self.prefix = "/" + name
        # clio's /v2/<resource> routes this function serves beside its own (common.web.clio).
        self.clio_prefixes = tuple(f"{clio.ROOT}/{r}" for r, f in clio.RESOURCES.items() if f == name)
        self.description = description
        self.settings = settings()  # a forbidden configuration stops start-up here
        self.routes: list[Route] = []
        self._map = Map(strict_slashes=False, merge_slashes=False)
        self._adapter: MapAdapter | None = None
        _answer_unrouted_paths()
        self.get(self.prefix + "/_health", public=True)(self._health)
        self.get(self.prefix + "/_openapi.json", public=True)(self._openapi)
        self.get(self.prefix + "/_docs", public=True)(self._docs)
        self.get(self.prefix + "/_docs/<asset>", public=True)(self._docs_asset)

    # -- the route table -------------------------------------------------------------------
    def route(
        self,
        method: str,
        path: str,
        *,
        check: Check | None = None,
        public: bool = False,
        body: Any = None,
        status: int = 200,
        max_body: int = JSON_LIMIT,
        multipart: bool = False,
        query: Any = None,
        body_required: bool = True,
        max_items: int | None = None,
        answers: tuple[int, ...] = (),
        summary: str | None = None,
        operation_id: str | None = None,
        response: Any = None,
    ):
        is_clio = self._serves_clio(path)
        if not path.startswith(self.prefix) and not is_clio:
            raise ValueError(f"{path} is outside {self.prefix} (and clio's /v2 routes of {self.name})")
        if check is None and not public:
            raise ValueError(f"{method} {path} has no check")
        if check is not None and self.authenticate is None:
            raise ValueError(f"{method} {path} has a check, but the app has no authenticate step")

        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            route = Route(
                method,
                path,
                handler,
                check,
                body,
                status,
                max_body,
                multipart,
                query,
                body_required,
                max_items,
                answers,
                doc=summary,
                operation_id=operation_id,
                declared_response=response,
                clio=is_clio,
            )
            self.routes.append(route)
            self._map.add(Rule(path, methods=[method], endpoint=route))
            self._adapter = None
            return handler

        return register

    def include_router(self, router: Router, prefix: str = "") -> None:
        """Add `router`'s routes at `prefix` + their paths (each with its own check)."""
        for method, path, kw, handler in router.routes:
            self.route(method, prefix + path, **kw)(handler)

    # -- serving ---------------------------------------------------------------------------
    def __call__(self, request: Request) -> Response:
        # Always our own id (in the answer, the log and audit entries); a caller's id is echoed
        # apart, so it can never name or collide with an audit entry.
        request_id = uuid.uuid4().hex
        client_id = request.environ.get("HTTP_X_REQUEST_ID", "")  # request.headers.get, unparsed
        started = time.perf_counter()
        failure = None
        try:
            with deadlines.request_budget():  # a bounded wait on Firestore / Cloud Storage
                response = self._dispatch(request, request_id)
        except errors.ApiError as exc:
            response = error_response(exc, request_id, detail=self._clio_path(request))
        except Exception as exc:
            # Backend failures are answered in one place (common.storage.failures); the rest are ours.
            error = failures.answer(exc) or errors.ApiError()
            response = error_response(error, request_id, detail=self._clio_path(request))
            failure = exc  # its stack trace goes to the log line, never to the caller
        response.headers["X-Request-Id"] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        if _REQUEST_ID.fullmatch(client_id):
            response.headers["X-Client-Request-Id"] = client_id
        self._add_cors(request, response)
        logs.request_line(
            request=request,
            response=response,
            project=self.settings.project,
            function=self.name,
            route=request.environ.get(_ROUTE),
            caller=request.environ.get(_CALLER),
            request_id=request_id,
            seconds=time.perf_counter() - started,
            exc=failure,
        )
        return response

    def _path(self, request: Request) -> str:
        # Mounted under a gateway (SCRIPT_NAME=/name) or called at the function's own URL (no
        # prefix): either way route on the full /name/... path the spec writes.
        # clio's /v2/<resource> paths of this function are routed as they are; any other path
        # (`/v2/mb20` at the annotations function's own URL is its `/annotations/v2/mb20`) is
        # prefixed.
        path = (request.script_root + request.path) or "/"
        if path != self.prefix and not path.startswith(self.prefix + "/") and not self._serves_clio(path):
            path = self.prefix + path
        return path.rstrip("/") or "/"

    def _serves_clio(self, path: str) -> bool:
        return any(path == p or path.startswith(p + "/") for p in self.clio_prefixes)

    def _clio_path(self, request: Request) -> bool:
        """Whether the request is for clio's /v2 API (its errors also carry `detail`)."""
        return clio.under_root(self._path(request))

    def _dispatch(self, request: Request, request_id: str) -> Response:
        if request.method == "OPTIONS":
            return Response(status=204)
        if self._adapter is None:
            self._adapter = self._map.bind("gatehouse", "/")
        if _ENCODED_SLASH in _raw_path(request):
            # The server decoded it into the path: routed, it would split a segment in two.
            raise errors.NotFound("no such route ('/' cannot be sent encoded inside a path segment)")
        try:
            route, params = self._adapter.match(self._path(request), method=request.method)
        except MethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.valid_methods or []))
            raise errors.MethodNotAllowed(headers={"Allow": allowed}) from None
        except (NotFound, HTTPException):
            raise errors.NotFound("no such route") from None
        request.environ[_ROUTE] = route.path  # for the log line: the template, not the raw path
        self._check_query_names(request, route)
        req = Req(request, request_id, route)
        if route.check is not None and self.authenticate is not None:
            req.caller = self.authenticate(request)
            request.environ[_CALLER] = req.caller.email
            params = {**params, **(route.check.run(req, params) or {})}
        req.query = self._parse_query(request, route)
        if route.body is not None:
            req.body = self._parse_body(request, route)
        elif route.multipart:
            self._check_multipart(request, route)
        result = route.handler(req, **params)
        return self._to_response(result, route)

    @staticmethod
    def _check_query_names(request: Request, route: Route) -> None:
        """Before anything else: an unknown query parameter, or an overlong value, is 400 naming it
        (on clio's routes an unknown one is ignored: its clients add `app=...` to every call)."""
        if not request.environ.get("QUERY_STRING"):
            return  # most requests: nothing to parse
        fields = query_names(route.query)
        unknown = sorted(set(request.args) - set(fields))
        if unknown and not route.clio:
            known = ", ".join(fields) or "none"
            raise errors.BadRequest(
                f"unknown query parameter {unknown[0]!r} (this route takes: {known})",
                details={"unknown": unknown},
            )
        for name, value in request.args.items(multi=True):
            if (
                name != "cursor"
                and name in fields
                and len(value.encode("utf-8", "surrogatepass")) > MAX_QUERY_VALUE_BYTES
            ):
                raise errors.BadRequest(
                    f"query parameter {name!r} is longer than {MAX_QUERY_VALUE_BYTES} bytes"
                )

    @staticmethod
    def _parse_query(request: Request, route: Route) -> Any:
        """The route's query model from the query string (after the check, like the body):
        a value of the wrong type or range is 400 naming it. An empty value counts as not given."""
        if route.query is None:
            return None
        from pydantic import ValidationError  # lazy: loaded with the query model already

        known = set(query_names(route.query))
        given = {name: value for name, value in request.args.items() if value != "" and name in known}
        try:
            return route.query.model_validate(given)
        except ValidationError as exc:
            details = validation_details(exc)
            first = details[0]
            raise errors.BadRequest(
                f"query parameter {'.'.join(map(str, first['loc']))!r}: {first['message']}",
                details=details,
            ) from None

    def _parse_body(self, request: Request, route: Route) -> Any:
        from pydantic import ValidationError  # lazy: loaded with the body model already

        data = read_json_body(request, route.max_body, required=route.body_required)
        if not data:
            return None
        value = jsonio.loads(data)  # NaN, Infinity, deep nesting and lone surrogates end here
        try:
            # clio's clients were written against pydantic v1's coercion ("1" -> 1): lax on /v2.
            strict = not route.clio
            if route.max_items is None:
                return route.adapter.validate_json(data, strict=strict)
            if isinstance(value, list) and len(value) > route.max_items:
                raise errors.PayloadTooLarge(f"at most {route.max_items} items per request, not {len(value)}")
            return route.adapter.validate_python(value, strict=strict)
        except ValidationError as exc:
            details = validation_details(exc)
            if any(d["type"] == "json_invalid" for d in details):
                raise errors.BadRequest("malformed JSON: " + details[0]["message"]) from None
            raise errors.ValidationFailed(details=details) from None

    @staticmethod
    def _check_multipart(request: Request, route: Route) -> None:
        if request.mimetype != "multipart/form-data":
            raise errors.UnsupportedMediaType("send multipart/form-data")
        if request.content_length is not None and request.content_length > route.max_body:
            raise errors.PayloadTooLarge(f"the upload is larger than {route.max_body} bytes")
        request.max_content_length = route.max_body
        try:
            request.form  # noqa: B018 -- parse now, so a size error is a 413 here and not a 500 later
        except RequestEntityTooLarge:
            raise errors.PayloadTooLarge(f"the upload is larger than {route.max_body} bytes") from None

    @staticmethod
    def _to_response(result: Any, route: Route) -> Response:
        if isinstance(result, Response):
            return result
        status, headers = route.status, None
        if isinstance(result, tuple):
            result, status, *rest = result
            headers = rest[0] if rest else None
        if status == 204:
            return Response(status=204, headers=headers)
        if route.response is not None and status == route.status:  # the one place a response model applies
            result = route.public(result)
        return json_response(result, status, headers)

    def _add_cors(self, request: Request, response: Response) -> None:
        origin = request.environ.get("HTTP_ORIGIN")  # request.headers.get, unparsed
        allowed = self.settings.allowed_origins
        if not origin:
            return
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.vary.add("Origin")
        elif "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"  # never with credentials
        else:
            return
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
            response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
            response.headers["Access-Control-Max-Age"] = "3600"

    # -- meta routes -----------------------------------------------------------------------
    def _health(self, req: Req) -> dict[str, str]:
        """Liveness: the function's name and version."""
        return {"status": "ok", "function": self.name, "version": self.settings.version}

    def _openapi(self, req: Req) -> dict[str, Any]:
        """This function's OpenAPI 3.1 document, generated from its route table."""
        from common.web import openapi  # lazy: only this route needs it (and all of pydantic)

        return openapi.document(self)

    def _docs(self, req: Req) -> Response:
        """This function's browsable documentation (Swagger UI)."""
        from common.web import docs  # lazy: only the docs page needs it

        return docs.page(f"Gatehouse {self.name}", req.raw.path.endswith("/"))

    def _docs_asset(self, req: Req, asset: str) -> Response:
        """A file of the documentation page (shipped in a package, never a CDN)."""
        from common.web import docs  # lazy: only the docs page needs it

        return docs.asset(asset)


_ENCODED_SLASH = "%2f"


def _raw_path(request: Request) -> str:
    """The path as the client sent it, before the server decoded it (lower-cased), where the
    server keeps it (gunicorn and werkzeug both do); else the decoded one."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    return raw.partition("?")[0].lower()


def read_json_body(request: Request, limit: int, *, required: bool = True) -> bytes:
    """The raw bytes of a JSON body: 415 for another content type, 413 above `limit`,
    400 when a required body is empty (b"" when an optional one is)."""
    if request.mimetype not in _JSON_CONTENT_TYPES:
        raise errors.UnsupportedMediaType(
            f"send JSON (Content-Type: application/json), not {request.mimetype}"
        )
    data = _read_limited(request, limit)
    if not data.strip():
        if required:
            raise errors.BadRequest("a JSON body is required")
        return b""
    return data


def _read_limited(request: Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise errors.PayloadTooLarge(f"the body is larger than {limit} bytes")
    data = request.stream.read(limit + 1)  # chunked bodies carry no length: read one byte past
    if len(data) > limit:
        raise errors.PayloadTooLarge(f"the body is larger than {limit} bytes")
    return data
