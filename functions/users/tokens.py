"""clio tokens (`POST /v2/server/token`): the JWT clio's clients decode (the website, its
neuroglancer, malevnc and clio-py read `email` and `exp`, check `iss`, and refetch when fewer
than 4 h are left). Only this function mints them; every function verifies them
(common.identity.auth).

Signed without a shared secret by default: by the signer service account's Google-held key
through the IAM Credentials API, which only this function's account may call. `signBlob`
rather than `signJwt`, which refuses an `exp` more than 12 hours away (these last 3 weeks).
Locally (dev mode) the local issuer's key signs. Where an operator configured clio-store's
FLYEM_SECRET, tokens are HS256 with it, so Janelia's DVID accepts them too.

Each token's `jti` is kept as an API-key-like record (common.identity.apikeys), so the owner
sees it among their keys and revoking it there ends it. A token may be exchanged for a new one
(the website does on every page load), but a chain of tokens never outlives `auth_time` (when
the chain began with another credential) + CLIO_TOKEN_MAX_CHAIN.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import secrets
import time
from typing import Any

from common import audit, errors
from common.config import CLIO_ISSUER, CLIO_TOKEN_MIN_SECONDS, settings
from common.identity import apikeys, auth
from common.storage import store

IAM_CREDENTIALS = "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{account}:signBlob"
TOKEN_NAME = "clio token"


def mint(req, identity: auth.Identity) -> str:
    """A new clio token for the caller, recorded (and audited) before it is returned."""
    s = settings()
    now = int(time.time())
    began = int(identity.auth_time or now) if identity.via == "clio_token" else now
    expires = min(now + s.clio_token_ttl, began + s.clio_token_max_chain)
    if expires - now < CLIO_TOKEN_MIN_SECONDS:
        raise errors.Unauthenticated(
            "this token was renewed from tokens for as long as allowed; sign in again"
        )
    jti = secrets.token_hex(8)
    claims = {
        "iss": CLIO_ISSUER,
        "email": identity.email,
        "email_verified": True,
        "iat": now,
        "exp": expires,
        "jti": jti,
        "auth_time": began,
    }
    token = sign(claims)
    at = datetime.datetime.fromtimestamp(now, datetime.UTC)
    until = datetime.datetime.fromtimestamp(expires, datetime.UTC)
    record = {
        "email": identity.email,
        "name": TOKEN_NAME,
        "kind": apikeys.TOKEN_KIND,
        "created_at": at,
        "expires_at": until,
        "last_used_at": None,
        "expire_at": until,  # Firestore's TTL policy deletes the record once the token is dead
    }
    batch = store.db().batch()
    batch.create(store.collection(apikeys.COLLECTION).document(jti), record)
    audit.record(
        batch, req, "token_issue", "api_key", jti, after={"email": identity.email, "expires_at": until}
    )
    batch.commit()
    return token


def sign(claims: dict[str, Any]) -> str:
    s = settings()
    if s.flyem_secret:
        return auth.hs256_encode(claims, s.flyem_secret)
    if s.clio_token_signer:
        return _sign_by_iam(claims, s.clio_token_signer)
    if s.dev_mode:
        return _sign_locally(claims)
    raise errors.Unavailable("this deployment mints no clio tokens (CLIO_TOKEN_SIGNER is not set)")


def _sign_locally(claims: dict[str, Any]) -> str:
    from google.auth import crypt, jwt

    with open(settings().dev_key_file, "rb") as f:
        signer = crypt.RSASigner.from_string(f.read(), key_id=auth.CLIO_DEV_KEY_ID)
    return jwt.encode(signer, claims).decode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign_by_iam(claims: dict[str, Any], account: str) -> str:
    """RS256 by the signer account's Google-held key. The header names no key: verifiers try
    each of the account's published keys (a couple at most)."""
    signing_input = _b64(b'{"alg":"RS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    response = _session().post(
        IAM_CREDENTIALS.format(account=account),
        json={"payload": base64.b64encode(signing_input.encode()).decode()},
        timeout=10,
    )
    if response.status_code != 200:
        raise errors.Unavailable("the token signer did not answer; try again", retry_after=5)
    return f"{signing_input}.{_b64(base64.b64decode(response.json()['signedBlob']))}"


@functools.cache
def _session():
    """One authorised session per instance, each call bounded by the request's budget."""
    import google.auth

    from common.storage.clients import BoundedSession  # lazy: loads grpc, needed only to mint in the cloud

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return BoundedSession(credentials)
