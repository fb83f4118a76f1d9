"""neuprint: clio's neuPrint proxy at clio's path, `POST /v2/neuprint/{ds}`: the clio website's
connections panel sends Cypher here, and the answer is neuPrint's.

A dataset's metadata `neuprintHTTP` names its neuPrint server (`server`) and its dataset there
(`dataset`, by default the dataset's own name); only admins set it, since it says where this
deployment's neuPrint token (NEUPRINT_TOKEN) is sent. A caller who may read the dataset may
query that neuPrint dataset or a version of it (`<dataset>:<tag>`), nothing else: clio forwarded
any dataset named in the body with its own service token. neuPrint's answer is passed on as it
came, bytes unchanged and streamed (body ids are 64-bit integers).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Annotated, Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints
from werkzeug.wrappers import Response

from common import errors
from common.config import settings
from common.identity import auth, authz
from common.models import Lenient, Public
from common.storage import failures
from common.storage.datasets import Dataset
from common.web.http import App
from common.web.openapi import ERRORS

app = App(
    "neuprint",
    "clio's neuPrint proxy: Cypher queries to the neuPrint server a dataset names.",
    authenticate=auth.authenticate,
)

CUSTOM_QUERY = "/api/custom/custom"  # neuPrintHTTP's Cypher endpoint (it allows only reads)
CHUNK = 64 << 10
# An error answer is read (to tell neuPrint's JSON from a proxy's page) up to this size.
MAX_ERROR_BYTES = 64 << 10


class NeuprintQuery(Lenient):
    """The website's body (`NeuPrintManager.doQuery`), a string fetch() sends as text/plain."""

    cypher: Annotated[str, StringConstraints(min_length=1)] = Field(
        description="the Cypher query (neuPrint runs reads only)"
    )
    dataset: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="the neuPrint dataset: the one the dataset's `neuprintHTTP.dataset` names "
        "(default: the dataset's name), or a version of it, `<it>:<tag>`"
    )


class NeuprintResultPublic(Public):
    """neuPrint's table (passed on as neuPrint sent it)."""

    columns: list[str]
    data: list[list[Any]]


class Target(NamedTuple):
    """Where a dataset's queries go: neuPrint's custom query URL and the neuPrint dataset."""

    url: str
    host: str
    dataset: str


def destination(dataset: Dataset) -> Target:
    """The dataset's neuPrint server and dataset, from its `neuprintHTTP` metadata (400 when it
    names no usable server: its admins must fix the metadata)."""
    metadata = dataset.record.get("neuprintHTTP")
    metadata = metadata if isinstance(metadata, dict) else {}
    server = metadata.get("server")
    if not isinstance(server, str) or not server.strip():
        raise errors.BadRequest(
            f"dataset {dataset.name!r} has no neuPrint server (its metadata has no neuprintHTTP.server)"
        )
    base = _base_url(server, dataset.name)
    named = metadata.get("dataset")
    return Target(
        url=base + CUSTOM_QUERY,
        host=urlsplit(base).netloc,
        dataset=named if isinstance(named, str) and named else dataset.name,
    )


def _base_url(server: str, name: str) -> str:
    """`https://host[:port]` from `neuprintHTTP.server`, written with or without `https://`.
    `http://` only in dev mode (the local stand-in): a token never crosses a network in clear."""
    text = server.strip()
    scheme, given, rest = text.partition("://")
    scheme, rest = (scheme.lower(), rest) if given else ("https", text)
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        parts = None
    if (
        parts is None
        or scheme not in ("https", "http")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or len(text) > 2048
        or any(c.isspace() for c in text)
    ):
        raise errors.BadRequest(
            f"dataset {name!r} has neuprintHTTP.server {server[:200]!r}, which is not a neuPrint "
            "server: host[:port], optionally after https://"
        )
    if scheme == "http" and not settings().dev_mode:
        raise errors.BadRequest(
            f"dataset {name!r} has neuprintHTTP.server {server[:200]!r}: neuPrint is reached over "
            "https only (http is for a local stand-in in dev mode)"
        )
    return f"{scheme}://{parts.netloc}"


def check_dataset(asked: str, target: Target) -> None:
    """The body's `dataset` must be the dataset's neuPrint dataset or a version of it (403)."""
    prefix = target.dataset + ":"
    tag = asked.removeprefix(prefix) if asked.startswith(prefix) else ""
    if asked == target.dataset or (tag and ":" not in tag):
        return
    raise errors.Forbidden(
        f"this dataset queries neuPrint dataset {target.dataset!r} (or a version of it, "
        f"{target.dataset}:<tag>), not {asked!r}"
    )


