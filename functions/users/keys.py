"""API keys as their owners manage them (the users function's `/users/{email}/keys` routes):
issued, listed and revoked here, each change with its audit entry; verifying a key is
common.identity.apikeys'.
"""

from __future__ import annotations

import datetime
import hashlib
import random
import secrets
from collections.abc import Iterator
from typing import Any

from common import audit, errors
from common.identity.apikeys import COLLECTION, PREFIX, TOKEN_KIND, digest
from common.storage import store

SLOTS = "api_key_slots"  # one per live key, at most MAX_LIVE_KEYS per owner (see `issue`)
MAX_LIVE_KEYS = 5


def public_view(key_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": key_id,
        "name": record["name"],
        "created_at": record["created_at"],
        "expires_at": record["expires_at"],
        "last_used_at": record.get("last_used_at"),
    }


def issue(req, email: str, name: str, expires_in_days: int) -> dict[str, Any]:
    """Create a key for `email`; at most MAX_LIVE_KEYS live ones (409 beyond).

    The cap holds without a transaction over the owner's keys (concurrent transactions on the
    same documents hold each other's locks, and none would get through): each live key holds one
    of its owner's MAX_LIVE_KEYS slot documents (`api_key_slots/{owner}-{n}`), written in the
    same commit as the key, either created (it never existed) or taken over, guarded by its
    update time, from a key that is no longer live. Two writers never hold one slot, so never
    more keys than slots; concurrent writers each try the free slots until one is theirs."""
    from google.api_core.exceptions import AlreadyExists, FailedPrecondition, NotFound

    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    now = store.now()
    record = {
        "email": email,
        "name": name,
        "hash": digest(secret),
        "created_at": now,
        "expires_at": now + datetime.timedelta(days=expires_in_days),
        "last_used_at": None,
    }
    # The slots are read before the keys: a key committed in between then shows as live with a
    # slot of its own that this read missed, and that slot's write below fails, as it should.
    slots = {snap.reference.id: snap for snap in store.get_all(_slots(email))}
    live = {
        key.id: key.to_dict()
        for key in _keys_of(email)
        if key.get("expires_at") > now and key.to_dict().get("kind") != TOKEN_KIND  # tokens hold no slot
    }
    held = {snap.get("key") for snap in slots.values() if snap.exists and snap.get("key") in live}
    free = [snap for snap in slots.values() if not (snap.exists and snap.get("key") in live)]
    random.shuffle(free)  # concurrent writers mostly try different slots first
    # Keys issued before slots existed hold none: each takes a free slot first, so they count.
    pending = [k for k, key in live.items() if not key.get("slot") and k not in held] + [key_id]
    keys = store.collection(COLLECTION)
    for slot in free:
        owner_key = pending[0]
        batch = store.db().batch()
        fields = {"email": email, "key": owner_key, "at": now}
        if slot.exists:
            batch.update(
                slot.reference, fields, option=store.db().write_option(last_update_time=slot.update_time)
            )
        else:
            batch.create(slot.reference, fields)
        if owner_key != key_id:
            batch.update(keys.document(owner_key), {"slot": slot.reference.id})
        else:
            batch.set(keys.document(key_id), {**record, "slot": slot.reference.id})
            audit.record(
                batch,
                req,
                "key_issue",
                "api_key",
                key_id,
                after={"email": email, "name": name, "expires_at": record["expires_at"]},
            )
        try:
            batch.commit()
        except (AlreadyExists, FailedPrecondition):  # another writer took this slot first
            continue
        except NotFound:  # the old key was revoked meanwhile: it needs no slot
            pending.pop(0)
            continue
        if owner_key == key_id:
            return {**public_view(key_id, record), "key": f"{PREFIX}{key_id}_{secret}"}
        pending.pop(0)
    raise errors.Conflict(f"{email} already has {MAX_LIVE_KEYS} live keys; delete one first")


def _slots(email: str) -> list[Any]:
    owner = hashlib.sha256(email.encode()).hexdigest()[:32]
    return [store.collection(SLOTS).document(f"{owner}-{n}") for n in range(MAX_LIVE_KEYS)]


def _keys_of(email: str) -> Iterator[Any]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    return store.stream(store.collection(COLLECTION).where(filter=FieldFilter("email", "==", email)))


def list_for(email: str) -> list[dict[str, Any]]:
    return sorted((public_view(s.id, s.to_dict()) for s in _keys_of(email)), key=lambda k: k["created_at"])


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
