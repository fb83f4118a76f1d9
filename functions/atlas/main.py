"""atlas: marked locations that form a cross-dataset glossary (SPEC §3).

Each user has at most one entry per dataset and location; it starts unverified, and users with
write_others on its dataset verify it. Entries live in `atlas/{id}`, the id derived from
(dataset, user, location) so a POST at the same place updates the same entry. clio's
`/v2/atlas` routes are the same operations in clio's shapes (common.web.clio).
"""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints, model_validator

from common import audit, errors, jsonio
from common.catalog.locations import LocationQuery, location, location_key
from common.identity import auth, authz
from common.models import Email, FreeForm, Public, Strict, check_document_size, check_storable
from common.storage import collections, datasets, store
from common.web import clio
from common.web.http import App, Check, public_item, public_items, streamed

app = App(
    "atlas", "Atlas: marked locations across datasets, verified by curators.", authenticate=auth.authenticate
)

SERVER_FIELDS = (
    "id",
    "user",
    "dataset",
    "location",
    "locationref",
    "timestamp",
    "verified",
    "verified_by",
    "verified_at",
)
ENTRY_ID = re.compile(r"^[0-9a-f]{32}$")


class AtlasEntryPublic(Public):
    """An atlas entry: the server's fields, `title`, `description`, and the caller's own fields
    (free-form, so kept)."""

    model_config = ConfigDict(extra="allow")

    id: str
    user: str
    dataset: str
    locationref: str
    verified: bool = False
    # Always written by POST /atlas/{name}; optional so an old or partial record still answers.
    location: list[int] | None = None
    timestamp: datetime.datetime | None = None
    verified_by: str | None = None
    verified_at: datetime.datetime | None = None
    title: str | None = None
    description: str | None = None


class AtlasDeletedPublic(Public):
    deleted: str


class AtlasEntryCreate(FreeForm):
    """`title` (and `description`) plus the caller's own fields; the server's fields (`id`,
    `user`, `dataset`, `location`, `locationref`, `timestamp`, `verified`) are set by it."""

    title: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
    description: Annotated[str, StringConstraints(max_length=100_000)] | None = None

    @model_validator(mode="after")
    def _storable(self):
        check_storable(self.model_extra or {}, "body")
        return self


class VerifyUpdate(Strict):
    verified: bool


def _entries():
    return store.collection(collections.ATLAS)


def entry_id(dataset: authz.Dataset | str, user: str, key: str) -> str:
    """The id of an entry: derived from the dataset's generation (datasets.data_key), so a new
    dataset of a deleted one's name never meets the old entries."""
    return hashlib.sha256(f"{datasets.data_key(dataset)}\0{user}\0{key}".encode()).hexdigest()[:32]


def _current(snap, record: dict[str, Any] | None) -> bool:
    """The entry belongs to the dataset as it is now (not to a deleted one of the same name)."""
    return record is not None and snap.get("generation") == datasets.generation(record)


def _view(snap) -> dict[str, Any]:
    entry = snap.to_dict()
    entry.pop("generation", None)
    return entry


def _query(**equal: Any):
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = _entries()
    for field, value in equal.items():
        if isinstance(value, list):
            query = query.where(
                filter=FieldFilter(field, "in", value)
                if len(value) > 1
                else FieldFilter(field, "==", value[0])
            )
        else:
            query = query.where(filter=FieldFilter(field, "==", value))
    return query


@app.get("/atlas/all", check=authz.AUTHENTICATED, response=list[AtlasEntryPublic])
def list_all(req):
    """Entries across the datasets the caller may read: the verified ones, the caller's own,
    and every entry of datasets where the caller has write_others."""
    return streamed(jsonio.stream_array(public_items(req, _visible(req))))


def _visible(req):
    """The entries `GET /atlas/all` lists, as stored (without `generation`)."""
    caller = req.caller
    readable = {
        s.id: s.to_dict()
        for s in store.stream(store.collection(datasets.COLLECTION).select(["public", "generation"]))
        if datasets.exposed("dataset", s.id) and caller.can_read(s.id, s.to_dict())
    }
    curated = sorted(n for n, record in readable.items() if caller.can_write_others(n, record))
    others = sorted(set(readable) - set(curated))

    def entries():
        for chunk in store.chunks(curated, store.MAX_IN_VALUES):
            yield from store.stream(_query(dataset=chunk))
        for chunk in store.chunks(others, store.MAX_IN_VALUES):
            yield from store.stream(_query(dataset=chunk, verified=True))
        if others:
            others_set = set(others)
            yield from (
                s
                for s in store.stream(_query(user=caller.email, verified=False))
                if s.get("dataset") in others_set
            )

    return (_view(s) for s in entries() if _current(s, readable.get(s.get("dataset"))))


