"""datasets: the datasets Gatehouse governs, their lifecycle, logs and attachments (SPEC §3)."""

from __future__ import annotations

import datetime
import re
import uuid
from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from common import audit, errors, jsonio
from common.cache import TTLCache
from common.config import settings
from common.identity import auth, authz
from common.models import (
    DatasetName,
    FreeForm,
    Location,
    Paging,
    Public,
    Query,
    check_storable,
)
from common.names import is_dataset_name
from common.storage import blobs, datasets, store
from common.web import workers
from common.web.http import App, paged, public_item, public_items, streamed, trusted
from functions.datasets import purge

app = App(
    "datasets",
    "Datasets: metadata, public flag, finalize, audit logs and attachments.",
    authenticate=auth.authenticate,
)

NAME_CLAIMS = "dataset_names"  # dataset_names/{lower-cased name}: keeps names unique regardless of case
MAX_DATASETS_PER_REQUEST = 200  # two writes each (record + audit) within one 500-write commit
# 31 MiB: with the multipart overhead an upload stays under API Gateway's 32 MiB request cap.
ATTACHMENT_LIMIT = 31 << 20
SERVER_FIELDS = (
    "name",
    "created_at",
    "created_by",
    "modified_at",
    "modified_by",
    "finalized_at",
    "finalized_by",
    "generation",
)
EDITABLE_AFTER_FINALIZE = {"description", "tags"}
ADMIN_FIELDS = ("location", "neuprintHTTP", "dvid")  # only admins set or change these (PUT /datasets/{name})
# A plain file name: no path separators, no leading dot (so no "." or ".."), no control characters.
DELETION_ID = re.compile(r"^[0-9a-f]{32}$")
ATTACHMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.,+()=@-]{0,254}$")
# Types a download keeps (none a browser runs as a page or a script); any other is served as
# application/octet-stream. Every download is a file to save (Content-Disposition: attachment).
SAFE_ATTACHMENT_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "application/json",
        "application/pdf",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
    }
)


class _Metadata(FreeForm):
    """Typed where the spec names a field; the rest is the owner's free-form metadata."""

    location: Location | None = None  # metadata; transfer checks what it may send (admins set it)
    public: bool = False
    tags: list[str] = []
    transfer: list[str] = []

    @model_validator(mode="after")
    def _storable(self):
        for name in SERVER_FIELDS:
            if name in (self.model_extra or {}):
                raise ValueError(f"{name!r} is set by the server")
        check_storable(self.model_extra or {}, "metadata")
        return self


class DatasetCreate(_Metadata):
    description: str


class DatasetUpdate(_Metadata):
    """A partial update: fields present are merged; `null` removes a free-form field."""

    description: str = ""


class DatasetPublic(Public):
    """A dataset: the typed fields and the server's, plus the owner's free-form metadata (kept:
    it is theirs). The typed fields are optional here: a dataset answers with what it holds."""

    model_config = ConfigDict(extra="allow")

    name: str
    description: str | None = None
    location: str | None = None
    public: bool = False
    tags: list[str] = []
    transfer: list[str] = []
    created_at: datetime.datetime | None = None
    created_by: str | None = None
    modified_at: datetime.datetime | None = None
    modified_by: str | None = None
    finalized_at: datetime.datetime | None = None
    finalized_by: str | None = None


class PurgePartPublic(Public):
    deleted: int
    done: bool


class DeletionPublic(Public):
    """A deleted dataset and the progress of its purge."""

    id: str
    name: str | None
    deleted_at: datetime.datetime | None
    deleted_by: str | None
    status: str  # purging, then done
    purged_at: datetime.datetime | None
    parts: dict[str, PurgePartPublic] | None


class DatasetsDeletedPublic(Public):
    deleted: list[str]
    deletions: list[DeletionPublic]


class AttachmentCreatedPublic(Public):
    name: str
    size: int


class AttachmentPublic(AttachmentCreatedPublic):
    modified: datetime.datetime | None = None
    url: str = Field(description="a download URL valid for 5 minutes")


class AuditEntryPublic(Public):
    """One audit entry: who did what to which thing, and what it was before and after."""

    id: str
    at: datetime.datetime
    actor: str
    action: str
    target_type: str
    target_id: str
    request_id: str
    expire_at: datetime.datetime | None = None
    dataset: str | None = None
    before: Any = None
    after: Any = None
    compacted: bool | None = None


