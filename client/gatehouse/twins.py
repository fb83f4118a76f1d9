"""Twin endpoints, read like PySyft's: a dotted path is a chain of attributes.

    gh.twins.warehouse.query(sql="SELECT ...")          # the default side (private for owners, else mock)
    gh.twins.warehouse.query.mock(sql="SELECT ...")     # the mock side
    gh.twins.warehouse.query.private(sql="...")         # the private side (owners)
    job = gh.twins.warehouse.query.call_async(sql="...") ; job.wait()
    request = gh.twins.submit(my_analysis, endpoints={"wh": gh.twins.warehouse.query}, reason="...")
    request.run()                                       # once an owner approved it
    gh.twins.requests.list(); gh.twins.requests.get(id).approve()   # owners

A path whose first name is one of this object's own (`list`, `define`, `submit`, ...) is
reached as `gh.twins["list.x"]`.
"""

from __future__ import annotations

import inspect
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gatehouse import errors
from gatehouse._http import segment
from gatehouse.records import EndpointInfo, Listing, listing

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
            return self.record.get("result")
        raise self._error()

    def _error(self) -> errors.GatehouseError:
        error = self.record.get("error")
        if isinstance(error, dict) and isinstance(error.get("error"), str):
            status = int(self.record.get("http_status") or _CODE_STATUS.get(error["error"], 500))
            return errors.from_envelope(status, error)
        return errors.JobFailed(500, "job_failed", str(error or "the job failed"), None, self.record)


class Side:
    """One side of an endpoint (`mock` or `private`): call it, or `call_async` it."""

    def __init__(self, endpoint: Endpoint, side: str):
        self._endpoint, self.side = endpoint, side

    def __repr__(self) -> str:
        return f"<twin endpoint {self._endpoint.path} ({self.side} side)>"

    def __call__(self, **kwargs: Any) -> Any:
        return self._endpoint._call(self.side, kwargs)

    def call_async(self, **kwargs: Any) -> Job:
        return self._endpoint._call_async(self.side, kwargs)


