"""Audit entries (SPEC §1): written in the same batch or transaction as the change they record."""
from __future__ import annotations

import datetime
from typing import Any

COLLECTION = "audit"


def entry(req, action: str, target_type: str, target_id: str, *, dataset: str | None = None,
          generation: str | None = None, before: Any = None, after: Any = None) -> dict[str, Any]:
    """An entry; one about a dataset also keeps the dataset's generation (given, or the current
    one), so a new dataset of a deleted one's name starts with an empty log."""
    from common import store
    from common.config import settings
    at = store.now()
    record = {"at": at, "actor": req.caller.email,
              "action": action, "target_type": target_type, "target_id": target_id,
              "request_id": req.id,
              # Firestore's TTL policy on `expire_at` (terraform/firestore.tf) deletes the entry then.
              "expire_at": at + datetime.timedelta(days=settings().audit_retention_days)}
    if dataset is not None:
        record["dataset"] = dataset
        if generation is None:
            from common import authz
            generation = authz.generation(authz.dataset_record(dataset))
        if generation is not None:
            record["generation"] = generation
    if before is not None:
        record["before"] = before
    if after is not None:
        record["after"] = after
    return record


def record(writer, req, action: str, target_type: str, target_id: str, **kw: Any) -> None:
    """Add the entry to `writer` (a WriteBatch or Transaction) so it commits with the change."""
    from common import store
    writer.set(store.collection(COLLECTION).document(), entry(req, action, target_type, target_id, **kw))


def delete_existing(req, ref, *, missing: str, action: str, target_type: str, target_id: str,
                    dataset: str | None = None, before=lambda snap: snap.to_dict()) -> None:
    """Delete one document with its audit entry, in a transaction: 404 (`missing`) when it is
    not there. `before(snapshot)` is what the entry keeps of it."""
    from common import errors, store

    def remove(transaction) -> None:
        snap = ref.get(transaction=transaction)
        if not snap.exists:
            raise errors.NotFound(missing)
        transaction.delete(ref)
        record(transaction, req, action, target_type, target_id, dataset=dataset, before=before(snap))

    store.transactional(remove)


def write(req, action: str, target_type: str, target_id: str, **kw: Any) -> None:
    """A standalone entry, for changes outside Firestore (Cloud Storage objects)."""
    from common import store
    store.collection(COLLECTION).add(entry(req, action, target_type, target_id, **kw))
