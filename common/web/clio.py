"""clio's `/v2` API, served beside Gatehouse's own routes so that clio's clients (the clio
website and its neuroglancer, malevnc, clio-py, neuclease) work by changing only their base URL.

Each resource stays its own function: `RESOURCES` says which function answers
`/v2/<resource>/...` (the gateway routes there, locally and in Terraform). A function declares
clio's routes with the same `@app.get(...)` table as its own; a route under `/v2/` is a clio
route, and the request pipeline (common.web.http) treats it as clio's clients expect:
- unknown query parameters are ignored (malevnc adds `app=natverse` to every call, clio-py
  `app=clio-py`), known ones are validated as on Gatehouse's routes;
- bodies are validated lax, as pydantic v1 did (`"1"` -> 1); body models for clio routes drop
  unknown fields (`common.models.Lenient`) and truncate numeric positions (`Truncated`);
- every error body also carries `detail` (the clients show it).

The shapes are adapters over the same operations as Gatehouse's routes, never a second
implementation of a resource: the helpers below turn Gatehouse's answers into clio's.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
from collections.abc import Iterator
from typing import Any

from common import errors

ROOT = "/v2"

# clio's resource (the path segment after /v2) -> the function that serves it.
RESOURCES = {
    "server": "users",  # POST /v2/server/token: tokens belong to the function that owns identity
    "users": "users",
    "roles": "roles",
    "datasets": "datasets",
    "annotations": "annotations",
    "atlas": "atlas",
    "savedsearches": "savedsearches",
    "signatures": "signatures",
    "transfer": "transfer",
    "kv": "kv",
    "pull-request": "kv",
    "json-annotations": "bodyannotations",
    "neuprint": "neuprint",
}

TAG = "clio compatibility"
TAG_DESCRIPTION = (
    "clio-store's /v2 API as its existing clients call it: unknown query parameters are ignored, "
    "bodies are read leniently, timestamps are epoch seconds and errors also carry `detail`."
)


# The response type of a route that answers `null`, as clio's deletes did (documented as such).
NULL = type(None)


def under_root(path: str) -> bool:
    """Whether a request path is one of clio's (`/v2` or below)."""
    return path == ROOT or path.startswith(ROOT + "/")


def epoch(value: Any) -> Any:
    """A timestamp as clio answered it: float seconds since the epoch (the clients compute
    `new Date(t * 1000)` and sort by `b.timestamp - a.timestamp`). Takes a datetime or the ISO
    8601 string Gatehouse answers; anything else is returned as it is."""
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    return value


def with_epochs(record: dict[str, Any], *fields: str) -> dict[str, Any]:
    """`record` with each of `fields` it has as epoch seconds (see `epoch`)."""
    return {k: epoch(v) if k in fields else v for k, v in record.items()}


# clio's `User` (common.models.ClioUserPublic): its fields, and the value of those Gatehouse does not keep.
USER_DEFAULTS: dict[str, Any] = {
    "name": "",
    "org": "",
    "picture": "",
    "disabled": False,
    "global_roles": [],
    "datasets": {},
    "datasets_ignore_tos": {},
    "missing_tos": [],
    "groups": [],
}


def user(email: str, view: dict[str, Any]) -> dict[str, Any]:
    """clio's `User` from Gatehouse's view of a user (the roles profile or a user record): plain
    dicts, so answering it loads no pydantic (the route's response model still shapes it)."""
    return {"email": email, **{k: copy.copy(view.get(k, v)) for k, v in USER_DEFAULTS.items()}}


def locationkey(record: dict[str, Any]) -> str:
    """clio's `"x_y_z"` key of a record stored at a location (Gatehouse keeps it as
    `locationkey` or `locationref`, and always the `location` itself)."""
    key = record.get("locationkey") or record.get("locationref")
    return key if isinstance(key, str) else "_".join(str(c) for c in record["location"])


@contextlib.contextmanager
def absent_ok() -> Iterator[None]:
    """Deleting what is not there answers 200 on clio's routes (its clients treat any failed
    DELETE as an error): the operation's 404 is swallowed."""
    try:
        yield
    except errors.NotFound:
        pass