@app.post(
    "/atlas/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    body=AtlasEntryCreate,
    query=LocationQuery,
    response=AtlasEntryPublic,
)
def put_entry(req, name, dataset):
    """Create or update the caller's entry at x, y, z (`verified` is kept on update)."""
    return _put(req, dataset, req.caller.email, SERVER_FIELDS)


def _put(req, dataset: authz.Dataset, owner: str, server_fields: tuple[str, ...]) -> dict[str, Any]:
    """Create or update `owner`'s entry at x, y, z with the body, less `server_fields`
    (`verified` is kept on update)."""
    point = location(req)
    key = location_key(point)
    payload = {k: v for k, v in req.body.model_dump(exclude_unset=True).items() if k not in server_fields}
    ref = _entries().document(entry_id(dataset, owner, key))
    generation = dataset.generation

    def write(transaction) -> dict[str, Any]:
        snap = ref.get(transaction=transaction)
        old = snap.to_dict() if snap.exists else None
        verification = {
            k: v for k, v in (old or {}).items() if k in ("verified", "verified_by", "verified_at")
        }
        entry = {
            **payload,
            "id": ref.id,
            "user": owner,
            "dataset": dataset.name,
            "location": list(point),
            "locationref": key,
            "timestamp": store.now(),
            "verified": False,
            **verification,
        }
        if generation is not None:
            entry["generation"] = generation
        check_document_size(entry, "the atlas entry")
        transaction.set(ref, entry)
        audit.record(
            transaction,
            req,
            "atlas_update" if old else "atlas_create",
            "atlas",
            ref.id,
            dataset=dataset,
            before=old,
            after=entry,
        )
        return {k: v for k, v in entry.items() if k != "generation"}

    return store.transactional(write)


@app.get("/atlas/<name>", check=authz.on_dataset(authz.READ), response=dict[str, AtlasEntryPublic])
def list_own(req, name, dataset):
    """The caller's entries in the dataset, by "x_y_z"."""
    return streamed(jsonio.stream_object((k, public_item(req, e)) for k, e in _own(req, dataset)))


def _own(req, dataset: authz.Dataset):
    """(x_y_z, entry) of the caller's entries in the dataset, as stored (without `generation`)."""
    snaps = store.stream(_query(dataset=dataset.name, user=req.caller.email))
    return ((s.get("locationref"), _view(s)) for s in snaps if _current(s, dataset.record))


@app.delete(
    "/atlas/<name>", check=authz.on_dataset(authz.WRITE_OWN), query=LocationQuery, response=AtlasDeletedPublic
)
def delete_entry(req, name, dataset):
    """Delete the caller's entry at x, y, z (404 when there is none)."""
    return {"deleted": _delete(req, dataset)}


def _delete(req, dataset: authz.Dataset) -> str:
    key = location_key(location(req))
    ref = _entries().document(entry_id(dataset, req.caller.email, key))
    audit.delete_existing(
        req,
        ref,
        missing=f"you have no atlas entry at {key} in {dataset.name!r}",
        action="atlas_delete",
        target_type="atlas",
        target_id=ref.id,
        dataset=dataset,
    )
    return ref.id


def _may_verify(req, params: dict[str, Any]) -> dict[str, authz.Dataset]:
    """write_others on the entry's dataset (handed to the handler); an entry in a dataset the
    caller cannot read is 404."""
    entry = params["entry"]
    missing = errors.NotFound(f"no atlas entry {entry!r}")  # the same whatever the reason: no leaks
    snap = _entries().document(entry).get() if ENTRY_ID.fullmatch(entry) else None
    if snap is None or not snap.exists:
        raise missing
    name = snap.get("dataset")
    record = datasets.record(name)
    if not _current(snap, record) or not req.caller.can_read(name, record):
        raise missing
    return {"dataset": authz.require(req.caller, name, record, authz.WRITE_OTHERS)}


@app.post(
    "/atlas/verify/<entry>",
    check=Check("write_others on the entry's dataset", _may_verify),
    body=VerifyUpdate,
    body_required=False,
    response=AtlasEntryPublic,
)
def verify(req, entry, dataset):
    """Toggle an entry's `verified`, or set it with `{"verified": bool}`. Each change is written
    only if the entry is as it was read (else it is read and decided again), so concurrent calls
    never lose one; past about 2 s of contention 503 with Retry-After, nothing changed."""
    return _set_verified(req, entry, None if req.body is None else req.body.verified, dataset)


