"""Who is calling: bearer tokens -> a verified, lower-cased email.

Three kinds of token (SPEC §1):
- Google ID tokens, verified by google-auth against Google's certs (fetched through one cached
  session per instance), with the issuer, audience, expiry and `email_verified` checked;
- Gatehouse API keys (`ghk_...`), see common.identity.apikeys;
- dev tokens from the local issuer, accepted only in dev mode, which only runs on emulators.

A token that passed every check is remembered until it expires (bounded), so a warm request
costs a dictionary lookup; a changed token is a different string and is verified afresh.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from common import errors
from common.cache import TTLCache
from common.config import DEV_AUDIENCE, DEV_ISSUER, settings
from common.identity import apikeys, authz
from common.storage import store

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
DEV_KEY_ID = "gatehouse-dev-1"
CLOCK_SKEW_SECONDS = 10
_VERIFIED_MAX = 10_000


@dataclass(frozen=True)
class Identity:
    email: str
    via: str  # "google" | "api_key" | "dev"
    expires_at: float  # when this proof of identity must be checked again


# Tokens that passed every check, each kept until its identity must be checked again (`put`'s ttl).
_verified: TTLCache[str, Identity] = TTLCache(ttl=0, max_entries=_VERIFIED_MAX)


def identify(authorization: str | None) -> Identity:
    """The caller's identity from an Authorization header, or Unauthenticated (401)."""
    if not authorization:
        raise errors.Unauthenticated("an Authorization: Bearer token is required", token_present=False)
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise errors.Unauthenticated("the Authorization header must be 'Bearer <token>'")
    known = _verified.get(token)
    if known is not None:
        return known
    identity = _verify(token)
    _verified.put(token, identity, ttl=identity.expires_at - time.time())
    return identity


def authenticate(request: Request) -> authz.Caller:
    """The caller of `request` (the authentication step every App is given). Behind the API
    gateway, `Authorization` holds the gateway's own token and the caller's is moved to
    `X-Forwarded-Authorization`: when that header is there it is the only credential read
    (and verified like any other)."""
    header = request.headers.get("X-Forwarded-Authorization") or request.headers.get("Authorization")
    identity = identify(header)
    return authz.caller_for(identity.email, identity.via)


def forget(token_prefix: str) -> None:
    """Drop remembered tokens that start with a prefix (a revoked API key's: see
    `apikeys.token_prefix`). The revoking caller calls it, so apikeys need not know of auth."""
    _verified.pop_where(lambda token: token.startswith(token_prefix))


def _verify(token: str) -> Identity:
    if token.startswith(apikeys.PREFIX):
        owner, expires_at = apikeys.verify(token)
        # Re-check keys within the role-cache window so a revocation elsewhere takes effect.
        return Identity(owner, "api_key", min(expires_at, time.time() + settings().role_cache_seconds))
    header, unverified = _unverified_parts(token)
    issuer = unverified.get("iss")
    if issuer in GOOGLE_ISSUERS:
        # Google signs RS256 with a published key: any other header is refused before a
        # certificate is fetched (so a forged token never costs a network call).
        if header.get("alg") != "RS256" or not isinstance(header.get("kid"), str) or not header["kid"]:
            raise errors.Unauthenticated("the token is not valid: Google tokens are RS256 with a key id")
        claims = _verify_google(token)
        via = "google"
    elif issuer == DEV_ISSUER:
        claims = _verify_dev(token)
        via = "dev"
    else:
        raise errors.Unauthenticated("the token's issuer is not accepted")
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise errors.Unauthenticated("the token carries no email")
    if claims.get("email_verified") is not True:
        raise errors.Unauthenticated("the token's email is not verified")
    email = email.strip().lower()
    if not store.valid_id(email):  # e.g. "/" in it: a user record (users/{email}) cannot have it
        raise errors.Unauthenticated("the token's email cannot be a Gatehouse user")
    return Identity(email, via, float(claims["exp"]))


MAX_TOKEN_BYTES = 8192  # Google ID tokens and dev tokens are about 1 KiB


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims, only to pick the verifier; nothing read here is trusted."""
    if len(token) > MAX_TOKEN_BYTES:
        raise errors.Unauthenticated("the token is malformed (too long)")
    try:
        header, payload, _ = (
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))) if i < 2 else part
            for i, part in enumerate(token.split("."))
        )
    except (ValueError, RecursionError):
        raise errors.Unauthenticated("the token is malformed") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise errors.Unauthenticated("the token is malformed")
    return header, payload


@functools.cache
def _certs_request():
    """One HTTP session per instance; CacheControl keeps Google's certs for their max-age."""
    import cachecontrol
    import google.auth.transport.requests
    import requests

    return google.auth.transport.requests.Request(session=cachecontrol.CacheControl(requests.Session()))


def _verify_google(token: str) -> dict[str, Any]:
    from google.auth import exceptions
    from google.oauth2 import id_token

    s = settings()
    try:
        claims = id_token.verify_token(
            token,
            _certs_request(),
            audience=list(s.allowed_audiences),
            certs_url=s.google_certs_url,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except exceptions.TransportError:
        raise errors.Unavailable(
            "cannot reach Google's token certificates; try again", retry_after=5
        ) from None
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise errors.Unauthenticated(f"the token is not valid: {_reason(exc)}") from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise errors.Unauthenticated("the token's issuer is not accepted")
    return dict(claims)


def _verify_dev(token: str) -> dict[str, Any]:
    from google.auth import exceptions, jwt

    if not settings().dev_mode:
        raise errors.Unauthenticated("dev tokens are accepted only by a local stack in dev mode")
    try:
        claims = jwt.decode(
            token,
            certs={DEV_KEY_ID: _dev_public_key()},
            audience=DEV_AUDIENCE,
            clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
        )
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise errors.Unauthenticated(f"the token is not valid: {_reason(exc)}") from None
    if claims.get("iss") != DEV_ISSUER:
        raise errors.Unauthenticated("the token's issuer is not accepted")
    return claims


def _reason(exc: Exception) -> str:
    # google-auth's messages are safe to show (they name the failed check, not key material),
    # but some quote the whole token: keep the first clause only.
    text = str(exc).split(". ")[0].split(":")[0]
    return text[:120] or type(exc).__name__


@functools.cache
def _dev_public_key() -> bytes:
    from cryptography.hazmat.primitives import serialization

    with open(settings().dev_key_file, "rb") as f:
        private = serialization.load_pem_private_key(f.read(), password=None)
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def mint_dev_token(email: str, private_key_pem: bytes, ttl_seconds: int = 12 * 3600) -> str:
    """A token from the local issuer (make token, tests). Useless outside dev mode."""
    from google.auth import crypt, jwt

    now = int(time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": email,
        "email": email,
        "email_verified": True,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    signer = crypt.RSASigner.from_string(private_key_pem, key_id=DEV_KEY_ID)
    return jwt.encode(signer, claims).decode()
