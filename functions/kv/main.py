"""kv: clio's per-user key-value store and pull requests, at clio's paths (`/v2/kv/...`,
`/v2/pull-request`): the clio website's merge tool keeps its merge decisions here and submits
them as pull requests, which neuclease reads.

Each caller reads and writes only their own values; reading others' pull requests needs admin.
A value is a JSON object; `_timestamp` (float seconds) is set on every write. The layout is
clio-store's (common.storage.keyvalue).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints

from common import audit, errors
from common.identity import auth, authz
from common.models import Lenient, Payload, Query, check_document_size, normalize_email
from common.storage import keyvalue, store
from common.web import clio
from common.web.http import App

app = App(
    "kv",
    "clio's key-value store (each user's own JSON objects by scope and key) and pull requests.",
    authenticate=auth.authenticate,
)


class ValueQuery(Query):
    timestamp: bool = Field(False, description="true: keep `_timestamp` (float seconds) in the answer")


class PullRequestQuery(Query):
    user_email: str | None = Field(
        None,
        description="whose pull requests: absent or empty = the caller's; another email or `all` = admin",
    )


class PullRequestCreate(Lenient):
    pull: Annotated[str, StringConstraints(max_length=3000)] = Field(
        description='the value to submit, as "kv/<scope>/<key>"'
    )


Values = dict[str, dict[str, Any]]


def _scope(root: str, email: str, scope: str):
    if not store.valid_id(scope):
        raise errors.BadRequest(f"{scope!r} cannot be a scope")
    return keyvalue.user_root(root, email).collection(scope)


def _ref(root: str, email: str, scope: str, key: str):
    if not store.valid_id(key):
        raise errors.BadRequest(f"{key!r} cannot be a key")
    return _scope(root, email, scope).document(key)


def _shown(value: dict[str, Any], timestamp: bool) -> dict[str, Any]:
    return value if timestamp else {k: v for k, v in value.items() if k != keyvalue.TIMESTAMP}


def _stamped(value: dict[str, Any]) -> dict[str, Any]:
    """The value as stored: with `_timestamp` now, within Firestore's document size."""
    record = {**value, keyvalue.TIMESTAMP: store.now().timestamp()}
    check_document_size(record, "the value")
    return record


@app.get(
    "/v2/kv/<scope>",
    check=authz.AUTHENTICATED,
    query=ValueQuery,
    response=Values,
    operation_id="list_values",
)
def list_values(req, scope):
    """The caller's values in a scope, by key."""
    values = store.stream(_scope(keyvalue.KV, req.caller.email, scope))
    return {snap.id: _shown(snap.to_dict(), req.query.timestamp) for snap in values}


@app.get(
    "/v2/kv/<scope>/<key>",
    check=authz.AUTHENTICATED,
    query=ValueQuery,
    answers=(404,),
    response=dict[str, Any],
)
def get_value(req, scope, key):
    """The caller's value at scope and key (404 when there is none)."""
    snap = _ref(keyvalue.KV, req.caller.email, scope, key).get()
    if not snap.exists:
        raise errors.NotFound(f"you have no value at {scope}/{key}")
    return _shown(snap.to_dict(), req.query.timestamp)


@app.post("/v2/kv/<scope>/<key>", check=authz.AUTHENTICATED, body=Payload, answers=(413,))
def put_value(req, scope, key) -> None:
    """Store the caller's value (a JSON object of at most 1 MiB) at scope and key, replacing
    the one there; answers null."""
    ref = _ref(keyvalue.KV, req.caller.email, scope, key)
    batch = store.db().batch()
    batch.set(ref, _stamped(req.body))
    audit.record(batch, req, "kv_put", "kv", f"{scope}/{key}")
    batch.commit()


@app.delete("/v2/kv/<scope>/<key>", check=authz.AUTHENTICATED)
def delete_value(req, scope, key) -> None:
    """Delete the caller's value at scope and key; answers null, also when there is none."""
    ref = _ref(keyvalue.KV, req.caller.email, scope, key)
    with clio.absent_ok():
        audit.delete_existing(
            req,
            ref,
            missing=f"you have no value at {scope}/{key}",
            action="kv_delete",
            target_type="kv",
            target_id=f"{scope}/{key}",
            before=lambda snap: None,  # the caller's own data: the entry names it, never keeps it
        )


@app.post("/v2/pull-request", check=authz.AUTHENTICATED, body=PullRequestCreate, answers=(404,))
def submit_pull_request(req) -> None:
    """Submit one of the caller's values as a pull request (a copy with a new `_timestamp`,
    replacing an earlier one of the same scope and key); answers null."""
    parts = req.body.pull.split("/")
    if len(parts) != 3 or parts[0] != "kv":
        raise errors.BadRequest(f'pull must be "kv/<scope>/<key>", not {req.body.pull!r}')
    _, scope, key = parts
    snap = _ref(keyvalue.KV, req.caller.email, scope, key).get()
    if not snap.exists:
        raise errors.NotFound(f"you have no value at {scope}/{key}")
    batch = store.db().batch()
    batch.set(_ref(keyvalue.PULL_REQUESTS, req.caller.email, scope, key), _stamped(snap.to_dict()))
    audit.record(batch, req, "pull_request_submit", "pull_request", f"{scope}/{key}")
    batch.commit()


def _pull_request_owners(req) -> list[str]:
    wanted = req.query.user_email
    if wanted is None:
        return [req.caller.email]
    if wanted == "all":
        if not req.caller.is_admin:
            raise errors.Forbidden("everyone's pull requests need the admin role")
        return [ref.id for ref in store.collection(keyvalue.PULL_REQUESTS).list_documents()]
    try:
        email = normalize_email(wanted)
    except ValueError:
        raise errors.BadRequest(f"user_email {wanted!r} is not an email (nor `all`)") from None
    if email != req.caller.email and not req.caller.is_admin:
        raise errors.Forbidden("another user's pull requests need the admin role")
    return [email]


@app.get(
    "/v2/pull-request",
    check=authz.AUTHENTICATED,
    query=PullRequestQuery,
    response=dict[str, dict[str, Values]],
    operation_id="list_pull_requests",
)
def list_pull_requests(req):
    """Pull requests by user, scope and key, each with its `_timestamp` (users with none are
    left out)."""
    found = {}
    for email in _pull_request_owners(req):
        scopes = {
            scope.id: {snap.id: snap.to_dict() for snap in store.stream(scope)}
            for scope in keyvalue.user_root(keyvalue.PULL_REQUESTS, email).collections()
        }
        if scopes:
            found[email] = scopes
    return found


def handle(request):
    return app(request)
