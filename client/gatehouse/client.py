"""`Gatehouse(url)`: one session against a Gatehouse deployment (its gateway URL, or `make dev`'s
http://127.0.0.1:8080), with each resource as an attribute."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import requests

from gatehouse import errors, resources, twins
from gatehouse._http import RETRY_STATUSES, next_cursor, pages, retry_after, segment
from gatehouse._version import __version__
from gatehouse.auth import Auth, Credentials

# The names this module had before `_http.py` (kept for code that imported them from here).
_retry_after, _next_cursor = retry_after, next_cursor
__all__ = ["Gatehouse", "RETRY_STATUSES", "segment"]


def _series(version: str) -> tuple[int, ...] | None:
    """(major, minor) of `1.2.3[+build]`, or (0, minor) series for 0.x; None when not a release."""
    core = version.split("+")[0].split("-")[0].split(".")
    try:
        major, minor = int(core[0]), int(core[1])
    except (IndexError, ValueError):
        return None
    return (major, minor) if major == 0 else (major,)


class Gatehouse:
    """A client of one Gatehouse deployment.

    >>> gh = Gatehouse("http://127.0.0.1:8080")            # token from the environment, a saved key or gcloud
    >>> gh = Gatehouse(url, token="...")                     # or api_key="ghk_..."
    >>> gh.datasets.list(); gh.annotations.list("manc"); gh.twins.warehouse.query(sql="SELECT 1")
    >>> with Gatehouse(url) as gh: ...                       # closes its connections at the end

    Its resources, each an attribute (`help(gh.datasets)` and so on):

    - `datasets`: dataset metadata, attachments, finalize, audit logs, deletion
    - `annotations`: typed annotations (version 2; version 1 as `annotations.v1`), data frames
    - `savedsearches`: the caller's saved searches
    - `atlas`: notable places, verified by curators
    - `signatures`: the nearest point's signature, and points of similar signature
    - `transfer`: transfer-network jobs shown in neuroglancer
    - `users`, `keys`: who may do what; API keys
    - `twins`: twin endpoints (`gh.twins.<TAB>`), code requests to their owners
    - `auth`: which credentials are in use, saved keys, `login()`

    Every `list()` returns a `Listing`: an iterator of records (dicts whose fields also read as
    attributes), fetched a page at a time where the server pages.

    `retries` bounds the polite retries of 429 and 503 answers that carry Retry-After (each
    wait at most `max_wait` seconds); `timeout` is each request's, in seconds. The server's
    version is read from `/roles/_health` when the client is made (`check_version=False` skips
    it); a server of another release series is warned about (VersionMismatchWarning). A server
    that cannot be reached raises `gatehouse.Unreachable`, naming the URL.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        api_key: str | None = None,
        audience: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        max_wait: float = 30.0,
        check_version: bool = True,
        progress: bool = True,
    ):
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.max_wait, self.progress = timeout, retries, max_wait, progress
        self.version = __version__
        self.server_version: str | None = None
        self._credentials = Credentials(self.url, token, api_key, audience)
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"gatehouse-python/{__version__}"

        self.auth = Auth(self)
        self.datasets = resources.Datasets(self)
        self.annotations = resources.Annotations(self)
        self.savedsearches = resources.SavedSearches(self)
        self.atlas = resources.Atlas(self)
        self.signatures = resources.Signatures(self)
        self.transfer = resources.Transfer(self)
        self.users = resources.Users(self)
        self.keys = resources.Keys(self)
        self.twins = twins.Twins(self)
        if check_version:
            try:
                self.check_version()
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        """Closes the client's HTTP connections (a closed client opens new ones if used again)."""
        self._session.close()

    def __enter__(self) -> Gatehouse:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gatehouse({self.url!r}, credentials={self._credentials.kind!r})"

    def health(self, function: str = "roles") -> dict[str, Any]:
        """`/<function>/_health`: `{"status", "function", "version"}` (needs no token)."""
        return self.request("GET", f"/{function}/_health", auth=False)

    def check_version(self) -> str:
        """Reads the server's version; warns when its release series differs from this client's."""
        self.server_version = str(self.health().get("version", ""))
        theirs, ours = _series(self.server_version), _series(__version__)
        if theirs is not None and theirs != ours:
            warnings.warn(
                f"the server runs Gatehouse {self.server_version}, this client is {__version__}: "
                "install the client of the server's release (pip install ./client from its checkout)",
                errors.VersionMismatchWarning,
                stacklevel=3,
            )
        return self.server_version

    def whoami(self) -> dict[str, Any]:
        """`GET /roles`: the caller's email, name, global roles, per-dataset roles and groups."""
        return self.get("/roles")

    # -- HTTP ------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: Any = None,
        files: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
        auth: bool = True,
        raw: bool = False,
    ) -> Any:
        """One call: the decoded JSON answer (None for an empty one), or the response when `raw`.
        An error answer raises its GatehouseError; 429/503 with Retry-After are retried first."""
        headers = dict(headers or {})
        params = {k: v for k, v in (params or {}).items() if v is not None}
        refreshed = False
        attempt = 0
        while True:
            if auth:
                header = self._credentials.header()
                if header:
                    headers["Authorization"] = header
            try:
                response = self._session.request(
                    method,
                    self.url + path,
                    params=params,
                    json=json,
                    data=data,
                    files=files,
                    headers=headers,
                    timeout=timeout or self.timeout,
                )
            except requests.exceptions.ConnectionError as exc:
                raise self._unreachable(exc) from None
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = retry_after(response)
                if wait is not None and wait <= self.max_wait:
                    attempt += 1
                    time.sleep(wait)
                    continue
            if response.status_code == 401 and auth and not refreshed and self._credentials.refresh():
                refreshed = True  # a Google token that expired early: once more with a new one
                continue
            break
        if response.status_code >= 400:
            raise self._error(response)
        if raw:
            return response
        if not response.content:
            return None
        return response.json()

    def _error(self, response: requests.Response) -> errors.GatehouseError:
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        error = errors.from_envelope(response.status_code, body, response)
        if response.status_code == 401:
            error._reword(error.message + self._credentials.refused_hint())
        return error

    def _unreachable(self, exc: requests.exceptions.ConnectionError) -> errors.Unreachable:
        """A server that did not answer, said in words a person can act on."""
        text = str(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            why = "its TLS certificate was not accepted"
        elif isinstance(exc, requests.exceptions.ConnectTimeout):
            why = "connecting timed out"
        elif "refused" in text.lower():
            why = "the connection was refused: nothing listens there"
        elif "resolve" in text.lower() or "name or service" in text.lower() or "getaddrinfo" in text.lower():
            why = "its host name does not resolve"
        else:
            why = "the connection failed"
        message = (
            f"cannot reach the Gatehouse server at {self.url} ({why}). Check the URL (the "
            "deployment's gateway URL, or http://127.0.0.1:8080 for the local stack), that the "
            "server is running (`make dev` in a Gatehouse checkout starts the local one), and any "
            "proxy or VPN on the way."
        )
        return errors.Unreachable(0, "unreachable", message, None, {"url": self.url, "cause": text})

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def patch(self, path: str, **kw: Any) -> Any:
        return self.request("PATCH", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def pages(self, path: str, params: dict[str, Any] | None = None, page_size: int = 1000) -> Iterator[Any]:
        """Every item of a paged list, fetched a page at a time by following its cursors."""
        return pages(self.request, path, params, page_size)