DatasetsCreate = Annotated[
    dict[DatasetName, DatasetCreate], Field(min_length=1, max_length=MAX_DATASETS_PER_REQUEST)
]
NameList = Annotated[list[str], Field(min_length=1, max_length=MAX_DATASETS_PER_REQUEST)]


def _view(name: str, record: dict[str, Any]) -> dict[str, Any]:
    return {**{k: v for k, v in record.items() if k != "generation"}, "name": name}


def _name_claim(name: str):
    """The document that keeps a name unique regardless of case."""
    return store.collection(NAME_CLAIMS).document(name.lower())


# Every dataset's (name, record), read once per instance within ROLE_CACHE_SECONDS, the window
# roles and public flags are trusted for (README), and dropped at once by this instance's own
# writes (`_forget`). Each request still filters it for its caller (`_readable`).
_listing: TTLCache[str, list[tuple[str, dict[str, Any]]]] = TTLCache(lambda: settings().role_cache_seconds, 1)


def _all_records(_key: str) -> list[tuple[str, dict[str, Any]]]:
    return [(s.id, s.to_dict()) for s in store.stream(store.collection(datasets.COLLECTION))]


def _forget(names) -> None:
    for name in names:
        datasets.forget(name)
    _listing.clear()


def _readable(caller: authz.Caller):
    """(name, view) of every dataset the caller may read."""
    listing = _listing.load("all", _all_records)
    records = ((n, r) for n, r in listing if datasets.exposed("dataset", n))
    # The check reads the whole record: a grant is bound to the dataset's generation.
    return ((n, _view(n, r)) for n, r in records if caller.can_read(n, r))


@app.get("/datasets", check=authz.AUTHENTICATED, response=dict[str, DatasetPublic])
def list_datasets(req):
    """Every dataset the caller may read."""
    return streamed(jsonio.stream_object((n, public_item(req, v)) for n, v in _readable(req.caller)))


class ClioDatasetsQuery(Query):
    templates: bool = Field(False, description="answer `{tag}` and `{uuid}` as stored, not filled in")


def fill_templates(value: Any, tag: Any, version: Any) -> Any:
    """clio's dataset templates: `{tag}` and `{uuid}` in keys and string values become the
    dataset's own `tag` and `uuid` (where it has them)."""

    def fill(text: str) -> str:
        for name, by in (("{tag}", tag), ("{uuid}", version)):
            if isinstance(by, str):
                text = text.replace(name, by)
        return text

    if isinstance(value, str):
        return fill(value)
    if isinstance(value, dict):
        return {fill(k): fill_templates(v, tag, version) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_templates(v, tag, version) for v in value]
    return value


@app.get(
    "/v2/datasets", check=authz.AUTHENTICATED, query=ClioDatasetsQuery, response=dict[str, DatasetPublic]
)
def clio_list_datasets(req):
    """Every dataset the caller may read, as clio answers it: `{tag}`/`{uuid}` filled in
    (unless `templates=true`)."""
    views = ((n, public_item(req, v)) for n, v in _readable(req.caller))
    if not req.query.templates:
        views = ((n, fill_templates(v, v.get("tag"), v.get("uuid"))) for n, v in views)
    return streamed(jsonio.stream_object(views))


@app.post(
    "/datasets", check=authz.ADMIN, body=DatasetsCreate, answers=(409,), response=dict[str, DatasetPublic]
)
def create_datasets(req):
    """Create or replace datasets (admin). A finalized dataset cannot be replaced (409)."""
    records = store.collection(datasets.COLLECTION)

    def write(transaction) -> dict[str, dict[str, Any]]:
        stored: dict[str, dict[str, Any]] = {}
        now, actor = store.now(), req.caller.email
        refs = {name: records.document(name) for name in req.body}
        claims = {name: _name_claim(name) for name in req.body}
        before = {s.id: s.to_dict() for s in transaction.get_all(list(refs.values())) if s.exists}
        claimed = {s.id: s.get("name") for s in transaction.get_all(list(claims.values())) if s.exists}
        clashes = sorted(n for n in req.body if claimed.get(n.lower(), n) != n)
        if clashes or len({n.lower() for n in req.body}) < len(req.body):
            raise errors.Conflict(
                "dataset names are unique regardless of case: "
                + ", ".join(f"{n!r} is taken by {claimed.get(n.lower())!r}" for n in clashes)
                if clashes
                else "dataset names in one request differ only in case",
                details={"taken": {n: claimed[n.lower()] for n in clashes}},
            )
        finalized = sorted(n for n, old in before.items() if old.get("finalized_at"))
        if finalized:
            raise errors.Conflict(
                f"finalized datasets cannot be replaced: {', '.join(finalized)}",
                details={"finalized": finalized},
            )
        for name, body in req.body.items():
            old = before.get(name)
            record = {
                **body.model_dump(),
                "modified_at": now,
                "modified_by": actor,
                "created_at": old["created_at"] if old else now,
                "created_by": old["created_by"] if old else actor,
                # A replaced dataset keeps its data; a new one starts empty (functions/datasets/purge.py).
                "generation": (old or {}).get("generation") or uuid.uuid4().hex,
            }
            transaction.set(refs[name], record)
            transaction.set(claims[name], {"name": name})
            audit.record(
                transaction,
                req,
                "dataset_replace" if old else "dataset_create",
                "dataset",
                name,
                dataset=name,
                generation=record["generation"],
                before=old,
                after=record,
            )
            stored[name] = _view(name, record)
        return stored

    stored = store.transactional(write)
    _forget(stored)
    return stored