@functools.cache
def _session():
    """One pooled HTTP session per instance. It reads no proxy or .netrc settings from the
    environment: the token goes to the dataset's server and nowhere else."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def _send(target: Target, body: bytes):
    """POST the query to neuPrint with the deployment's token; neuPrint's answer, unread.
    Unreachable or silent for NEUPRINT_TIMEOUT_SECONDS: 503 with Retry-After."""
    import requests

    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token, timeout = settings().neuprint_token, settings().neuprint_timeout_seconds
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        return _session().post(
            target.url, data=body, headers=headers, timeout=timeout, stream=True, allow_redirects=False
        )
    except requests.Timeout:
        raise failures.too_slow(f"neuPrint ({target.host})", timeout) from None
    except requests.RequestException:
        raise failures.unreachable(f"neuPrint ({target.host})") from None


def _relay(upstream) -> Iterator[bytes]:
    """neuPrint's body as it arrives. A failure midway is raised, so the server drops the
    connection and the client sees a broken answer, never a shorter one that looks whole."""
    try:
        yield from upstream.iter_content(CHUNK)
    finally:
        upstream.close()


def _read_some(upstream) -> bytes:
    """At most MAX_ERROR_BYTES + 1 bytes of an answer (enough to know it is longer)."""
    data = b""
    try:
        for chunk in upstream.iter_content(CHUNK):
            data += chunk
            if len(data) > MAX_ERROR_BYTES:
                break
    finally:
        upstream.close()
    return data[: MAX_ERROR_BYTES + 1]


def _is_json(data: bytes) -> bool:
    if len(data) > MAX_ERROR_BYTES:
        return False
    try:
        json.loads(data)
    except ValueError:
        return False
    return True


def answer(upstream, target: Target) -> Response:
    """neuPrint's answer for the caller: a success streamed as it is; an error with its status
    and JSON body as they are (neuPrint's `{"error"}` for a bad query), or in our envelope with
    `detail` when neuPrint (or a proxy before it) answered something else. neuPrint refusing
    this deployment's token is ours to fix (502), never the caller's 401/403."""
    status = upstream.status_code
    if 200 <= status < 300:
        return Response(_relay(upstream), status=status, mimetype="application/json", direct_passthrough=True)
    data = _read_some(upstream)
    where = f"neuPrint ({target.host})"
    if status in (401, 403):
        raise errors.BadGateway(
            f"{where} refused this deployment's credentials (HTTP {status}); its operators must "
            "check NEUPRINT_TOKEN",
            details={"neuprint_status": status},
        )
    if status < 400:
        raise errors.BadGateway(
            f"{where} answered HTTP {status} (a redirect): the dataset's neuprintHTTP.server needs fixing",
            details={"neuprint_status": status},
        )
    if _is_json(data):
        retry_after = upstream.headers.get("Retry-After")
        headers = {"Retry-After": retry_after} if retry_after and retry_after.isdigit() else None
        return Response(data, status=status, headers=headers, mimetype="application/json")
    text = data[:500].decode("utf-8", "replace").strip()
    if status in (502, 503, 504):
        raise failures.unreachable(where, status, neuprint_status=status)
    if status >= 500:
        raise errors.BadGateway(
            f"{where} failed (HTTP {status}): {text}", details={"neuprint_status": status}
        )
    error = errors.ApiError(f"{where} refused the query (HTTP {status}): {text}")
    error.status, error.code = status, ERRORS.get(status, ("bad_request",))[0]
    raise error


@app.post(
    "/v2/neuprint/<name>",
    check=authz.on_dataset(authz.READ),
    body=NeuprintQuery,
    answers=(502,),
    response=NeuprintResultPublic,
    operation_id="clio_neuprint_query",
)
def query(req, name, dataset):
    """Run a Cypher query on the dataset's neuPrint server and answer neuPrint's `{columns,
    data}` as it sent it; `dataset` must be the dataset's neuPrint dataset or a version of it."""
    target = destination(dataset)
    check_dataset(req.body.dataset, target)
    body = json.dumps({"cypher": req.body.cypher, "dataset": req.body.dataset}).encode()
    return answer(_send(target, body), target)


def handle(request):
    return app(request)