class Endpoint:
    """A twin endpoint, or a prefix of one: attributes extend the dotted path."""

    def __init__(self, client: Gatehouse, path: str):
        self._client, self.path = client, path

    def __repr__(self) -> str:
        return f"<twin endpoint {self.path}>"

    def __getattr__(self, name: str) -> Endpoint:
        if name.startswith("_"):
            raise AttributeError(name)
        return Endpoint(self._client, f"{self.path}.{name}")

    def __getitem__(self, name: str) -> Endpoint:
        return Endpoint(self._client, f"{self.path}.{name}")

    def __call__(self, **kwargs: Any) -> Any:
        """Calls the default side (private for the endpoint's owners, mock for everyone else) -> its result."""
        return self._call(None, kwargs)

    @property
    def mock(self) -> Side:
        return Side(self, "mock")

    @property
    def private(self) -> Side:
        return Side(self, "private")

    def call_async(self, **kwargs: Any) -> Job:
        """Starts a call of the default side in the background -> a Job (`job.wait()` -> result)."""
        return self._call_async(None, kwargs)

    def info(self, *, full: bool = False) -> dict[str, Any]:
        """The endpoint's view: description, parameters (JSON schema), the mock's source unless
        hidden; `full=True` (admins) adds every side's source, settings and state."""
        return self._client.get(f"/twins/{self.path}", params={"full": "true" if full else None})

    def calls(self, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """The endpoint's call records with captured output, newest first (owners)."""
        return self._client.pages(f"/twins/{self.path}/calls", page_size=page_size)

    def _url(self, side: str | None) -> str:
        return f"/twins/{self.path}" + (f"/{side}" if side else "")

    def _call(self, side: str | None, kwargs: dict[str, Any]) -> Any:
        timeout = max(self._client.timeout, CALL_TIMEOUT_S)
        return self._client.post(self._url(side), json=kwargs, timeout=timeout)["result"]

    def _call_async(self, side: str | None, kwargs: dict[str, Any]) -> Job:
        response = self._client.post(self._url(side), params={"async": "1"}, json=kwargs, raw=True)
        return _job_from(self._client, response)


class Request:
    """A request to run code over private endpoints, which an owner approves or denies:
    `id`, `status` (`pending`, `approved`, `denied`, ...), and the server's `record`."""

    def __init__(self, client: Gatehouse, record: dict[str, Any]):
        self._client, self.record = client, record

    id = property(lambda self: self.record["id"])
    status = property(lambda self: self.record.get("status"))

    def __repr__(self) -> str:
        return f"Request({self.id!r}, status={self.status!r}, endpoints={self.record.get('endpoints')!r})"

    def _url(self, action: str = "") -> str:
        return f"/twins/requests/{segment(self.id)}" + (f"/{action}" if action else "")

    def refresh(self) -> Request:
        self.record = self._client.get(self._url())
        return self

    def approve(self, reason: str | None = None) -> Request:
        """Approves the request (owners of every endpoint it names)."""
        self.record = self._client.post(self._url("approve"), json={"reason": reason} if reason else {})
        return self

    def deny(self, reason: str | None = None) -> Request:
        self.record = self._client.post(self._url("deny"), json={"reason": reason} if reason else {})
        return self

    def run(self) -> Any:
        """Runs the approved code over the private endpoints -> its result."""
        timeout = max(self._client.timeout, CALL_TIMEOUT_S)
        return self._client.post(self._url("run"), timeout=timeout)["result"]

    def run_async(self) -> Job:
        response = self._client.post(self._url("run"), params={"async": "1"}, raw=True)
        return _job_from(self._client, response)


class Requests:
    """`client.twins.requests`: the requests the caller may see (their own; an owner's to decide)."""

    def __init__(self, client: Gatehouse):
        self._client = client

    def __repr__(self) -> str:
        return "<twin requests: .list(), .get(id), or iterate>"

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


class Twins:
    """`client.twins`: endpoints as attributes, their definitions (admins) and code requests."""

    def __init__(self, client: Gatehouse):
        self._client = client
        self.requests = Requests(client)

    def __repr__(self) -> str:
        return "<twin endpoints: .list(), or gh.twins.<path> to call one>"

    def __getattr__(self, name: str) -> Endpoint:
        if name.startswith("_"):
            raise AttributeError(name)
        return Endpoint(self._client, name)

    def __getitem__(self, path: str) -> Endpoint:
        return Endpoint(self._client, path)

    def list(self) -> Listing[EndpointInfo]:
        """The endpoints the caller may see."""
        return listing(self._client.get("/twins"), EndpointInfo, "twin endpoints")

    def define(self, definition: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Creates an endpoint (admins): `path`, `description`, `dataset`, `public` or `mock` +
        `private` (`{"code", "helpers"?, "settings"?}`), ... -> its view."""
        return self._client.post("/twins", json={**(definition or {}), **fields})

    def update(self, path: str, **fields: Any) -> dict[str, Any]:
        return self._client.patch(f"/twins/{path}", json=fields)

    def remove(self, path: str) -> None:
        self._client.delete(f"/twins/{path}")

    def submit(
        self,
        fn: Callable[..., Any] | str,
        endpoints: dict[str, Endpoint | str],
        reason: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Request:
        """Asks the endpoints' owners to run `fn` over their private sides: its source (a
        function, as written in its file, or the source text) goes to `POST /twins/requests`
        with `endpoints` `{parameter: endpoint}`; inside it each parameter is the endpoint
        (`query(sql=...)`, `query.mock(...)`). Returns the pending Request; once approved,
        `request.run()` runs it (once) and returns its result."""
        code = fn if isinstance(fn, str) else textwrap.dedent(inspect.getsource(fn))
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