@app.delete("/datasets", check=authz.ADMIN, body=NameList, response=DatasetsDeletedPublic)
def delete_datasets(req):
    """Delete datasets with everything stored under them and every grant on them (admin); names
    that do not exist are skipped. The data is purged in the background when large: see
    `GET /datasets/_deletions`."""
    records = store.collection(datasets.COLLECTION)
    names = [n for n in dict.fromkeys(req.body) if is_dataset_name(n)]

    def delete(transaction) -> dict[str, str]:
        deletions: dict[str, str] = {}  # name -> its deletion's id
        for snap in transaction.get_all([records.document(n) for n in names]):
            if snap.exists:
                record = snap.to_dict()
                transaction.delete(snap.reference)
                transaction.delete(_name_claim(snap.id))
                deletions[snap.id] = purge.begin(transaction, snap.id, record, req.caller.email)
                audit.record(
                    transaction,
                    req,
                    "dataset_delete",
                    "dataset",
                    snap.id,
                    dataset=snap.id,
                    generation=record.get("generation"),
                    before=record,
                )
        return deletions

    deletions = store.transactional(delete) if names else {}
    _forget(deletions)
    progress = [purge.step(deletion_id) for deletion_id in deletions.values()]
    for deletion in progress:
        if deletion is not None and deletion["status"] != "done":
            purge.continue_later(deletion["id"])
    return {"deleted": sorted(deletions), "deletions": [_deletion_view(d) for d in progress if d is not None]}


def _deletion_view(deletion: dict[str, Any]) -> dict[str, Any]:
    return {
        k: deletion.get(k) for k in ("id", "name", "deleted_at", "deleted_by", "status", "purged_at", "parts")
    }


@app.get("/datasets/_deletions", check=authz.ADMIN, response=list[DeletionPublic])
def list_deletions(req):
    """Deleted datasets, newest first, with the progress of their purge (admin)."""
    from google.cloud.firestore import Query

    snaps = store.stream(
        store.collection(purge.COLLECTION).order_by("deleted_at", direction=Query.DESCENDING)
    )
    return streamed(
        jsonio.stream_array(public_items(req, (_deletion_view({"id": s.id, **s.to_dict()}) for s in snaps)))
    )


def _deletion(deletion_id: str) -> dict[str, Any]:
    snap = (
        store.collection(purge.COLLECTION).document(deletion_id).get()
        if DELETION_ID.fullmatch(deletion_id)
        else None
    )
    if snap is None or not snap.exists:
        raise errors.NotFound(f"no deletion {deletion_id!r}")
    return {"id": snap.id, **snap.to_dict()}


@app.get("/datasets/_deletions/<deletion_id>", check=authz.ADMIN, response=DeletionPublic)
def get_deletion(req, deletion_id):
    """One deletion and the progress of its purge (admin)."""
    return _deletion_view(_deletion(deletion_id))


@app.post("/datasets/_deletions/<deletion_id>/resume", check=authz.ADMIN, response=DeletionPublic)
def resume_deletion(req, deletion_id):
    """Purge more of a deleted dataset (admin); repeat until its status is `done` (idempotent)."""
    _deletion(deletion_id)
    deletion = purge.step(deletion_id)
    if deletion is None:  # gone since it was read
        raise errors.NotFound(f"no deletion {deletion_id!r}")
    return _deletion_view(deletion)


