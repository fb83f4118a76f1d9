"""users: who may use Gatehouse and with which roles, and their API keys (SPEC §3 users)."""

from __future__ import annotations

import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, StringConstraints

from common import audit, errors, jsonio
from common.config import GOOGLE_ISSUER, settings
from common.identity import auth, authz
from common.models import (
    ClioUserPublic,
    DatasetName,
    DeletedPublic,
    Email,
    GroupName,
    Lenient,
    ProfilePublic,
    Public,
    RoleName,
    Strict,
    normalize_email,
)
from common.storage import datasets, keyvalue, store
from common.web import clio
from common.web.http import App, streamed
from functions.users import keys, tokens

app = App(
    "users", "User records, their global and per-dataset roles, and API keys.", authenticate=auth.authenticate
)

MAX_USERS_PER_REQUEST = 200  # two writes each (record + audit) within one 500-write commit
USER_FIELDS = ("name", "global_roles", "datasets", "groups", "disabled")


# A name is shown and logged as text: no control characters (NUL, line breaks, escapes).
PrintableName = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]*$")]


class UserUpdate(Strict):
    name: PrintableName = ""
    global_roles: list[RoleName] = []
    datasets: dict[DatasetName, list[RoleName]] = {}
    groups: list[GroupName] = []
    disabled: bool = False


UsersUpdate = Annotated[dict[Email, UserUpdate], Field(min_length=1, max_length=MAX_USERS_PER_REQUEST)]
EmailList = Annotated[list[Email], Field(min_length=1, max_length=MAX_USERS_PER_REQUEST)]


class ClioUserUpdate(Lenient):
    """A user as clio's user admin sends it: fields Gatehouse does not keep (`email`, `org`) are
    dropped, the rest as in `UserUpdate`."""

    name: PrintableName = ""
    global_roles: list[RoleName] = []
    datasets: dict[DatasetName, list[RoleName]] = {}
    groups: list[GroupName] = []
    disabled: bool = False


ClioUsersUpdate = Annotated[
    dict[Email, ClioUserUpdate], Field(min_length=1, max_length=MAX_USERS_PER_REQUEST)
]


class KeyCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    expires_in_days: Annotated[int, Field(ge=1, le=365)] = 90


class UserPublic(Public):
    name: str
    global_roles: list[str]
    datasets: dict[str, list[str]]
    groups: list[str]
    disabled: bool


class KeyPublic(Public):
    """An API key as listed: never its secret (only its hash is stored)."""

    id: str
    name: str
    created_at: datetime.datetime
    expires_at: datetime.datetime
    last_used_at: datetime.datetime | None = None


class KeyCreatedPublic(KeyPublic):
    """A new API key: the secret `key` is in this answer only."""

    key: str


class SigninPublic(Public):
    """How the Python client signs a researcher in (OAuth 2.0 device or browser sign-in)."""

    issuer: str
    client_id: str
    client_secret: str | None = None
    device_authorization_endpoint: str
    token_endpoint: str
    authorization_endpoint: str
    scopes: list[str]


# Google's endpoints; another issuer (a test's stand-in, tools/oidc_standin.py) serves the same
# paths under its own URL.
GOOGLE_ENDPOINTS = {
    "device_authorization_endpoint": "https://oauth2.googleapis.com/device/code",
    "token_endpoint": "https://oauth2.googleapis.com/token",
    "authorization_endpoint": "https://accounts.google.com/o/oauth2/v2/auth",
}
SIGNIN_SCOPES = ["openid", "email"]


def user_view(record: dict[str, Any] | None) -> dict[str, Any]:
    record = record or {}
    return {
        "name": record.get("name", ""),
        "global_roles": record.get("global_roles", []),
        "datasets": record.get("datasets", {}),
        "groups": record.get("groups", []),
        "disabled": record.get("disabled", False),
    }


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError:
        raise errors.ValidationFailed(f"{value!r} is not a valid email") from None


def _revoke(req, email: str, key_id: str) -> None:
    keys.revoke(req, email, key_id)
    auth.forget(key_id)  # at once here; other instances within the role window


@app.get("/users", check=authz.ADMIN, response=dict[str, UserPublic])
def list_users(req):
    """Every user record."""
    snaps = store.stream(store.collection(authz.USERS))
    return streamed(jsonio.stream_object((s.id, user_view(s.to_dict())) for s in snaps))


@app.post("/users", check=authz.ADMIN, body=UsersUpdate, response=dict[str, UserPublic])
def update_users(req):
    """Create or update users: a field present replaces that field, a field absent is kept."""
    users = store.collection(authz.USERS)

    def write(transaction) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        refs = {email: users.document(email) for email in req.body}
        before = {s.id: s.to_dict() for s in transaction.get_all(list(refs.values())) if s.exists}
        granted = {
            name
            for update in req.body.values()
            if "datasets" in update.model_fields_set
            for name in update.datasets
        }
        generations = (
            {
                s.id: s.get("generation")
                for s in transaction.get_all(
                    [store.collection(datasets.COLLECTION).document(n) for n in granted]
                )
                if s.exists
            }
            if granted
            else {}
        )
        for email, update in req.body.items():
            old = before.get(email)
            new = {**user_view(old), **update.model_dump(include=update.model_fields_set)}
            # Each grant is bound to the dataset as it is now, so it never carries over to a new
            # dataset of the same name (common/identity/authz.py); a grant on a dataset yet to be made is not.
            new["grant_generations"] = (
                {n: generations.get(n) for n in update.datasets}
                if "datasets" in update.model_fields_set
                else (old or {}).get("grant_generations", {})
            )
            transaction.set(refs[email], new)
            audit.record(
                transaction,
                req,
                "user_update" if old else "user_create",
                "user",
                email,
                before=user_view(old) if old else None,
                after=user_view(new),
            )
            stored[email] = user_view(new)
        return stored

    stored = store.transactional(write)
    for email in stored:
        authz.forget_user(email)
    return stored


