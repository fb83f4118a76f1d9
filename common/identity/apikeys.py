"""Gatehouse API keys: `ghk_<id>_<secret>`, stored only as a SHA-256 of the secret; here, what
verifying one needs (common.identity.auth). The users function issues, lists and revokes them
(functions/users/keys.py).

A key acts as its owner until it expires or is deleted. The secret is 256 random bits, so a
plain SHA-256 is enough (no password-style stretching needed) and keeps verification fast.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

from common import errors
from common.cache import TTLCache
from common.storage import store

PREFIX = "ghk_"
COLLECTION = "api_keys"
# A clio token (POST /v2/server/token) is kept as a record here too, under its `jti`, without a
# secret: listed and revoked with its owner's keys, never counted against their key limit.
TOKEN_KIND = "clio_token"
_KEY_ID = r"[0-9a-f]{16}"
_KEY = re.compile(rf"^ghk_({_KEY_ID})_([A-Za-z0-9_-]{{43}})$")
# Keys whose last_used_at this instance wrote in the last minute (it is not written again).
_recently_touched: TTLCache[str, bool] = TTLCache(60.0, 10_000)


def digest(secret: str) -> str:
    """What a key's record keeps of its secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def is_key_id(value: str) -> bool:
    return re.fullmatch(_KEY_ID, value) is not None


def key_id(token: str) -> str:
    """The id of a well-formed key (`ghk_<id>_<secret>`)."""
    return token[len(PREFIX) : len(PREFIX) + 16]


def verify(token: str) -> tuple[str, float]:
    """The key's owner and expiry (epoch seconds), or Unauthenticated."""
    match = _KEY.fullmatch(token)
    if not match:
        raise errors.Unauthenticated("the API key is malformed")
    key_id, secret = match.groups()
    snap = store.collection(COLLECTION).document(key_id).get()
    record = snap.to_dict() if snap.exists else None
    if record is None or not hmac.compare_digest(record.get("hash") or "", digest(secret)):
        raise errors.Unauthenticated("the API key is not valid")
    expires_at = record["expires_at"].timestamp()
    if expires_at <= time.time():
        raise errors.Unauthenticated("the API key has expired")
    _touch(snap.reference, key_id)
    return record["email"], expires_at


def verify_token_id(jti: str, email: str) -> None:
    """Unauthenticated unless clio token `jti` of `email` is still on record (not revoked)."""
    snap = store.collection(COLLECTION).document(jti).get()
    record = snap.to_dict() if snap.exists else None
    if record is None or record.get("kind") != TOKEN_KIND or record.get("email") != email:
        raise errors.Unauthenticated("the token has been revoked; sign in again")


def _touch(ref, key_id: str) -> None:
    if _recently_touched.get(key_id) is None:
        from google.api_core.exceptions import NotFound

        _recently_touched.put(key_id, True)
        try:
            ref.update({"last_used_at": store.now()})
        except NotFound:  # revoked a moment ago
            raise errors.Unauthenticated("the API key is not valid") from None