@app.get(
    "/datasets/_deletions/<deletion_id>/logs",
    check=authz.ADMIN,
    query=Paging,
    response=list[AuditEntryPublic],
)
def deletion_logs(req, deletion_id):
    """The audit entries of a deleted dataset, newest first (admin; kept until their retention ends)."""
    deletion = _deletion(deletion_id)
    return _log(req, deletion["name"], deletion.get("generation"))


@app.get("/datasets/<name>", check=authz.on_dataset(authz.READ), response=DatasetPublic)
def get_dataset(req, name, dataset):
    """One dataset (404 when missing or not readable by the caller)."""
    return _view(name, dataset.record)  # the record the check authorized


def _change_dataset(req, name: str, action: str, change) -> dict[str, Any]:
    """Read, change and write one dataset in a transaction, with its audit entry.

    `change(old)` returns the new record (without modified_*) or raises.
    """
    ref = store.collection(datasets.COLLECTION).document(name)

    def write(transaction) -> dict[str, Any]:
        snap = ref.get(transaction=transaction)
        if not snap.exists:
            raise errors.NotFound(f"dataset {name!r} not found")
        old = snap.to_dict()
        record = {**change(old), "modified_at": store.now(), "modified_by": req.caller.email}
        transaction.set(ref, record)
        audit.record(
            transaction,
            req,
            action,
            "dataset",
            name,
            dataset=authz.Dataset(name, old),  # as read here: its generation too
            before=old,
            after=record,
        )
        return _view(name, record)

    result = store.transactional(write)
    _forget([name])
    return result


@app.put(
    "/datasets/<name>",
    check=authz.on_dataset(authz.MANAGE),
    body=DatasetUpdate,
    answers=(409,),
    response=DatasetPublic,
)
def update_dataset(req, name, dataset):
    """Merge metadata into a dataset. After finalize only description and tags may change;
    only admins change `location`, `neuprintHTTP` and `dvid` (403)."""
    extra = req.body.model_extra or {}
    changes = req.body.model_dump(include=req.body.model_fields_set) | dict(extra)

    def merge(old: dict[str, Any]) -> dict[str, Any]:
        # These say where data is read from or sent to (transfer sends the location on; neuprint
        # sends the deployment's neuPrint token to neuprintHTTP.server): admins set them. The
        # same value sent back with other changes is not a change.
        for field in ADMIN_FIELDS:
            if field in changes and changes[field] != old.get(field) and not req.caller.is_admin:
                raise errors.Forbidden(f"only admins set or change a dataset's {field}")
        refused = set(changes) - EDITABLE_AFTER_FINALIZE
        if old.get("finalized_at") and refused:
            raise errors.Conflict(
                "a finalized dataset only takes changes to description and tags",
                details={"refused": sorted(refused)},
            )
        merged = {**old, **changes}
        return {k: v for k, v in merged.items() if not (v is None and k in extra)}

    return _change_dataset(req, name, "dataset_update", merge)


@app.post(
    "/datasets/<name>/finalize", check=authz.on_dataset(authz.MANAGE), answers=(409,), response=DatasetPublic
)
def finalize_dataset(req, name, dataset):
    """Finalize a dataset: its metadata is frozen but for description and tags (again: 409)."""

    def finalize(old: dict[str, Any]) -> dict[str, Any]:
        if old.get("finalized_at"):
            raise errors.Conflict(f"dataset {name!r} was finalized at {jsonio.dumps(old['finalized_at'])}")
        return {**old, "finalized_at": store.now(), "finalized_by": req.caller.email}

    return _change_dataset(req, name, "finalize", finalize)


@app.get(
    "/datasets/<name>/logs",
    check=authz.on_dataset(authz.MANAGE),
    query=Paging,
    response=list[AuditEntryPublic],
)
def dataset_logs(req, name, dataset):
    """The dataset's audit entries, newest first (those of a deleted dataset of the same name are
    not among them: see `/datasets/_deletions/{id}/logs`)."""
    return _log(req, name, dataset.generation)


