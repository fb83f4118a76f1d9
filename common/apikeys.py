"""Gatehouse API keys: `ghk_<id>_<secret>`, stored only as a SHA-256 of the secret.

A key acts as its owner until it expires or is deleted. The secret is 256 random bits, so a
plain SHA-256 is enough (no password-style stretching needed) and keeps verification fast.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
import secrets
import time
from typing import Any

from common import audit, errors, store

PREFIX = "ghk_"
COLLECTION = "api_keys"
MAX_LIVE_KEYS = 5
_KEY = re.compile(r"^ghk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
_LAST_USED_EVERY = 60.0  # seconds between last_used_at writes for one key on one instance
_last_used_written: dict[str, float] = {}


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def public_view(key_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": record["name"],
        "created_at": record["created_at"],
        "expires_at": record["expires_at"],
        "last_used_at": record.get("last_used_at"),
    }


def issue(req, email: str, name: str, expires_in_days: int) -> dict[str, Any]:
    """Create a key for `email`; at most MAX_LIVE_KEYS live ones (409 beyond)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    now = store.now()
    record = {
        "email": email,
        "name": name,
        "hash": _hash(secret),
        "created_at": now,
        "expires_at": now + datetime.timedelta(days=expires_in_days),
        "last_used_at": None,
    }
    keys = store.collection(COLLECTION)

    def create(transaction) -> None:
        live = [
            s
            for s in keys.where(filter=FieldFilter("email", "==", email)).stream(transaction=transaction)
            if s.get("expires_at") > now
        ]
        if len(live) >= MAX_LIVE_KEYS:
            raise errors.Conflict(f"{email} already has {MAX_LIVE_KEYS} live keys; delete one first")
        transaction.set(keys.document(key_id), record)
        audit.record(
            transaction,
            req,
            "key_issue",
            "api_key",
            key_id,
            after={"email": email, "name": name, "expires_at": record["expires_at"]},
        )

    store.transactional(create)
    return {**public_view(key_id, record), "key": f"{PREFIX}{key_id}_{secret}"}


def list_for(email: str) -> list[dict[str, Any]]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    snaps = store.collection(COLLECTION).where(filter=FieldFilter("email", "==", email)).stream()
    return sorted((public_view(s.id, s.to_dict()) for s in snaps), key=lambda k: k["created_at"])


def token_prefix(key_id: str) -> str:
    """What every token of key `key_id` starts with (to drop it from auth's cache)."""
    return f"{PREFIX}{key_id}_"


def revoke(req, email: str, key_id: str) -> None:
    """Delete the key (idempotent for the owner); another user's key id is simply not found.
    The caller then drops the key from this instance's token cache (`auth.forget`)."""
    ref = store.document(store.collection(COLLECTION), key_id, "no such key")

    def delete(transaction) -> None:
        snap = ref.get(transaction=transaction)
        if not snap.exists or snap.get("email") != email:
            raise errors.NotFound("no such key")
        transaction.delete(ref)
        audit.record(
            transaction,
            req,
            "key_revoke",
            "api_key",
            key_id,
            before={"email": email, "name": snap.get("name")},
        )

    store.transactional(delete)


def verify(token: str) -> tuple[str, float]:
    """The key's owner and expiry (epoch seconds), or Unauthenticated."""
    match = _KEY.fullmatch(token)
    if not match:
        raise errors.Unauthenticated("the API key is malformed")
    key_id, secret = match.groups()
    snap = store.collection(COLLECTION).document(key_id).get()
    record = snap.to_dict() if snap.exists else None
    if record is None or not hmac.compare_digest(record["hash"], _hash(secret)):
        raise errors.Unauthenticated("the API key is not valid")
    expires_at = record["expires_at"].timestamp()
    if expires_at <= time.time():
        raise errors.Unauthenticated("the API key has expired")
    _touch(snap.reference, key_id)
    return record["email"], expires_at


def _touch(ref, key_id: str) -> None:
    now = time.monotonic()
    if now - _last_used_written.get(key_id, -_LAST_USED_EVERY) >= _LAST_USED_EVERY:
        from google.api_core.exceptions import NotFound

        _last_used_written[key_id] = now
        try:
            ref.update({"last_used_at": store.now()})
        except NotFound:  # revoked a moment ago
            raise errors.Unauthenticated("the API key is not valid") from None
