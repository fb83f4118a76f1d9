"""Deleting a dataset (SPEC §3 datasets): its record goes at once, its grants and data are purged.

The record and a deletion record (`dataset_deletions/{id}`) change in one transaction, so from
then on nothing of the dataset is reachable: every stored thing and every grant is bound to the
dataset's generation (see common.storage.datasets.generation), and a new dataset of the same name gets a new
one. Twin endpoints made on the dataset go with it, with their state, call records, jobs and the
approval requests naming them (functions/twins/calls.py hides them at once). The purge only reclaims the space, in steps of a bounded size that can be repeated at any
time (idempotent: each step deletes what is still there) until every part is done; the deletion
record shows the progress. Audit entries are kept until their retention ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from common import errors
from common.config import settings
from common.identity import authz
from common.logs import log
from common.storage import blobs, collections, pubsub, store

COLLECTION = "dataset_deletions"
INLINE_BUDGET = 2000  # objects purged per step: in DELETE /datasets, then per background delivery


def continue_later(deletion_id: str) -> bool:
    """Queue the next step of a purge for the background worker (datasets' `purge_work`);
    False when the queue did not take it (the purge then waits for `resume`)."""
    try:
        pubsub.publish(settings().purge_topic, {"deletion": deletion_id})
        return True
    except errors.ApiError as exc:
        log("WARNING", f"dataset purge {deletion_id} not queued: {exc.message}; resume it by hand")
        return False


def begin(transaction, name: str, record: dict[str, Any], actor: str) -> str:
    """Record the deletion of `name` (its record is deleted by the caller in `transaction`)."""
    deletion_id = uuid.uuid4().hex
    transaction.set(
        store.collection(COLLECTION).document(deletion_id),
        {
            "name": name,
            "generation": record.get("generation"),
            "data_key": record.get("generation") or name,
            "deleted_at": store.now(),
            "deleted_by": actor,
            "status": "purging",
            "parts": {part: {"deleted": 0, "done": False} for part in PARTS},
        },
    )
    return deletion_id


def step(deletion_id: str, budget: int | None = None) -> dict[str, Any] | None:
    """Purge up to `budget` more objects of the deletion; its record afterwards (None: no such
    deletion). Each part runs until it is done or the budget is spent."""
    ref = store.collection(COLLECTION).document(deletion_id)
    snap = ref.get()
    if not snap.exists:
        return None
    deletion = snap.to_dict()
    left = INLINE_BUDGET if budget is None else budget
    for part, purge in PARTS.items():
        # A deletion begun before a part existed purges it too.
        progress = deletion["parts"].setdefault(part, {"deleted": 0, "done": False})
        if progress["done"] or left <= 0:
            continue
        deleted, done = purge(deletion, left)
        left -= deleted
        progress["deleted"] += deleted
        progress["done"] = done
        ref.update({f"parts.{part}": progress})  # progress is kept part by part
    if all(p["done"] for p in deletion["parts"].values()):
        deletion.update(status="done", purged_at=store.now())
        ref.update({"status": "done", "purged_at": deletion["purged_at"]})
    return {"id": deletion_id, **deletion}


# -- the parts: each deletes at most `budget` objects and says whether nothing is left -----------


def _delete_docs(snapshots: Iterable[Any], budget: int) -> tuple[int, bool]:
    deleted, batch = 0, store.db().batch()
    for snap in snapshots:
        if deleted == budget:
            batch.commit()
            return deleted, False
        batch.delete(snap.reference)
        deleted += 1
        if deleted % store.MAX_WRITES_PER_COMMIT == 0:
            batch.commit()
            batch = store.db().batch()
    batch.commit()
    return deleted, True


def _subcollection(root: str, collection: str) -> Callable[[dict[str, Any], int], tuple[int, bool]]:
    def purge(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
        docs = store.collection(root).document(deletion["data_key"]).collection(collection)
        return _delete_docs(store.stream(docs.limit(budget + 1).select([])), budget)

    return purge


def _owned(query, deletion: dict[str, Any]):
    """The documents of `query` that belong to the deleted generation (not to a new dataset of
    the same name)."""
    return (snap for snap in store.stream(query) if snap.get("generation") == deletion["generation"])


def _atlas(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.ATLAS).where(filter=FieldFilter("dataset", "==", deletion["name"]))
    return _delete_docs(_owned(query.select(["generation"]), deletion), budget)


def _transfer_jobs(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    """Jobs of the dataset made before it was deleted, each with its parts."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.TRANSFER_JOBS).where(
        filter=FieldFilter("dataset", "==", deletion["name"])
    )
    deleted = 0
    for job in store.stream(query.select(["created_at"])):
        created = (job.to_dict() or {}).get("created_at")  # older records may lack it: theirs too
        if created is not None and created >= deletion["deleted_at"]:
            continue
        if deleted >= budget:
            return deleted, False
        parts, _ = _delete_docs(
            store.stream(job.reference.collection(collections.TRANSFER_PARTS).select([])), 1 << 30
        )
        job.reference.delete()
        deleted += parts + 1
    return deleted, True