def _log(req, name: str, generation: str | None):
    from google.cloud.firestore import Query
    from google.cloud.firestore_v1.base_query import FieldFilter

    limit = req.query.limit
    entries = store.collection(audit.COLLECTION)
    # Entries of datasets made before generations have none: theirs is the name alone.
    query = (
        entries.where(filter=FieldFilter("generation", "==", generation))
        if generation
        else entries.where(filter=FieldFilter("dataset", "==", name))
    )
    query = query.order_by("at", direction=Query.DESCENDING)
    page = store.page(query, entries, limit=limit, cursor=req.query.cursor)
    return paged(
        req,
        page,
        # Audit entries are written here only (common/audit.py): no pydantic round trip;
        # AuditEntryPublic leaves out the generation.
        lambda s: trusted(AuditEntryPublic, {"id": s.id, **s.to_dict()}),
        limit,
    )


# -- attachments ----------------------------------------------------------------------------


def _attachment_name(value: str) -> str:
    if not ATTACHMENT_NAME.fullmatch(value or "") or ".." in value:
        raise errors.ValidationFailed(
            "an attachment name is a plain file name (no '/', no '..')",
            details=[{"loc": ["name"], "message": "not a plain file name", "type": "value_error"}],
        )
    return value


@app.post(
    "/datasets/<name>/attachments",
    check=authz.on_dataset(authz.MANAGE),
    status=201,
    multipart=True,
    max_body=ATTACHMENT_LIMIT + (64 << 10),
    response=AttachmentCreatedPublic,
)
def upload_attachment(req, name, dataset):
    """Upload a file (multipart fields `name` and `attachment`, at most 32 MiB)."""
    upload = req.raw.files.get("attachment")
    if upload is None:
        raise errors.ValidationFailed("the multipart field 'attachment' is required")
    filename = _attachment_name(req.raw.form.get("name") or upload.filename or "")
    upload.stream.seek(0, 2)
    size = upload.stream.tell()
    if size > ATTACHMENT_LIMIT:
        raise errors.PayloadTooLarge(f"an attachment is at most {ATTACHMENT_LIMIT} bytes")
    upload.stream.seek(0)
    blob = blobs.bucket(app.settings.attachments_bucket).blob(f"{dataset.data_key}/{filename}")
    blob.content_disposition = _disposition(filename)
    blob.upload_from_file(upload.stream, size=size, content_type=_safe_type(upload.mimetype))
    audit.write(
        req, "attachment_upload", "attachment", f"{name}/{filename}", dataset=dataset, after={"size": size}
    )
    return {"name": filename, "size": size}


@app.get("/datasets/<name>/attachments", check=authz.on_dataset(authz.READ), response=list[AttachmentPublic])
def list_attachments(req, name, dataset):
    """The dataset's attachments, each with a download URL valid for 5 minutes."""
    bucket = blobs.bucket(app.settings.attachments_bucket)
    prefix = dataset.data_key + "/"
    return [
        {
            "name": b.name[len(prefix) :],
            "size": b.size,
            "modified": b.updated,
            # Cloud Storage serves what the URL asks for, also for a file stored before uploads
            # were given a safe type and disposition.
            "url": blobs.signed_url(
                b,
                response_disposition=_disposition(b.name[len(prefix) :]),
                response_type=_safe_type(b.content_type),
            ),
        }
        for b in blobs.client().list_blobs(bucket, prefix=prefix)
    ]


def _safe_type(content_type: str | None) -> str:
    return content_type if content_type in SAFE_ATTACHMENT_TYPES else "application/octet-stream"


def _disposition(filename: str) -> str:
    return f'attachment; filename="{filename}"'  # ATTACHMENT_NAME holds no quote or control character


@app.delete(
    "/datasets/<name>/attachments/<file>", check=authz.on_dataset(authz.MANAGE), status=204, answers=(422,)
)
def delete_attachment(req, name, file, dataset):
    """Delete an attachment (204 also when it does not exist)."""
    from google.api_core.exceptions import NotFound

    target = f"{name}/{_attachment_name(file)}"
    try:
        blobs.bucket(app.settings.attachments_bucket).blob(f"{dataset.data_key}/{file}").delete()
    except NotFound:
        return
    audit.write(req, "attachment_delete", "attachment", target, dataset=dataset)


def handle(request):
    return app(request)


@workers.worker("datasets")
def purge_work(cloud_event):
    """One step of a dataset's purge per Pub/Sub delivery, queueing the next until it is done.
    Steps are idempotent, so a redelivered or duplicate message only repeats a step."""
    deletion_id = workers.named_id(cloud_event, "deletion", DELETION_ID, "purge worker")
    deletion = purge.step(deletion_id)
    if deletion is None:
        raise workers.Gone(f"no deletion {deletion_id}")
    if deletion["status"] != "done":
        purge.continue_later(deletion_id)
