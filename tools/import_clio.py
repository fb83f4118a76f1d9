"""Move a clio-store deployment's data into Gatehouse: `python -m tools.import_clio`.

Reads clio-store's Firestore (another project, through Application Default Credentials, or an
emulator: `--source-emulator host:port`) and writes Gatehouse's records into the Firestore of the
usual settings (GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST), laid out as the functions lay
them out (common/storage/, functions/<name>/):

  clio_datasets/{ds}                          -> datasets/{ds} (metadata whole, + dataset_names claim)
  clio_annotations_global/metadata neurons.ds -> datasets/{ds} metadata `neurons` (the version map)
  clio_users/{email}                          -> users/{email} (roles, grants, groups, name, disabled)
  clio_annotations_v2/{ds}/{email}/{key}      -> annotations/{generation}/v2_annotations/{email|key}
  clio_annotations/ATLAS/annotations/{id}     -> atlas/{entry id} (verification kept)
  clio_savedsearches/USER/searches/{id}       -> savedsearches/{generation}/searches/{email|key}
  clio_keyvalue/{email}/{scope}/{key}         -> clio_kv/{email}/{scope}/{key} (`_timestamp` kept)
  clio_pull_requests/{email}/{scope}/{key}    -> clio_pull_requests/{email}/{scope}/{key}

Each record is compared with what Gatehouse holds: absent -> created; equal -> unchanged (so a
second run writes nothing); different -> updated when the source is at least as new (by the
records' timestamps), else a conflict, reported and left alone (`--overwrite` forces it; a user
record carries no time, so a different one is always a conflict). What cannot be mapped is
reported with why. `--dry-run` reads both sides and writes nothing. Writes are batched (at most
500 per commit) with one audit entry per kind and run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import re
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

from common import audit
from common.catalog.locations import location_key, user_doc_id
from common.config import settings
from common.identity import authz
from common.models import BUILTIN_ROLES, COORDINATE_RANGE, GROUP_NAME, normalize_email
from common.names import is_dataset_name
from common.storage import collections, datasets, keyvalue, store
from functions.annotations.main import KEY, OPTIONAL_FIELDS, POS_LENGTH
from functions.atlas.main import CLIO_SERVER_FIELDS, entry_id
from functions.datasets.main import NAME_CLAIMS, DatasetCreate
from functions.datasets.main import SERVER_FIELDS as DATASET_SERVER_FIELDS

# clio-store's collections (its config.py) and the documents it keeps under them.
CLIO_DATASETS = "clio_datasets"
CLIO_USERS = "clio_users"
CLIO_ANNOTATIONS_V2 = "clio_annotations_v2"
CLIO_ANNOTATIONS = "clio_annotations"  # ATLAS/annotations; USER/annotations is v1 (removed 2021)
CLIO_GLOBAL = "clio_annotations_global"  # metadata (the version map); other docs: pre-DVID body annotations
CLIO_SAVEDSEARCHES = "clio_savedsearches"
CLIO_KEYVALUE = "clio_keyvalue"
CLIO_PULL_REQUESTS = "clio_pull_requests"
NOT_IMPORTED = {  # collection -> why its documents are left behind
    "clio_site_reports": "site reports are a log of website visits; Gatehouse keeps none",
    "clio_volumes": "the volume proxy (/v2/volumes) is not served by Gatehouse and no client calls it",
    "clio_subvol": "subvolume submissions were an unmounted clio-store stub",
}
VERSION_MAP_KEYS = ("tag_to_uuid", "uuid_to_tag", "head_tag", "head_uuid")
KINDS = ("datasets", "users", "annotations", "atlas", "savedsearches", "kv", "pull_requests")
READ_CHUNK = 300  # target documents read (get_all) and decided at a time
PROGRESS_EVERY = 10  # chunks between two progress lines
ACTOR = "clio-store-import"


def _seconds(value: Any) -> float | None:
    """A record's time as epoch seconds: Firestore timestamps and clio's float seconds."""
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _utc(value: Any) -> datetime.datetime | None:
    """A plain UTC datetime (microseconds) from a Firestore timestamp or clio's float seconds."""
    seconds = _seconds(value)
    return None if seconds is None else datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _plain(value: Any) -> Any:
    """A record in a form that compares equal however Firestore handed it back."""
    if isinstance(value, datetime.datetime):
        return round(value.timestamp(), 6)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _latest(*values: Any) -> float | None:
    times = [t for t in map(_seconds, values) if t is not None]
    return max(times) if times else None