def _set_verified(req, entry: str, verified: bool | None, dataset: authz.Dataset) -> dict[str, Any]:
    """Set the entry's `verified` (None: toggle it); answers the entry as it now is."""
    ref = _entries().document(entry)

    def flip(snap, batch) -> tuple[dict[str, Any], dict[str, Any]]:
        if not snap.exists:
            raise errors.NotFound(f"no atlas entry {entry!r}")
        old = snap.get("verified") is True
        new = (not old) if verified is None else verified
        change = {"verified": new, "verified_by": req.caller.email, "verified_at": store.now()}
        audit.record(
            batch,
            req,
            "verify",
            "atlas",
            entry,
            dataset=dataset,
            before={"verified": old},
            after={"verified": new},
        )
        return change, {**_view(snap), **change}

    # Not a transaction: on one hot entry those hold each other's locks, and none gets through.
    return store.guarded_update(ref, flip)


# -- clio's /v2/atlas: the same operations as neuroglancer's atlas layer and the clio website
# call them. Entries carry clio's `locationkey` and epoch-second timestamps. The website verifies
# an entry by re-POSTing it with `verified` changed and `user` = its owner: that write is the
# owner's entry, needs write_others, and sets `verified` as POST /atlas/verify/{id} does.

CLIO_SERVER_FIELDS = (*SERVER_FIELDS, "locationkey")


class ClioAtlasEntryPublic(AtlasEntryPublic):
    """An atlas entry as clio answers it."""

    locationkey: str
    timestamp: float | None = None  # type: ignore[assignment]  # clio: epoch seconds
    verified_at: float | None = None  # type: ignore[assignment]


class ClioAtlasEntryCreate(AtlasEntryCreate):
    """An entry as clio's clients send it: `user` is whose entry (the caller's by default),
    `verified` the state it should have; the rest as on POST /atlas/{name}."""

    user: Email | None = None
    verified: bool | None = None


def _clio_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return clio.with_epochs({**entry, "locationkey": clio.locationkey(entry)}, "timestamp", "verified_at")


@app.get("/v2/atlas/all", check=authz.AUTHENTICATED, response=list[ClioAtlasEntryPublic])
def clio_list_all(req):
    """The entries the caller may see across datasets, as `GET /atlas/all` lists them."""
    return streamed(jsonio.stream_array(public_items(req, (_clio_entry(e) for e in _visible(req)))))


@app.get("/v2/atlas/<name>", check=authz.on_dataset(authz.READ), response=dict[str, ClioAtlasEntryPublic])
def clio_list_own(req, name, dataset):
    """The caller's entries in the dataset, by "x_y_z"."""
    return streamed(
        jsonio.stream_object((k, public_item(req, _clio_entry(e))) for k, e in _own(req, dataset))
    )


@app.post(
    "/v2/atlas/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    body=ClioAtlasEntryCreate,
    query=LocationQuery,
    response=ClioAtlasEntryPublic,
)
def clio_put_entry(req, name, dataset):
    """The caller's entry at x, y, z; or, when `user` is another user or `verified` changes,
    that user's existing entry (write_others), verified as POST /atlas/verify/{id} does."""
    owner = req.body.user or req.caller.email
    wanted = req.body.verified
    snap = _entries().document(entry_id(dataset, owner, location_key(location(req)))).get()
    exists = snap.exists and _current(snap, dataset.record)
    if wanted is not None and wanted == (exists and snap.get("verified") is True):
        wanted = None  # as it is: neuroglancer sends `verified` back on every entry it read
    if owner == req.caller.email and wanted is None:
        return _clio_entry(_put(req, dataset, owner, CLIO_SERVER_FIELDS))
    authz.require(req.caller, name, dataset.record, authz.WRITE_OTHERS)
    if owner != req.caller.email and not exists:
        raise errors.NotFound(f"{owner} has no atlas entry at {location_key(location(req))} in {name!r}")
    entry = _put(req, dataset, owner, CLIO_SERVER_FIELDS)
    if wanted is not None:
        entry = _set_verified(req, entry["id"], wanted, dataset)
    return _clio_entry(entry)


@app.delete(
    "/v2/atlas/<name>", check=authz.on_dataset(authz.WRITE_OWN), query=LocationQuery, response=clio.NULL
)
def clio_delete_entry(req, name, dataset):
    """Delete the caller's entry at x, y, z: 200 null, also when there is none."""
    with clio.absent_ok():  # clio answered a delete of nothing as a success
        _delete(req, dataset)


def handle(request):
    return app(request)
