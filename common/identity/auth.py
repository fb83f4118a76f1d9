"""Who is calling: bearer tokens -> a verified, lower-cased email.

Four kinds of token (SPEC §1):
- Google ID tokens, verified by google-auth against Google's certs (fetched through one cached
  session per instance), with the issuer, audience, expiry and `email_verified` checked;
- Gatehouse API keys (`ghk_...`), see common.identity.apikeys;
- clio tokens (issuer `flyem-clio-store`), minted by the users function for clio's clients
  (`POST /v2/server/token`): RS256 by the signer service account's Google-held key, verified
  against its published certificates (cached like Google's), or HS256 with clio-store's
  FLYEM_SECRET where an operator configured it; each carries a `jti` kept as an API-key-like
  record, so revoking it works as for keys;
- dev tokens from the local issuer, accepted only in dev mode, which only runs on emulators
  (there the local issuer's key also signs clio tokens).

A token that passed every check is remembered until it expires (bounded), so a warm request
costs a dictionary lookup; a changed token is a different string and is verified afresh.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request

from common import errors
from common.cache import TTLCache
from common.config import CLIO_ISSUER, DEV_AUDIENCE, DEV_ISSUER, settings
from common.identity import apikeys, authz
from common.storage import store

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
DEV_KEY_ID = "gatehouse-dev-1"
CLIO_DEV_KEY_ID = "gatehouse-dev-clio"  # the local issuer's key, signing clio tokens in dev mode
SIGNER_CERTS_URL = "https://www.googleapis.com/service_accounts/v1/metadata/x509/{account}"
CLOCK_SKEW_SECONDS = 10
_VERIFIED_MAX = 10_000


@dataclass(frozen=True)
class Identity:
    email: str
    via: str  # "google" | "api_key" | "clio_token" | "dev"
    expires_at: float  # when this proof of identity must be checked again
    key_id: str | None = None  # the API key or clio token (`jti`) it is: revoking that forgets it
    auth_time: float | None = None  # a clio token's: when its chain of tokens began (a sign-in)


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


def request_identity(request: Request) -> Identity:
    """The identity `request` proves. Behind the API gateway, `Authorization` holds the
    gateway's own token and the caller's is moved to `X-Forwarded-Authorization`: when that
    header is there it is the only credential read (and verified like any other)."""
    environ = request.environ  # request.headers.get's source, without its parsing of each name
    return identify(environ.get("HTTP_X_FORWARDED_AUTHORIZATION") or environ.get("HTTP_AUTHORIZATION"))


def authenticate(request: Request) -> authz.Caller:
    """The caller of `request` (the authentication step every App is given)."""
    identity = request_identity(request)
    return authz.caller_for(identity.email, identity.via)


def forget(key_id: str) -> None:
    """Drop remembered tokens of a revoked API key or clio token. The revoking caller calls it,
    so apikeys need not know of auth."""
    _verified.pop_where(lambda token, known: known.key_id == key_id)


def _verify(token: str) -> Identity:
    if token.startswith(apikeys.PREFIX):
        owner, expires_at = apikeys.verify(token)
        # Re-check keys within the role-cache window so a revocation elsewhere takes effect.
        recheck = min(expires_at, time.time() + settings().role_cache_seconds)
        return Identity(owner, "api_key", recheck, key_id=apikeys.key_id(token))
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
    elif issuer == CLIO_ISSUER:
        claims = _verify_clio(token, header)
        via = "clio_token"
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
    if via == "clio_token":
        return _clio_identity(email, claims)
    return Identity(email, via, float(claims["exp"]))


def _clio_identity(email: str, claims: dict[str, Any]) -> Identity:
    """A verified clio token's identity, unless its `jti` was revoked (a Firestore read, then
    remembered within the role-cache window, as for API keys)."""
    s = settings()
    expires_at = float(claims["exp"])
    auth_time = claims.get("auth_time", claims.get("iat"))
    auth_time = float(auth_time) if isinstance(auth_time, (int, float)) else None
    jti = claims.get("jti")
    if jti is None:  # minted by clio-store itself, with its secret
        if not s.accept_legacy_flyem_tokens:
            raise errors.Unauthenticated("clio-store's own tokens are not accepted here; sign in again")
        return Identity(email, "clio_token", expires_at, auth_time=auth_time)
    if not isinstance(jti, str) or not apikeys.is_key_id(jti):
        raise errors.Unauthenticated("the token is malformed (jti)")
    apikeys.verify_token_id(jti, email)
    recheck = min(expires_at, time.time() + s.role_cache_seconds)
    return Identity(email, "clio_token", recheck, key_id=jti, auth_time=auth_time)


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


PREFETCH_TIMEOUT_SECONDS = 5  # the first verify waits at most this long for the prefetch, then fetches itself
_prefetch: threading.Thread | None = None


def prefetch_certs() -> None:
    """Fetch the certificates tokens are verified against (Google's, and the clio token signer's
    where there is one) into the cached session, in a background thread: at cold start the
    network wait overlaps the import of the Firestore client (`_await_prefetch`) instead of
    adding to it. Fails safe: whatever goes wrong here, the verify path fetches as always."""
    global _prefetch

    def fetch() -> None:
        try:
            s = settings()
            urls = [s.google_certs_url]
            if s.clio_token_signer:
                urls.append(SIGNER_CERTS_URL.format(account=s.clio_token_signer))
            for url in urls:
                _certs_request()(url=url, method="GET", timeout=PREFETCH_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001, S110 -- the verify path fetches again and answers its failure
            pass

    _prefetch = threading.Thread(target=fetch, name="certs-prefetch", daemon=True)
    _prefetch.start()


def _await_prefetch() -> None:
    """Before the first certificate-based verify: while the prefetch is still on the network,
    build the Firestore client (the caller's roles are read next anyway), then wait for it."""
    global _prefetch
    if _prefetch is None:
        return
    if _prefetch.is_alive():
        store.db()
    _prefetch.join(PREFETCH_TIMEOUT_SECONDS)
    _prefetch = None


if os.environ.get("K_SERVICE"):  # on Cloud Functions / Cloud Run, at cold start (never in dev mode)
    prefetch_certs()


def _verify_google(token: str) -> dict[str, Any]:
    from google.auth import exceptions
    from google.oauth2 import id_token

    s = settings()
    _await_prefetch()
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


def _verify_clio(token: str, header: dict[str, Any]) -> dict[str, Any]:
    """A clio token's claims, its signature and expiry checked: RS256 by the signer account (the
    local issuer's key in dev mode without one), or HS256 with FLYEM_SECRET where configured."""
    from google.auth import exceptions, jwt
    from google.oauth2 import id_token

    s = settings()
    alg = header.get("alg")
    if alg == "HS256" and s.flyem_secret:
        return hs256_decode(token, s.flyem_secret)
    if alg != "RS256" or not (s.clio_token_signer or s.dev_mode):
        raise errors.Unauthenticated("the token's issuer is not accepted by this deployment")
    try:
        if s.clio_token_signer:
            _await_prefetch()
            return dict(
                id_token.verify_token(
                    token,
                    _certs_request(),
                    audience=None,  # clio tokens name no audience: the issuer and the key say who made them
                    certs_url=SIGNER_CERTS_URL.format(account=s.clio_token_signer),
                    clock_skew_in_seconds=CLOCK_SKEW_SECONDS,
                )
            )
        return jwt.decode(
            token, certs={CLIO_DEV_KEY_ID: _dev_public_key()}, clock_skew_in_seconds=CLOCK_SKEW_SECONDS
        )
    except exceptions.TransportError:
        raise errors.Unavailable(
            "cannot reach the token signer's certificates; try again", retry_after=5
        ) from None
    except (ValueError, exceptions.GoogleAuthError) as exc:
        raise errors.Unauthenticated(f"the token is not valid: {_reason(exc)}") from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_encode(claims: dict[str, Any], secret: str) -> str:
    """A JWT signed as clio-store signed its tokens (HS256 with FLYEM_SECRET); google-auth signs
    only with keys, and the format is three lines of standard library."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def hs256_decode(token: str, secret: str) -> dict[str, Any]:
    signing_input, _, signature = token.rpartition(".")
    expected = _b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, signature):
        raise errors.Unauthenticated("the token is not valid: its signature does not match")
    _, claims = _unverified_parts(token)
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp + CLOCK_SKEW_SECONDS < time.time():
        raise errors.Unauthenticated("the token is not valid: it has expired")
    return claims


def _reason(exc: Exception) -> str:
    # google-auth's messages are safe to show (they name the failed check, not key material),
    # but some quote the whole token: keep the first clause only.
    text = str(exc).split(". ")[0].split(":")[0]
    return text[:120] or type(exc).__name__


@functools.cache
def _dev_public_key() -> bytes:
    """The local issuer's public key, from its private key file. Only the public half is used,
    so the private half's consistency is not checked: that check (OpenSSL's primality tests)
    cost 30-500 ms of every dev instance's cold start."""
    from cryptography.hazmat.primitives import serialization

    with open(settings().dev_key_file, "rb") as f:
        private = serialization.load_pem_private_key(
            f.read(), password=None, unsafe_skip_rsa_key_validation=True
        )
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