# When a stored record was last changed, per kind (None: its records carry no time).
TIME: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "datasets": lambda r: _latest(r.get("modified_at")),
    "users": lambda r: None,
    "annotations": lambda r: _latest(r.get("timestamp")),
    "atlas": lambda r: _latest(r.get("timestamp"), r.get("verified_at")),
    "savedsearches": lambda r: _latest(r.get("timestamp")),
    "kv": lambda r: _latest(r.get(keyvalue.TIMESTAMP)),
    "pull_requests": lambda r: _latest(r.get(keyvalue.TIMESTAMP)),
}
# Fields a comparison leaves out: the server's bookkeeping of the import itself.
IGNORED = {"datasets": {"created_at", "created_by", "modified_at", "modified_by"}}


@dataclasses.dataclass
class Item:
    """One Gatehouse document to write (and others written with it, e.g. a name claim)."""

    label: str
    ref: Any
    record: dict[str, Any]
    extra: list[tuple[Any, dict[str, Any]]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Report:
    counts: dict[str, Counter] = dataclasses.field(default_factory=lambda: {k: Counter() for k in KINDS})
    unmapped: list[dict[str, str]] = dataclasses.field(default_factory=list)
    conflicts: list[dict[str, str]] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def cannot(self, kind: str, what: str, why: str) -> None:
        self.counts[kind]["unmapped"] += 1
        self.unmapped.append({"kind": kind, "what": what, "why": why})

    @property
    def changes(self) -> int:
        return sum(c["created"] + c["updated"] for c in self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "counts": {k: {n: v for n, v in c.items() if v} for k, c in self.counts.items()},
            "changes": self.changes,
            "conflicts": self.conflicts,
            "unmapped": self.unmapped,
            "notes": self.notes,
        }

    def text(self, dry_run: bool) -> str:
        verb = "would write" if dry_run else "wrote"
        lines = [f"clio-store import ({'dry run: nothing written' if dry_run else 'done'}); {verb}:"]
        for kind, c in self.counts.items():
            parts = ", ".join(
                f"{c[k]} {k}"
                for k in ("created", "updated", "unchanged", "conflicts", "unmapped", "duplicates")
                if c[k]
            )
            lines.append(f"  {kind:14} {parts or 'nothing found'}")
        for conflict in self.conflicts:
            lines.append(f"conflict: {conflict['kind']} {conflict['what']}: {conflict['why']}")
        for item in self.unmapped:
            lines.append(f"not imported: {item['kind']} {item['what']}: {item['why']}")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@contextlib.contextmanager
def _emulator_host(host: str | None) -> Iterator[None]:
    """FIRESTORE_EMULATOR_HOST as `host` while a client is made (the client reads it then)."""
    if host is None:
        yield
        return
    before = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = before


def source_client(project: str, emulator: str | None = None):
    """clio-store's Firestore: the project through ADC, or that project on an emulator."""
    from google.cloud import firestore

    with _emulator_host(emulator):
        return firestore.Client(project=project)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _email(value: Any) -> str | None:
    try:
        return normalize_email(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _point(value: Any) -> tuple[int, ...] | None:
    """Integer coordinates in Gatehouse's range, or None."""
    if not isinstance(value, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in value):
        return None
    low, high = COORDINATE_RANGE
    return tuple(value) if all(low <= c < high for c in value) else None


def _location(doc: dict[str, Any]) -> tuple[int, ...] | None:
    """A clio record's point: its `location`, else its `locationkey` ("x_y_z")."""
    point = _point(doc.get("location"))
    if point is None and isinstance(doc.get("locationkey"), str):
        with contextlib.suppress(ValueError):
            point = _point([int(c) for c in doc["locationkey"].split("_")])
    return point if point is not None and len(point) == 3 else None


class Importer:
    def __init__(self, source, *, dry_run: bool = False, overwrite: bool = False, out=None):
        self.source, self.dry_run, self.overwrite = source, dry_run, overwrite
        self.out = out or sys.stderr  # progress
        self.report = Report()
        self.run_id = uuid.uuid4().hex
        # audit.entry reads the caller and the request id of a request; the import is one.
        self.req = SimpleNamespace(caller=SimpleNamespace(email=ACTOR), id=f"clio-import-{self.run_id}")
        self.targets: dict[str, datasets.Dataset] = {}  # clio dataset -> its Gatehouse dataset
        self.users: list[str] = []

    # -- the engine: compare, decide, write in batches ------------------------------------------

    def sync(self, kind: str, items: Iterable[Item]) -> None:
        counts = self.report.counts[kind]
        batch, size, chunks = store.db().batch(), 0, 0
        for chunk in _chunks(items, READ_CHUNK):
            stored = {
                s.reference.path: s.to_dict()
                for s in store.db().get_all([item.ref for item in chunk])
                if s.exists
            }
            for item in chunk:
                decision = self._decide(kind, stored.get(item.ref.path), item)
                counts[decision] += 1
                if decision not in ("created", "updated") or self.dry_run:
                    continue
                writes = [(item.ref, item.record), *item.extra]
                if size + len(writes) > store.MAX_WRITES_PER_COMMIT - 1:  # room for the audit entry
                    batch.commit()
                    batch, size = store.db().batch(), 0
                for ref, record in writes:
                    batch.set(ref, record)
                size += len(writes)
            chunks += 1
            if chunks % PROGRESS_EVERY == 0:
                self._progress(kind)
        self._progress(kind)
        if counts["created"] + counts["updated"] and not self.dry_run:
            after = {k: counts[k] for k in ("created", "updated", "unchanged", "conflicts")}
            audit.record(batch, self.req, "clio_import", kind, self.run_id, after=after)
            batch.commit()

    def _decide(self, kind: str, old: dict[str, Any] | None, item: Item) -> str:
        if old is None:
            return "created"
        ignored = IGNORED.get(kind, set())
        if _plain({k: v for k, v in old.items() if k not in ignored}) == _plain(
            {k: v for k, v in item.record.items() if k not in ignored}
        ):
            return "unchanged"
        if self.overwrite:
            return "updated"
        then, now = TIME[kind](old), TIME[kind](item.record)
        if then is not None and now is not None and then <= now:
            return "updated"
        why = (
            "Gatehouse's record differs and is newer"
            if then is not None and now is not None
            else "Gatehouse's record differs and neither side says which is newer"
        )
        self.report.conflicts.append(
            {"kind": kind, "what": item.label, "why": why + " (kept; --overwrite forces)"}
        )
        return "conflicts"

    def _progress(self, kind: str) -> None:
        c = self.report.counts[kind]
        seen = sum(c[k] for k in ("created", "updated", "unchanged", "conflicts"))
        print(
            f"{kind}: {seen} compared: {c['created']} new, {c['updated']} updated, "
            f"{c['unchanged']} unchanged, {c['conflicts']} conflicts, {c['unmapped']} not importable",
            file=self.out,
            flush=True,
        )

    # -- the kinds, in an order where each finds what it refers to ------------------------------

    def run(self) -> Report:
        self.sync("datasets", self.dataset_items())
        self.sync("users", self.user_items())
        for name in self.targets:  # this process's cached copies (the functions' expire in 30 s)
            datasets.forget(name)
        for email in self.users:
            authz.forget_user(email)
        self.sync("annotations", self.annotation_items())
        self.sync("atlas", self.atlas_items())
        self.sync("savedsearches", self.saved_search_items())
        self.sync("kv", self.value_items(CLIO_KEYVALUE, keyvalue.KV, "kv"))
        self.sync(
            "pull_requests", self.value_items(CLIO_PULL_REQUESTS, keyvalue.PULL_REQUESTS, "pull_requests")
        )
        self.left_behind()
        return self.report

    def _collection(self, *path: str):
        return self.source.collection("/".join(path))

    def dataset_items(self) -> Iterator[Item]:
        """clio's datasets, metadata whole, with the body-annotation version map as `neurons`."""
        meta = self._collection(CLIO_GLOBAL).document("metadata").get()
        neurons = dict((meta.to_dict() or {}).get("neurons") or {}) if meta.exists else {}
        snaps = list(self._collection(CLIO_DATASETS).stream())
        existing = {
            s.id: s.to_dict()
            for s in store.db().get_all(
                [store.collection(datasets.COLLECTION).document(s.id) for s in snaps if is_dataset_name(s.id)]
            )
            if s.exists
        }
        claims = {
            s.id: s.get("name")
            for s in store.db().get_all(
                [store.collection(NAME_CLAIMS).document(s.id.lower()) for s in snaps if is_dataset_name(s.id)]
            )
            if s.exists
        }
        for snap in snaps:
            name = snap.id
            if not is_dataset_name(name):
                self.report.cannot("datasets", name, "not a valid Gatehouse dataset name (nor its data)")
                continue
            if claims.get(name.lower(), name) != name:
                self.report.cannot(
                    "datasets",
                    name,
                    f"the name is taken by {claims[name.lower()]!r} (names are unique regardless of case)",
                )
                continue
            claims[name.lower()] = name  # another clio dataset differing only in case is refused
            metadata = snap.to_dict() or {}
            changed = [snap.update_time]
            if name in neurons:
                versions = neurons.pop(name) or {}
                metadata["neurons"] = {k: versions[k] for k in VERSION_MAP_KEYS if k in versions}
                changed.append(meta.update_time)
            record = self._dataset_record(name, metadata)
            if record is None:
                continue
            old = existing.get(name)
            when = _utc(max(t.timestamp() for t in changed))
            record.update(
                modified_at=when,
                modified_by=ACTOR,
                created_at=old["created_at"] if old else when,
                created_by=old["created_by"] if old else ACTOR,
                generation=(old or {}).get("generation") or uuid.uuid4().hex,
            )
            self.targets[name] = datasets.Dataset(name, record)
            claim = (store.collection(NAME_CLAIMS).document(name.lower()), {"name": name})
            yield Item(name, store.collection(datasets.COLLECTION).document(name), record, [claim])
        for name in sorted(neurons):
            self.report.cannot("datasets", f"{name} (version map)", "no clio dataset of that name")

    def _dataset_record(self, name: str, metadata: dict[str, Any]) -> dict[str, Any] | None:
        """The record the datasets function would store for `metadata` (None: not storable)."""
        from pydantic import ValidationError

        metadata = {"description": "", **metadata}
        for field in sorted(set(metadata) & set(DATASET_SERVER_FIELDS)):
            self.report.notes.append(f"dataset {name}: field {field!r} dropped (Gatehouse sets it)")
            metadata.pop(field)
        try:
            return DatasetCreate.model_validate(metadata).model_dump()
        except ValidationError as first:
            if "location" in metadata and any(e["loc"][:1] == ("location",) for e in first.errors()):
                self.report.notes.append(
                    f"dataset {name}: location {metadata['location']!r} cannot be stored "
                    "(not a URL of a known scheme); imported without it"
                )
                metadata.pop("location")
                try:
                    return DatasetCreate.model_validate(metadata).model_dump()
                except ValidationError as again:
                    first = again
            self.report.cannot(
                "datasets", name, f"metadata not storable: {_first_error(first)} (nor its data)"
            )
            return None

    def user_items(self) -> Iterator[Item]:
        """clio's users: global and per-dataset roles, groups, name, disabled (clio's `org` is not kept)."""
        known_roles = {*BUILTIN_ROLES, *settings().extra_roles}
        snaps = list(self._collection(CLIO_USERS).stream())
        granted = sorted(
            {n for s in snaps for n in (s.to_dict() or {}).get("datasets") or {} if is_dataset_name(n)}
        )
        generations = {
            s.id: datasets.generation(s.to_dict())
            for s in store.db().get_all([store.collection(datasets.COLLECTION).document(n) for n in granted])
            if s.exists
        }
        generations.update({n: d.generation for n, d in self.targets.items()})
        for snap in snaps:
            email = _email(snap.id)
            if email is None:
                self.report.cannot("users", snap.id, "the user's id is not an email")
                continue
            doc = snap.to_dict() or {}

            def roles(values: Any, where: str, email=email) -> list[str]:
                kept = []
                for role in values or []:
                    if role in known_roles:
                        kept.append(role)
                    else:
                        self.report.notes.append(
                            f"user {email}: role {role!r} {where} dropped (unknown here; EXTRA_ROLES declares it)"
                        )
                return kept

            grants = {}
            for name, values in (doc.get("datasets") or {}).items():
                if is_dataset_name(name):
                    grants[name] = roles(values, f"on {name}")
                else:
                    self.report.notes.append(f"user {email}: grant on {name!r} dropped (not a dataset name)")
            groups = []
            for group in doc.get("groups") or []:
                if isinstance(group, str) and re.fullmatch(GROUP_NAME, group):
                    groups.append(group)
                else:
                    self.report.notes.append(f"user {email}: group {group!r} dropped (not a group name)")
            record = {
                "name": doc.get("name") or "",
                "global_roles": roles(doc.get("global_roles"), "(global)"),
                "datasets": grants,
                "groups": groups,
                "disabled": doc.get("disabled") is True,
                "grant_generations": {n: generations.get(n) for n in grants},
            }
            self.users.append(email)
            yield Item(email, store.collection(authz.USERS).document(email), record)

    def _dataset(self, kind: str, name: Any, what: str) -> datasets.Dataset | None:
        dataset = self.targets.get(name) if isinstance(name, str) else None
        if dataset is None:
            self.report.cannot(kind, what, f"its dataset {name!r} was not imported")
        return dataset

    def annotation_items(self) -> Iterator[Item]:
        """clio's v2 annotations, by dataset and user; `timestamp` = when clio last wrote each."""
        for dataset_ref in self._collection(CLIO_ANNOTATIONS_V2).list_documents():
            for user_coll in dataset_ref.collections():
                for snap in user_coll.stream():
                    item = self._annotation(dataset_ref.id, user_coll.id, snap)
                    if item is not None:
                        yield item

    def _annotation(self, name: str, owner: str, snap) -> Item | None:
        what = f"{name}/{owner}/{snap.id}"
        dataset = self._dataset("annotations", name, what)
        if dataset is None:
            return None
        email = _email(owner)
        if email is None:
            self.report.cannot("annotations", what, "its user is not an email")
            return None
        doc = snap.to_dict() or {}
        kind, pos = doc.get("kind"), _point(doc.get("pos"))
        if (
            kind not in POS_LENGTH
            or pos is None
            or len(pos) != POS_LENGTH[kind]
            or not KEY.fullmatch(snap.id)
        ):
            self.report.cannot(
                "annotations", what, "not a v2 point, line segment or sphere with integer positions"
            )
            return None
        record = {
            "key": snap.id,
            "user": email,
            "kind": kind,
            "pos": list(pos),
            "timestamp": _utc(snap.update_time),
            **{k: doc[k] for k in OPTIONAL_FIELDS if doc.get(k) is not None},
        }
        ref = (
            store.collection(collections.ANNOTATIONS)
            .document(dataset.data_key)
            .collection(collections.V2_ANNOTATIONS)
            .document(user_doc_id(email, snap.id))
        )
        return Item(what, ref, record)

    def atlas_items(self) -> Iterator[Item]:
        """clio's atlas entries; of several at one (dataset, user, place), the newest."""
        newest = Newest()
        for snap in self._collection(CLIO_ANNOTATIONS, "ATLAS", "annotations").stream():
            doc = snap.to_dict() or {}
            what = f"{doc.get('dataset')}/{snap.id}"
            dataset = self._dataset("atlas", doc.get("dataset"), what)
            if dataset is None:
                continue
            email, point = _email(doc.get("user") or doc.get("email")), _location(doc)
            if email is None or point is None:
                self.report.cannot(
                    "atlas", what, "no user's email" if email is None else "no integer location"
                )
                continue
            key = location_key(point)
            when = _utc(doc.get("timestamp")) or _utc(snap.update_time)
            record = {
                **{k: v for k, v in doc.items() if k not in (*CLIO_SERVER_FIELDS, "email")},
                "id": entry_id(dataset, email, key),
                "user": email,
                "dataset": dataset.name,
                "location": list(point),
                "locationref": key,
                "timestamp": when,
                "verified": doc.get("verified") is True,
            }
            if dataset.generation is not None:
                record["generation"] = dataset.generation
            ref = store.collection(collections.ATLAS).document(record["id"])
            newest.add((dataset.name, email, key), Item(f"{dataset.name}/{email}/{key}", ref, record))
        if newest.dropped:
            self.report.counts["atlas"]["duplicates"] += newest.dropped
        yield from newest.items.values()

    def saved_search_items(self) -> Iterator[Item]:
        """clio's saved searches (clio added one per POST); of several at one place, the newest."""
        newest = Newest()
        for snap in self._collection(CLIO_SAVEDSEARCHES, "USER", "searches").stream():
            doc = snap.to_dict() or {}
            what = f"{doc.get('dataset')}/{snap.id}"
            dataset = self._dataset("savedsearches", doc.get("dataset"), what)
            if dataset is None:
                continue
            email, point = _email(doc.get("email") or doc.get("user")), _location(doc)
            if email is None or point is None:
                self.report.cannot(
                    "savedsearches", what, "no user's email" if email is None else "no integer location"
                )
                continue
            key = location_key(point)
            when = _utc(doc.get("timestamp")) or _utc(snap.update_time)
            payload = {
                k: v
                for k, v in doc.items()
                if k not in ("timestamp", "dataset", "location", "locationkey", "email", "user", "id")
            }
            record = {
                "user": email,
                "location": list(point),
                "locationkey": key,
                "timestamp": when,
                "payload": payload,
            }
            ref = (
                store.collection(collections.SAVED_SEARCHES)
                .document(dataset.data_key)
                .collection(collections.SEARCHES)
                .document(user_doc_id(email, key))
            )
            newest.add((dataset.name, email, key), Item(f"{dataset.name}/{email}/{key}", ref, record))
        if newest.dropped:
            self.report.counts["savedsearches"]["duplicates"] += newest.dropped
        yield from newest.items.values()

    def value_items(self, source_root: str, target_root: str, kind: str) -> Iterator[Item]:
        """Key-value documents or pull requests: `{root}/{email}/{scope}/{key}`, documents as they are."""
        for user_ref in self._collection(source_root).list_documents():
            email = _email(user_ref.id)
            for scope in user_ref.collections():
                for snap in scope.stream():
                    what = f"{user_ref.id}/{scope.id}/{snap.id}"
                    if email is None:
                        self.report.cannot(kind, what, "its user is not an email")
                        continue
                    ref = keyvalue.user_root(target_root, email).collection(scope.id).document(snap.id)
                    yield Item(what, ref, snap.to_dict() or {})

    def left_behind(self) -> None:
        """What clio kept that Gatehouse does not serve: counted, with why."""
        v1 = _count(self._collection(CLIO_ANNOTATIONS, "USER", "annotations"))
        if v1:
            self.report.cannot(
                "annotations",
                f"{v1} v1 annotations (clio_annotations/USER)",
                "clio's v1 annotations were removed from clio in 2021; no client reads them",
            )
        for ref in self._collection(CLIO_GLOBAL).list_documents():
            if ref.id == "metadata":
                continue
            n = sum(_count(coll) for coll in ref.collections())
            if n:
                self.report.cannot(
                    "annotations",
                    f"{n} pre-DVID body annotations ({CLIO_GLOBAL}/{ref.id})",
                    "body annotations live in DVID since 2022; the json-annotations routes read them there",
                )
        for collection, why in NOT_IMPORTED.items():
            n = _count(self._collection(collection)) + sum(
                _count(c) for ref in self._collection(collection).list_documents() for c in ref.collections()
            )
            if n:
                self.report.notes.append(f"{n} documents of {collection} not imported: {why}")


class Newest:
    """Of the items at one place (clio could hold several there), the one with the latest
    `timestamp`; how many were left out."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, ...], Item] = {}
        self.dropped = 0

    def add(self, place: tuple[str, ...], item: Item) -> None:
        kept = self.items.get(place)
        if kept is not None:
            self.dropped += 1
            if kept.record["timestamp"] >= item.record["timestamp"]:
                return
        self.items[place] = item


def _count(collection) -> int:
    return sum(1 for _ in collection.select([]).stream())


def _first_error(exc) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.import_clio",
        description="Move a clio-store deployment's data into Gatehouse (README: Moving from clio-store).",
    )
    parser.add_argument(
        "--source-project", required=True, help="the Google Cloud project of clio-store's Firestore"
    )
    parser.add_argument(
        "--source-emulator", metavar="HOST:PORT", help="read the source project from this Firestore emulator"
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; report what would be written")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace Gatehouse records that differ even when they are newer",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    target = settings().project
    if args.source_project == target and not args.source_emulator:
        print("the source and the target are one project; nothing to move", file=sys.stderr)
        return 2
    importer = Importer(
        source_client(args.source_project, args.source_emulator),
        dry_run=args.dry_run,
        overwrite=args.overwrite,
    )
    print(
        f"importing clio-store {args.source_project} into {target}{' (dry run)' if args.dry_run else ''}",
        file=sys.stderr,
    )
    report = importer.run()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.text(args.dry_run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
