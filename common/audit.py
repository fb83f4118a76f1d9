"""Audit entries (SPEC §1): written in the same batch or transaction as the change they record."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from common import errors, jsonio
from common.config import settings
from common.storage import commits, datasets, store

COLLECTION = "audit"


def entry(
    req,
    action: str,
    target_type: str,
    target_id: str,
    *,
    dataset: datasets.Dataset | str | None = None,
    generation: str | None = None,
    before: Any = None,
    after: Any = None,
) -> dict[str, Any]:
    """An entry; one about a dataset also keeps the dataset's generation (given, the one of the
    Dataset a route's check found, or else the current one), so a new dataset of a deleted one's
    name starts with an empty log."""
    at = store.now()
    record = {
        "at": at,
        "actor": req.caller.email,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "request_id": req.id,
        # Firestore's TTL policy on `expire_at` (terraform/firestore.tf) deletes the entry then.
        "expire_at": at + datetime.timedelta(days=settings().audit_retention_days),
    }
    if isinstance(dataset, datasets.Dataset):
        generation = generation or dataset.generation
        dataset = dataset.name
    if dataset is not None:
        record["dataset"] = dataset
        if generation is None:
            generation = datasets.generation(datasets.record(dataset))
        if generation is not None:
            record["generation"] = generation
    before, after, compacted = _bounded(before, after)
    if before is not None:
        record["before"] = before
    if after is not None:
        record["after"] = after
    if compacted:
        record["compacted"] = True
    return record


MAX_CHANGE_BYTES = 200_000  # of before + after in one entry: far under Firestore's 1 MiB
MAX_VALUE_BYTES = 10_000  # a larger field of a compacted entry is kept as its size and hash


def _bounded(before: Any, after: Any) -> tuple[Any, Any, bool]:
    """Before and after, small enough that an audit entry is never why a change fails: a large
    change keeps only the fields that changed, and of those each large value as
    `{"omitted_bytes", "sha256"}`."""
    if len(jsonio.dumps(before).encode()) + len(jsonio.dumps(after).encode()) <= MAX_CHANGE_BYTES:
        return before, after, False
    if isinstance(before, dict) and isinstance(after, dict):
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        before = {k: v for k, v in before.items() if k in changed}
        after = {k: v for k, v in after.items() if k in changed}
    return _summarized(before), _summarized(after), True


def _summarized(value: Any) -> Any:
    if value is None:
        return None
    items = value.items() if isinstance(value, dict) else [("value", value)]
    kept = {}
    for key, item in items:
        text = jsonio.dumps(item).encode()
        kept[key] = (
            item
            if len(text) <= MAX_VALUE_BYTES
            else {"omitted_bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}
        )
    return kept


def record(writer, req, action: str, target_type: str, target_id: str, **kw: Any) -> None:
    """Add the entry to `writer` (a WriteBatch or Transaction) so it commits with the change."""
    writer.set(store.collection(COLLECTION).document(), entry(req, action, target_type, target_id, **kw))


def entry_write(req, action: str, target_type: str, target_id: str, **kw: Any) -> Any:
    """The entry as a plain Firestore `Write` (common.storage.commits), to commit with the change."""
    return commits.set_write(
        commits.document_name(COLLECTION, commits.auto_id()), entry(req, action, target_type, target_id, **kw)
    )


def delete_existing(
    req,
    ref,
    *,
    missing: str,
    action: str,
    target_type: str,
    target_id: str,
    dataset: datasets.Dataset | str | None = None,
    before=lambda snap: snap.to_dict(),
) -> None:
    """Delete one document with its audit entry, in a transaction: 404 (`missing`) when it is
    not there. `before(snapshot)` is what the entry keeps of it."""

    def remove(transaction) -> None:
        snap = ref.get(transaction=transaction)
        if not snap.exists:
            raise errors.NotFound(missing)
        transaction.delete(ref)
        record(transaction, req, action, target_type, target_id, dataset=dataset, before=before(snap))

    store.transactional(remove)


def write(req, action: str, target_type: str, target_id: str, **kw: Any) -> None:
    """A standalone entry, for changes outside Firestore (Cloud Storage objects)."""
    store.collection(COLLECTION).add(entry(req, action, target_type, target_id, **kw))
