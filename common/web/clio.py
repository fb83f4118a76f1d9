"""clio's `/v2` API, served beside Gatehouse's own routes so that clio's clients (the clio
website and its neuroglancer, malevnc, clio-py, neuclease) work by changing only their base URL.

Each resource stays its own function: `RESOURCES` says which function answers
`/v2/<resource>/...` (the gateway routes there, locally and in Terraform). A function declares
clio's routes with the same `@app.get(...)` table as its own; a route under `/v2/` is a clio
route, and the request pipeline (common.web.http) treats it as clio's clients expect:
- unknown query parameters are ignored (malevnc adds `app=natverse` to every call, clio-py
  `app=clio-py`), known ones are validated as on Gatehouse's routes;
- bodies are validated lax, as pydantic v1 did (`"1"` -> 1); body models for clio routes drop
  unknown fields (`Lenient`) and truncate numeric positions (`Truncated`);
- every error body also carries `detail` (the clients show it).

The shapes are adapters over the same operations as Gatehouse's routes, never a second
implementation of a resource: the helpers below turn Gatehouse's answers into clio's.
"""

from __future__ import annotations

import contextlib
import datetime
import math
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

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


class Lenient(BaseModel):
    """Base of a clio route's body model: unknown fields are dropped, as clio's pydantic v1
    models did (neuroglancer sends `verified` back on entries it decoded with one)."""

    model_config = ConfigDict(extra="ignore")


def _truncate(value: Any) -> Any:
    """A finite float becomes the int toward zero (pydantic v1's `1.7 -> 1`); anything else is
    left for the field's own validation."""
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return value


Truncated = Annotated[int, BeforeValidator(_truncate)]


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


class ClioUserPublic(BaseModel):
    """A user as clio's `User` model answered it (`GET /v2/roles`, `GET /v2/users`): Gatehouse's
    fields, and clio's that Gatehouse does not keep (`org`, `picture`, terms of service) empty."""

    email: str
    name: str = ""
    org: str = ""
    picture: str = ""
    disabled: bool = False
    global_roles: list[str] = []
    datasets: dict[str, list[str]] = {}
    datasets_ignore_tos: dict[str, Any] = {}
    missing_tos: list[str] = []
    groups: list[str] = []


def user(email: str, view: dict[str, Any]) -> dict[str, Any]:
    """clio's `User` from Gatehouse's view of a user (the roles profile or a user record)."""
    return ClioUserPublic(email=email, **{k: v for k, v in view.items() if k != "email"}).model_dump()


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