@app.delete("/users", check=authz.ADMIN, body=EmailList, response=DeletedPublic)
def delete_users(req):
    """Delete users (their roles, key-value data and pull requests go with them); emails that
    have no record are not listed as deleted."""
    users = store.collection(authz.USERS)

    def delete(transaction) -> list[str]:
        deleted: list[str] = []
        snaps = transaction.get_all([users.document(email) for email in dict.fromkeys(req.body)])
        for snap in snaps:
            if snap.exists:
                transaction.delete(snap.reference)
                audit.record(
                    transaction, req, "user_delete", "user", snap.id, before=user_view(snap.to_dict())
                )
                deleted.append(snap.id)
        return deleted

    deleted = store.transactional(delete)
    for email in deleted:
        authz.forget_user(email)
    # Their clio key-value data and pull requests go too (also of an email without a record,
    # whose data any signed-in caller can have made; and again when a failed call is retried).
    for email in dict.fromkeys(req.body):
        keyvalue.delete_user(email)
    return {"deleted": sorted(deleted)}


@app.get("/users/_signin", public=True, answers=(404,), response=SigninPublic)
def get_signin(req):
    """How to sign in without the gcloud CLI: the deployment's OAuth client (OAUTH_CLIENT_ID),
    its issuer's endpoints and scopes; the ID token it yields has the client id as audience.
    Needs no token; 404 when the deployment configures no OAuth client."""
    s = settings()
    if not s.oauth_client_id:
        raise errors.NotFound("this deployment configures no OAuth client (OAUTH_CLIENT_ID) for sign-in")
    endpoints = (
        GOOGLE_ENDPOINTS
        if s.oauth_issuer == GOOGLE_ISSUER
        else {name: s.oauth_issuer + urlsplit(url).path for name, url in GOOGLE_ENDPOINTS.items()}
    )
    secret = {"client_secret": s.oauth_client_secret} if s.oauth_client_secret else {}
    return {
        "issuer": s.oauth_issuer,
        "client_id": s.oauth_client_id,
        **secret,
        **endpoints,
        "scopes": SIGNIN_SCOPES,
    }


@app.get("/users/me", check=authz.AUTHENTICATED, response=ProfilePublic)
def get_me(req):
    """The caller's own record, as /roles shows it."""
    return req.caller.profile()


@app.post(
    "/users/me/keys",
    check=authz.AUTHENTICATED,
    body=KeyCreate,
    status=201,
    answers=(409,),
    response=KeyCreatedPublic,
)
def create_my_key(req):
    """Issue an API key for the caller; the key is shown only in this response."""
    return keys.issue(req, req.caller.email, req.body.name, req.body.expires_in_days)


@app.get("/users/me/keys", check=authz.AUTHENTICATED, response=list[KeyPublic])
def list_my_keys(req):
    """The caller's API keys, without secrets."""
    return keys.list_for(req.caller.email)


@app.delete("/users/me/keys/<key_id>", check=authz.AUTHENTICATED, status=204)
def delete_my_key(req, key_id):
    """Revoke one of the caller's API keys."""
    _revoke(req, req.caller.email, key_id)


@app.post(
    "/users/<email>/keys",
    check=authz.ADMIN,
    body=KeyCreate,
    status=201,
    answers=(409, 422),
    response=KeyCreatedPublic,
)
def create_user_key(req, email):
    """Issue an API key for a user (admin)."""
    return keys.issue(req, _email(email), req.body.name, req.body.expires_in_days)


@app.get("/users/<email>/keys", check=authz.ADMIN, answers=(422,), response=list[KeyPublic])
def list_user_keys(req, email):
    """A user's API keys, without secrets (admin)."""
    return keys.list_for(_email(email))


@app.delete("/users/<email>/keys/<key_id>", check=authz.ADMIN, status=204, answers=(422,))
def delete_user_key(req, email, key_id):
    """Revoke a user's API key (admin)."""
    _revoke(req, _email(email), key_id)


# -- clio's /v2 routes (common.web.clio): the same operations in clio's shapes ------------------


@app.post("/v2/server/token", check=authz.AUTHENTICATED, response=str)
def clio_token(req):
    """A clio token for the caller: a JSON string holding a JWT (issuer `flyem-clio-store`), as
    clio's clients fetch and decode it; a bearer token for every Gatehouse function."""
    return tokens.mint(req, auth.request_identity(req.raw))


@app.get("/v2/users", check=authz.ADMIN, response=dict[str, ClioUserPublic])
def clio_list_users(req):
    """Every user record, as clio's `User` (admin)."""
    snaps = store.stream(store.collection(authz.USERS))
    return streamed(jsonio.stream_object((s.id, clio.user(s.id, user_view(s.to_dict()))) for s in snaps))


@app.post("/v2/users", check=authz.ADMIN, body=ClioUsersUpdate)
def clio_update_users(req):
    """Create or update users as `POST /users` does (unknown per-user fields dropped); answers `null`."""
    update_users(req)


@app.delete("/v2/users", check=authz.ADMIN, body=EmailList)
def clio_delete_users(req):
    """Delete users as `DELETE /users` does; answers `null`."""
    delete_users(req)


def handle(request):
    return app(request)