def _grants(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    """Remove each user's grant on the dataset, unless it was given on a newer dataset of the name."""
    from google.api_core.exceptions import FailedPrecondition
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter
    from google.cloud.firestore_v1.field_path import FieldPath

    name = deletion["name"]
    field = FieldPath("datasets", name).to_api_repr()
    bound = FieldPath("grant_generations", name).to_api_repr()
    query = store.collection(authz.USERS).where(filter=FieldFilter(field, "!=", None))
    deleted, skipped = 0, 0
    for snap in store.stream(query):
        if (snap.to_dict().get("grant_generations") or {}).get(name) not in (None, deletion["generation"]):
            skipped += 1
            continue
        if deleted == budget:
            return deleted, False
        try:  # only if the user was not changed meanwhile (then the next step sees the change)
            snap.reference.update(
                {field: firestore.DELETE_FIELD, bound: firestore.DELETE_FIELD},
                option=store.db().write_option(last_update_time=snap.update_time),
            )
        except FailedPrecondition:
            return deleted, False
        authz.forget_user(snap.id)
        deleted += 1
    return deleted, True


def _objects(
    bucket_name: Callable[[], str], prefix: Callable[[dict[str, Any]], str], *, older_only: bool
) -> Callable[[dict[str, Any], int], tuple[int, bool]]:
    def purge(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
        bucket = blobs.bucket(bucket_name())
        deleted = 0
        for blob in blobs.client().list_blobs(bucket, prefix=prefix(deletion)):
            # Signatures live under the dataset's name: keep what was built for a newer dataset.
            if older_only and blob.time_created and blob.time_created >= deletion["deleted_at"]:
                continue
            if deleted == budget:
                return deleted, False
            blob.delete()
            deleted += 1
        return deleted, True

    return purge


# -- twins: endpoints made on the dataset, their state, call records and jobs, and the approval
# requests naming them (each bound to the dataset's generation; functions/twins/calls.py hides them
# from the moment the dataset is deleted, this reclaims them).


def _made_on(doc: dict[str, Any], deletion: dict[str, Any], made_at: str) -> bool:
    """Whether a twin document belongs to the deleted dataset: by the dataset generation it
    recorded, or (made before generations were recorded) by being older than the deletion."""
    if "dataset_generation" in doc:
        return doc["dataset_generation"] == deletion["generation"]
    return doc.get(made_at) is not None and doc[made_at] < deletion["deleted_at"]


def _twin_endpoints(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    """Each endpoint with the state of its sides (the state first: an endpoint is deleted last)."""
    from google.api_core.exceptions import FailedPrecondition
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.TWINS).where(filter=FieldFilter("dataset", "==", deletion["name"]))
    deleted = 0
    for snap in store.stream(query):
        doc = snap.to_dict()
        if not _made_on(doc, deletion, "created_at"):
            continue
        for side in doc["sides"].values():
            keys = (
                store.collection(collections.TWIN_STATE)
                .document(side["generation"])
                .collection(collections.TWIN_STATE_KEYS)
            )
            count, done = _delete_docs(
                store.stream(keys.limit(budget - deleted + 1).select([])), budget - deleted
            )
            deleted += count
            if not done:
                return deleted, False
        if deleted >= budget:
            return deleted, False
        try:  # only if it was not replaced meanwhile by a new endpoint at the path
            snap.reference.delete(option=store.db().write_option(last_update_time=snap.update_time))
        except FailedPrecondition:
            continue
        deleted += 1
    return deleted, True


def _results(docs: Iterable[Any]) -> None:
    """Delete the results of twin jobs and requests kept in Cloud Storage (the large ones)."""
    from google.api_core.exceptions import NotFound

    for doc in docs:
        if doc.get("result_blob"):
            try:
                blobs.bucket(settings().twin_results_bucket).blob(doc["result_blob"]).delete()
            except NotFound:
                pass


def _twin_calls(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.TWIN_CALLS).where(
        filter=FieldFilter("dataset", "==", deletion["name"])
    )
    owned = (
        s
        for s in store.stream(query.select(["dataset_generation", "at"]))
        if _made_on(s.to_dict(), deletion, "at")
    )
    return _delete_docs(owned, budget)


def _twin_jobs(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    """Call jobs of the dataset's endpoints, with their results (a request's run job goes with it)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.TWIN_JOBS).where(
        filter=FieldFilter("dataset", "==", deletion["name"])
    )
    deleted = 0
    for snap in store.stream(query.select(["dataset_generation", "created_at", "result_blob"])):
        if not _made_on(snap.to_dict(), deletion, "created_at"):
            continue
        if deleted >= budget:
            return deleted, False
        _results([snap.to_dict()])
        snap.reference.delete()
        deleted += 1
    return deleted, True


def _named_the_dataset(request: dict[str, Any], deletion: dict[str, Any]) -> bool:
    bound = request.get("endpoint_datasets")
    if bound is None:  # submitted before requests recorded their datasets' generations
        return request["created_at"] < deletion["deleted_at"]
    return any(
        ds is not None and ds["name"] == deletion["name"] and ds["generation"] == deletion["generation"]
        for ds in bound.values()
    )


def _twin_requests(deletion: dict[str, Any], budget: int) -> tuple[int, bool]:
    """Approval requests naming an endpoint of the dataset, with their results and run jobs."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = store.collection(collections.TWIN_REQUESTS).where(
        filter=FieldFilter("datasets", "array_contains", deletion["name"])
    )
    deleted = 0
    for snap in store.stream(query.select(["endpoint_datasets", "created_at", "result_blob"])):
        request = snap.to_dict()
        if not _named_the_dataset(request, deletion):
            continue
        if deleted >= budget:
            return deleted, False
        jobs = store.collection(collections.TWIN_JOBS).where(filter=FieldFilter("request", "==", snap.id))
        for job in store.stream(jobs.select(["result_blob"])):
            _results([job.to_dict()])
            job.reference.delete()
            deleted += 1
        _results([request])
        snap.reference.delete()
        deleted += 1
    return deleted, True


PARTS: dict[str, Callable[[dict[str, Any], int], tuple[int, bool]]] = {
    "grants": _grants,
    "annotations_v1": _subcollection(collections.ANNOTATIONS, collections.V1_ANNOTATIONS),
    "annotations_v2": _subcollection(collections.ANNOTATIONS, collections.V2_ANNOTATIONS),
    "savedsearches": _subcollection(collections.SAVED_SEARCHES, collections.SEARCHES),
    "atlas": _atlas,
    "transfer_jobs": _transfer_jobs,
    "attachments": _objects(
        lambda: settings().attachments_bucket, lambda d: d["data_key"] + "/", older_only=False
    ),
    "signatures": _objects(lambda: settings().sig_bucket, lambda d: d["name"].lower() + "/", older_only=True),
    "twin_requests": _twin_requests,
    "twin_jobs": _twin_jobs,
    "twin_calls": _twin_calls,
    "twin_endpoints": _twin_endpoints,
}
