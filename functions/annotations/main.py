"""annotations: each user's annotations of a dataset (SPEC §3).

v1: one free-form object per user and location (`?x=&y=&z=`), as in the seed's curl lines.
v2: typed points, line segments and spheres, written one at a time or up to 10,000 per request.
clio's `/v2/annotations/{ds}` routes are v2's operations in clio's shapes (common.web.clio).
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from common import audit, errors
from common.catalog.locations import LocationStore, location_routes, user_doc_id
from common.identity import auth, authz
from common.models import (
    COORDINATE_RANGE,
    Coordinate,
    Email,
    GroupName,
    Paging,
    Payload,
    Public,
    Query,
    Strict,
    Truncated,
)
from common.storage import collections, commits, store
from common.web import clio
from common.web.http import App, paged, trusted

app = App(
    "annotations",
    "Annotations: v1 free-form objects at a location, v2 typed points, "
    "line segments and spheres (bulk writes up to 10,000).",
    authenticate=auth.authenticate,
)


MAX_PER_REQUEST = 10_000
# 10,000 annotations with titles and props do not fit the usual 1 MiB; this route allows more.
BULK_BODY_LIMIT = 16 << 20
PER_COMMIT = store.MAX_WRITES_PER_COMMIT - 1  # the last write of each commit is its audit entry
KIND_PREFIX = {"point": "Pt", "lineseg": "Ln", "sphere": "Sp"}
POS_LENGTH = {"point": 3, "lineseg": 6, "sphere": 6}
KEY = re.compile(r"^(Pt-?[0-9]+(_-?[0-9]+){2}|(Ln|Sp)-?[0-9]+(_-?[0-9]+){5})$")
OptionalField = Literal["prop", "tags", "title", "description"]
OPTIONAL_FIELDS: tuple[str, ...] = get_args(OptionalField)

TagName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class AnnotationCreate(Strict):
    """One v2 annotation; its key follows from `kind` and `pos`."""

    kind: Literal["point", "lineseg", "sphere"]
    pos: list[Coordinate] = Field(
        description="3 integers for a point; 6 for a line segment "
        "(its end points) or a sphere (the ends of a diameter)"
    )
    prop: Payload | None = None
    tags: Annotated[list[TagName], Field(max_length=100)] | None = None
    title: Annotated[str, StringConstraints(max_length=1_000)] | None = None
    description: Annotated[str, StringConstraints(max_length=100_000)] | None = None
    user: Email | None = Field(None, description="whose annotation; another user's needs write_others")

    @model_validator(mode="after")
    def _pos_fits_kind(self):
        if len(self.pos) != POS_LENGTH[self.kind]:
            raise ValueError(
                f"a {self.kind} has {POS_LENGTH[self.kind]} integers in pos, not {len(self.pos)}"
            )
        return self

    @property
    def key(self) -> str:
        return KIND_PREFIX[self.kind] + "_".join(map(str, self.pos))


class AnnotationPublic(Public):
    """A stored v2 annotation; the optional fields are present when they were written (a
    document missing one still answers: a read never fails for an old or partial record)."""

    key: str
    user: str
    kind: Literal["point", "lineseg", "sphere"]
    pos: list[int]
    timestamp: datetime.datetime | None = None
    prop: dict[str, Any] | None = None
    tags: list[str] | None = None
    title: str | None = None
    description: str | None = None


class AnnotationWrittenPublic(Public):
    key: str


class AnnotationsWrittenPublic(Public):
    keys: list[str]


def _one_or_list(value: Any) -> str:
    return "list" if isinstance(value, list) else "one"


AnnotationsCreate = Annotated[
    Annotated[AnnotationCreate, Tag("one")]
    | Annotated[list[AnnotationCreate], Field(min_length=1), Tag("list")],
    Discriminator(_one_or_list),
]


# -- v1: the seed's POST/GET/DELETE /annotations/{ds}?x=&y=&z= ----------------------------------

V1 = LocationStore(collections.ANNOTATIONS, collections.V1_ANNOTATIONS, "annotation_v1")
app.include_router(location_routes(V1, "annotation"), prefix="/annotations")


# -- v2 -------------------------------------------------------------------------------------


def _v2(dataset: authz.Dataset):
    return (
        store.collection(collections.ANNOTATIONS)
        .document(dataset.data_key)
        .collection(collections.V2_ANNOTATIONS)
    )


def _v2_path(dataset: authz.Dataset) -> tuple[str, str, str]:
    """The path of `_v2`, for names of its documents (common.storage.commits)."""
    return collections.ANNOTATIONS, dataset.data_key, collections.V2_ANNOTATIONS


def _comma_list(value: object) -> object:
    """`a,b` -> ("a", "b"): how a query parameter carries a list."""
    return (
        tuple(sorted({v.strip() for v in value.split(",") if v.strip()})) if isinstance(value, str) else value
    )


# Lists in a query string: `?groups=a,b`.
Conditional = Annotated[tuple[OptionalField, ...], BeforeValidator(_comma_list, json_schema_input_type=str)]
Groups = Annotated[tuple[GroupName, ...], BeforeValidator(_comma_list, json_schema_input_type=str)]


class WriteQuery(Query):
    replace: bool = Field(
        True, description="true (default) replaces a stored annotation; false merges into it"
    )
    move_key: Annotated[str, StringConstraints(pattern=KEY.pattern)] | None = Field(
        None, description="one annotation only: delete this key after writing the new one"
    )
    # The default as the query string carries it ("": none), so the documented default is a
    # string like the parameter's schema; validated into () like any other value.
    conditional: Conditional = Field(
        "",
        validate_default=True,
        description="comma list of prop, tags, title, description not overwritten when set",
    )


_WHOSE = "whose annotations (default: the caller's; another user's needs write_others)"


class WhoseQuery(Query):
    user: Email | None = Field(None, description=_WHOSE)


class ListQuery(Paging):
    user: Email | None = Field(None, description=_WHOSE)
    groups: Groups | None = Field(
        None,
        description="comma list of groups: their members' annotations (a non-admin: only their own groups)",
    )
    kind: Literal["point", "lineseg", "sphere"] | None = None
    tag: str | None = Field(None, description="only annotations with this tag")


def _whose(req, dataset: authz.Dataset, email: str | None) -> str:
    """Whose data: `email` from the query (the caller by default); another user's needs
    write_others."""
    if not email:
        return req.caller.email
    if email != req.caller.email and not req.caller.can_write_others(dataset.name, dataset.record):
        raise errors.Forbidden("another user's annotations need write_others on the dataset")
    return email


def _is_set(value: Any) -> bool:
    return value is not None


def _merge(
    old: dict[str, Any],
    new: dict[str, Any],
    replace: bool,
    keep: tuple[str, ...],
    kept: Callable[[Any], bool] = _is_set,
) -> dict[str, Any]:
    """`new` written over `old`: replacing it or merged into it (`prop` key by key), with the
    `keep` (conditional) fields left as they are where `old` has a value that is `kept` (set;
    clio's routes: truthy)."""
    if replace:
        merged = dict(new)
    else:
        merged = {**old, **new}
        if "prop" in old and "prop" in new:
            merged["prop"] = {**old["prop"], **new["prop"]}
    for name in keep:
        if kept(old.get(name)):
            merged[name] = old[name]
    return merged


@app.post(
    "/annotations/v2/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    body=AnnotationsCreate,
    max_items=MAX_PER_REQUEST,
    max_body=BULK_BODY_LIMIT,
    query=WriteQuery,
    response=AnnotationWrittenPublic | AnnotationsWrittenPublic,  # as one was written, or a list
)
def write_v2(req, name, dataset):
    """Write one annotation or a list of up to 10,000, validated as a whole before any write."""
    return _write(req, dataset, req.query.replace, req.query.conditional)


def _write(
    req,
    dataset: authz.Dataset,
    replace: bool,
    keep: tuple[str, ...],
    kept: Callable[[Any], bool] = _is_set,
) -> dict[str, Any]:
    """The write of one annotation (`{"key"}`) or a list (`{"keys"}`) in `req.body`."""
    single = not isinstance(req.body, list)
    items: list[AnnotationCreate] = [req.body] if single else req.body
    move_key = req.query.move_key
    if move_key is not None and not single:
        raise errors.BadRequest("move_key takes the key of one annotation, with a single annotation")
    caller = req.caller
    if any(a.user not in (None, caller.email) for a in items) and not caller.can_write_others(
        dataset.name, dataset.record
    ):
        raise errors.Forbidden("writing another user's annotations needs write_others on the dataset")

    stamp = store.now()
    # user_doc_id(user, key) is a prefix of the user's (their quoted email) and the key: quoted
    # once per user, not once per annotation.
    id_prefix = functools.cache(lambda user: user_doc_id(user, ""))
    pending: dict[str, list[dict[str, Any]]] = {}  # document id -> its writes, in request order
    keys = []
    for a in items:
        user, key = a.user or caller.email, a.key
        keys.append(key)
        # The validated values as they are (they are not changed, only stored): no model_dump copy.
        record = {"key": key, "user": user, "kind": a.kind, "pos": a.pos, "timestamp": stamp}
        for name in a.model_fields_set.intersection(OPTIONAL_FIELDS):
            record[name] = getattr(a, name)
        pending.setdefault(id_prefix(user) + key, []).append(record)
    moved = (
        user_doc_id(caller.email if items[0].user is None else items[0].user, move_key) if move_key else None
    )
    _write_all(req, dataset, pending, replace, keep, kept, moved)
    return {"key": keys[0]} if single else {"keys": keys}


def _write_all(
    req,
    dataset: authz.Dataset,
    pending: dict[str, list[dict[str, Any]]],
    replace: bool,
    keep: tuple[str, ...],
    kept: Callable[[Any], bool],
    moved: str | None,
) -> None:
    """Commit `pending` in commits of at most 500 writes, each with its audit entry, several at
    once (common.storage.commits). Plain replacements are blind writes built as plain protobufs;
    merges read the stored annotations in a transaction. A failed commit answers with what was
    written (the commits that succeeded, in request order): the writes are idempotent, so a
    retry is safe."""
    from google.api_core import exceptions

    chunks = list(store.chunks(list(pending), PER_COMMIT))

    def records(chunk: list[str], stored: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
        for doc_id in chunk:
            record = stored.get(doc_id)
            for new in pending[doc_id]:
                record = new if record is None else _merge(record, new, replace, keep, kept)
            assert record is not None  # every document has at least one write
            yield doc_id, record

    def audited(chunk: list[str]) -> tuple[str, dict[str, Any]]:
        """The target and the details of the audit entry of the commit of `chunk`."""
        keys = [pending[i][0]["key"] for i in chunk]
        target = keys[0] if len(keys) == 1 else f"{len(keys)} annotations"
        after = {"keys": keys, "users": sorted({pending[i][0]["user"] for i in chunk})}
        return target, {"dataset": dataset, "after": after}

    def blind(chunk: list[str]) -> None:
        names = commits.document_name(*_v2_path(dataset)) + "/"
        writes = [commits.set_write(names + doc_id, record) for doc_id, record in records(chunk, {})]
        if moved is not None and moved not in chunk:
            writes.append(commits.delete_write(names + moved))
        target, kw = audited(chunk)
        writes.append(audit.entry_write(req, "annotations_write", "annotation", target, **kw))
        commits.commit(writes)

    def merged(chunk: list[str]) -> None:
        coll = _v2(dataset)

        def in_transaction(transaction) -> None:
            stored = {
                s.id: s.to_dict() for s in transaction.get_all([coll.document(i) for i in chunk]) if s.exists
            }
            for doc_id, record in records(chunk, stored):
                transaction.set(coll.document(doc_id), record)
            if moved is not None and moved not in chunk:
                transaction.delete(coll.document(moved))
            target, kw = audited(chunk)
            audit.record(transaction, req, "annotations_write", "annotation", target, **kw)

        store.transactional(in_transaction)

    write_chunk = merged if not replace or keep else blind
    outcomes = commits.concurrently([functools.partial(write_chunk, chunk) for chunk in chunks])
    failure = next((outcome for outcome in outcomes if outcome is not None), None)
    if failure is None:
        return
    details: dict[str, list[str]] = {"written": [], "not_written": []}
    for chunk, outcome in zip(chunks, outcomes, strict=True):
        details["written" if outcome is None else "not_written"] += [pending[i][0]["key"] for i in chunk]
    if isinstance(failure, exceptions.InvalidArgument):
        raise errors.ValidationFailed(
            "the data store cannot hold these annotations (a field name, size or nesting "
            "limit; an annotation is at most 1 MiB stored); what was written is listed",
            details=details,
        )
    raise errors.Unavailable(
        "the annotation store failed part-way; what was written is listed, "
        "and retrying the same request is safe",
        retry_after=1,
        details=details,
    )


@app.get(
    "/annotations/v2/<name>",
    check=authz.on_dataset(authz.READ),
    query=ListQuery,
    response=list[AnnotationPublic],
)
def list_v2(req, name, dataset):
    """Annotations of the dataset: the caller's, another user's, or a group's."""
    if req.query.user and req.query.groups is not None:
        raise errors.BadRequest("give user or groups, not both")
    users = _group_members(req) if req.query.groups is not None else [_whose(req, dataset, req.query.user)]
    queries, limit = _queries(dataset, users, req.query.kind, req.query.tag), req.query.limit
    if not queries:
        return []
    page = store.page_by_id(queries, limit=limit, cursor=req.query.cursor)
    # Each document was written here from a validated AnnotationCreate: no pydantic round trip.
    return paged(req, page, lambda s: trusted(AnnotationPublic, s.to_dict()), limit)


def _queries(
    dataset: authz.Dataset, users: list[str], kind: str | None = None, tag: str | None = None
) -> list[Any]:
    """The queries of the users' annotations (one per `in` of at most 30 users)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    queries = []
    for chunk in store.chunks(sorted(users), store.MAX_IN_VALUES):
        query = _v2(dataset).where(
            filter=FieldFilter("user", "==", chunk[0])
            if len(chunk) == 1
            else FieldFilter("user", "in", chunk)
        )
        if kind:
            query = query.where(filter=FieldFilter("kind", "==", kind))
        if tag:
            query = query.where(filter=FieldFilter("tags", "array_contains", tag))
        queries.append(query)
    return queries


def _group_members(req) -> list[str]:
    """The members of the `groups` in the query; a non-admin's own groups only."""
    groups = list(req.query.groups)
    if not groups:
        raise errors.BadRequest("groups is a comma list of group names")
    outside = sorted(set(groups) - set(req.caller.groups))
    if outside and not req.caller.is_admin:
        raise errors.Forbidden(f"you are not a member of {', '.join(outside)}")
    return sorted(authz.group_members(groups))


@app.delete(
    "/annotations/v2/<name>/<key>",
    check=authz.on_dataset(authz.WRITE_OWN),
    status=204,
    query=WhoseQuery,
)
def delete_v2(req, name, key, dataset):
    """Delete one annotation by key (404 when there is none)."""
    _delete(req, dataset, key, _whose(req, dataset, req.query.user))


def _delete(req, dataset: authz.Dataset, key: str, user: str) -> None:
    if not KEY.fullmatch(key):
        raise errors.NotFound(f"no annotation {key!r}")
    ref = _v2(dataset).document(user_doc_id(user, key))
    audit.delete_existing(
        req,
        ref,
        missing=f"no annotation {key!r} of {user}",
        action="annotation_delete",
        target_type="annotation",
        target_id=key,
        dataset=dataset,
        before=lambda snap: {"user": user, "kind": snap.get("kind"), "pos": snap.get("pos")},
    )


# -- clio's /v2/annotations/{ds}: v2's operations as clio's clients call them ------------------
# neuroglancer's clio layer, the clio website, malevnc and clio-py. Their bodies are read as
# clio's pydantic v1 models read them (unknown fields such as neuroglancer's `verified` dropped,
# float positions truncated); `conditional` names any field and applies with replace=false only,
# keeping a stored value that is truthy; a listing is the whole array in one answer.

ClioCoordinate = Annotated[Truncated, Field(ge=COORDINATE_RANGE[0], lt=COORDINATE_RANGE[1])]


class ClioAnnotationCreate(AnnotationCreate):
    """An annotation as clio's clients send it."""

    model_config = ConfigDict(extra="ignore", strict=False)

    pos: list[ClioCoordinate] = Field(
        description="3 numbers for a point, 6 for a line segment or a sphere; floats are truncated"
    )


ClioAnnotationsCreate = Annotated[
    Annotated[ClioAnnotationCreate, Tag("one")]
    | Annotated[list[ClioAnnotationCreate], Field(min_length=1), Tag("list")],
    Discriminator(_one_or_list),
]


class ClioAnnotationPublic(AnnotationPublic):
    """A v2 annotation as clio answers it: unset fields left out (neuroglancer refuses a `prop`
    of null), `timestamp` in epoch seconds."""

    timestamp: float | None = None  # type: ignore[assignment]  # clio: epoch seconds


FieldNames = Annotated[tuple[str, ...], BeforeValidator(_comma_list, json_schema_input_type=str)]


class ClioWriteQuery(WriteQuery):
    """WriteQuery as clio read it: `conditional` names any field (kept when truthy)."""

    conditional: FieldNames = Field(  # type: ignore[assignment]
        "",
        validate_default=True,
        description="with replace=false: comma list of fields whose stored value, when truthy, is kept",
    )


class ClioListQuery(Query):
    user: Email | None = Field(None, description=_WHOSE)
    groups: Groups | None = Field(
        None,
        description="comma list of groups: their members' annotations too (a non-admin: only their own groups)",
    )


class ClioDeleteQuery(Query):
    user_email: Email | None = Field(None, description=_WHOSE)


@app.get(
    "/v2/annotations/<name>",
    check=authz.on_dataset(authz.READ),
    query=ClioListQuery,
    response=list[ClioAnnotationPublic],
)
def clio_list(req, name, dataset):
    """The annotations of `user` (the caller by default) and of the members of `groups`, as one
    array."""
    users = {_whose(req, dataset, req.query.user)}
    if req.query.groups is not None:
        users.update(_group_members(req))
    page = store.page_by_id(_queries(dataset, sorted(users)), limit=None, cursor=None)
    return paged(req, page, lambda s: trusted(ClioAnnotationPublic, clio_item(s.to_dict())), None)


def clio_item(record: dict[str, Any]) -> dict[str, Any]:
    """A stored annotation as clio answers it: fields set to null left out, epoch timestamp."""
    return {k: clio.epoch(v) if k == "timestamp" else v for k, v in record.items() if v is not None}


@app.post(
    "/v2/annotations/<name>",
    check=authz.on_dataset(authz.WRITE_OWN),
    body=ClioAnnotationsCreate,
    max_items=MAX_PER_REQUEST,
    max_body=BULK_BODY_LIMIT,
    query=ClioWriteQuery,
    response=AnnotationWrittenPublic | AnnotationsWrittenPublic,
)
def clio_write(req, name, dataset):
    """Write one annotation or a list, read as clio read them: `{"key"}` or `{"keys"}`."""
    keep = () if req.query.replace else req.query.conditional
    return _write(req, dataset, req.query.replace, keep, kept=bool)


@app.delete(
    "/v2/annotations/<name>/<key>",
    check=authz.on_dataset(authz.WRITE_OWN),
    query=ClioDeleteQuery,
    response=clio.NULL,
)
def clio_delete(req, name, key, dataset):
    """Delete one annotation by key: 200 null, also when there is none."""
    with clio.absent_ok():  # clio answered a delete of nothing as a success
        _delete(req, dataset, key, _whose(req, dataset, req.query.user_email))


def handle(request):
    return app(request)
