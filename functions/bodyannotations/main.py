"""bodyannotations: clio's body (neuron) annotations at clio's paths
(`/v2/json-annotations/<dataset>/neurons/...`), proxied to the dataset's DVID `neuronjson`
instance (`segmentation_annotations`) as clio-store did, for malevnc, clio-py, the clio website
and coda.

Bytes in, bytes out: DVID's records and the clients' are never parsed and written again (body ids
exceed 2^53, and some clients write them as text); `/all` is streamed through as DVID sends it.
Reads need `read` on the dataset; writes and deletions need `write_others` (clio's `clio_write`),
whoever the record is written for (`designated_user`). The version map (`versions`, `head_tag`,
...) is the dataset's metadata `neurons` (functions.bodyannotations.dvid).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from werkzeug.wrappers import Response

from common import audit, errors, jsonio
from common.identity import auth, authz
from common.models import Query
from common.web import clio
from common.web.http import App, read_json_body, streamed
from functions.bodyannotations import dvid, rawjson

app = App(
    "bodyannotations",
    "clio's body annotations, kept by the dataset's DVID server (neuronjson).",
    authenticate=auth.authenticate,
)

NEURONS = "/v2/json-annotations/<name>/neurons"
READ = authz.on_dataset(authz.READ)
WRITE = authz.on_dataset(authz.WRITE_OTHERS)
MAX_WRITE_BYTES = 8 << 20  # a POSTed list (malevnc sends 50 records, clio-py its chunks)
MAX_IDS = 1000  # body ids in one id-number path
MAX_BODY_ID = (1 << 64) - 1  # DVID's body ids are uint64

Show = Literal["user", "time", "all"]
SHOW = Field(None, description="`user`, `time` or `all`: also the `<field>_user` / `<field>_time` fields")
VERSION = Field(
    None, description="a tag of the dataset's versions (or a node uuid it lists); default its `uuid`"
)
FIELDS = Field(None, description="only these fields (comma-separated), as DVID's `fields`")


class VersionQuery(Query):
    version: str | None = VERSION


class AllQuery(Query):
    version: str | None = VERSION
    show: Show | None = SHOW
    fields: str | None = FIELDS


class ReadQuery(AllQuery):
    pass


class SearchQuery(AllQuery):
    onlyid: bool = Field(False, description="true: only the matching body ids")


class WriteQuery(Query):
    version: str | None = VERSION
    replace: bool = Field(False, description="true: each record replaces the stored one (fields it lacks go)")
    conditional: str | None = Field(
        None, description="fields (comma-separated) kept where the stored record already has them"
    )
    designated_user: str | None = Field(
        None, description="who the change is written for (DVID's `<field>_user`); default the caller"
    )


def _ids(ids: str) -> list[str]:
    """The body ids of an `id-number` path (`1,2,3`), as decimal text (never a float)."""
    found = [i.strip() for i in ids.split(",") if i.strip()]
    if not found or len(found) > MAX_IDS:
        raise errors.BadRequest(f"give 1 to {MAX_IDS} body ids, separated by commas")
    for i in found:
        if not i.isdigit() or not i.isascii() or int(i) > MAX_BODY_ID:
            raise errors.BadRequest(f"{i[:40]!r} is not a body id (an unsigned 64-bit integer)")
    return [str(int(i)) for i in found]


def _as_sent(data: bytes) -> Response:
    """JSON bytes answered as they are."""
    return Response(data, mimetype="application/json")


# -- reads: DVID's answer as it is ---------------------------------------------------------------


@app.get(f"{NEURONS}/fields", check=READ, query=VersionQuery, response=list[str])
def fields(req, name, dataset):
    """The field names of the dataset's body annotations (DVID's `fields`)."""
    node = dvid.Node.of(dataset, req.query.version)
    return _as_sent(dvid.read(node.call("GET", ("fields",))))


@app.get(f"{NEURONS}/all", check=READ, query=AllQuery, response=list[dict[str, Any]])
def all_annotations(req, name, dataset):
    """Every body annotation, streamed from DVID as it sends them (gzip-encoded when the client
    accepts it). Behind the API gateway a streamed answer has no size ceiling."""
    node = dvid.Node.of(dataset, req.query.version)
    accepts_gzip = "gzip" in req.raw.headers.get("Accept-Encoding", "")
    answer = node.call(
        "GET",
        ("all",),
        {"show": req.query.show, "fields": req.query.fields},
        headers={"Accept-Encoding": "gzip"} if accepts_gzip else None,
    )
    encoding = answer.headers.get("Content-Encoding")
    return streamed(dvid.stream(answer), headers={"Content-Encoding": encoding} if encoding else None)


@app.get(f"{NEURONS}/id-number/<ids>", check=READ, query=ReadQuery, response=list[dict[str, Any]])
def by_ids(req, name, dataset, ids):
    """The annotations of these body ids (comma-separated), those that have one, in the order
    asked (DVID's `keyvalues`, answered as a list as clio did)."""
    node = dvid.Node.of(dataset, req.query.version)
    wanted = rawjson.array(i.encode() for i in _ids(ids))
    answer = node.call(
        "GET",
        ("keyvalues",),
        {"json": "true", "show": req.query.show, "fields": req.query.fields},
        body=wanted,
    )
    try:
        return _as_sent(rawjson.array(rawjson.values(dvid.read(answer))))
    except rawjson.Malformed as exc:
        raise errors.BadGateway(f"DVID's answer is not a JSON object: {exc}") from None


@app.post(f"{NEURONS}/query", check=READ, query=SearchQuery, response=list[Any])
def search(req, name, dataset):
    """The annotations matching a query: `{"field": value or [values], ...}` (all must match),
    or a list of such objects (any may match), sent to DVID as it was written."""
    body = read_json_body(req.raw, MAX_WRITE_BYTES)
    query = jsonio.loads(body)
    if not (isinstance(query, dict) or (isinstance(query, list) and all(isinstance(q, dict) for q in query))):
        raise errors.BadRequest("a query is a JSON object, or a list of them")
    node = dvid.Node.of(dataset, req.query.version)
    params = {
        "show": req.query.show,
        "fields": req.query.fields,
        "onlyid": "true" if req.query.onlyid else None,
    }
    return _as_sent(dvid.read(node.call("POST", ("query",), params, body=body.strip())))


# -- writes: each record as the client wrote it --------------------------------------------------


def _records(body: bytes) -> list[tuple[str, bytes]]:
    """(body id, the record's own bytes) of one record or a list of them, each checked before
    any is written."""
    parsed = jsonio.loads(body)
    if isinstance(parsed, dict):
        items, raw = [parsed], [body.strip()]
    elif isinstance(parsed, list):
        items, raw = parsed, list(rawjson.values(body))
    else:
        raise errors.BadRequest("send one annotation (a JSON object with `bodyid`) or a list of them")
    found = []
    for item, data in zip(items, raw, strict=True):
        bodyid = item.get("bodyid") if isinstance(item, dict) else None
        if type(bodyid) is not int or not 0 < bodyid <= MAX_BODY_ID:
            raise errors.BadRequest("each annotation is a JSON object with a `bodyid` (a body id)")
        found.append((str(bodyid), data))
    return found


@app.post(NEURONS, check=WRITE, query=WriteQuery, answers=(413,), response=clio.NULL)
def write(req, name, dataset) -> None:
    """Write one annotation or a list (each to DVID as it was sent: fields given are set, the
    others kept unless `replace=true`); answers null."""
    records = _records(read_json_body(req.raw, MAX_WRITE_BYTES))
    node = dvid.Node.of(dataset, req.query.version)
    query = {
        "conditional": req.query.conditional,
        "replace": "true" if req.query.replace else None,
        "u": req.query.designated_user or req.caller.email,
    }
    for bodyid, data in records:
        dvid.read(node.call("POST", ("key", bodyid), query, body=data))
    ids = ",".join(bodyid for bodyid, _ in records)
    audit.write(req, "body_annotations_write", "body_annotation", ids[:1000], dataset=dataset)


@app.delete(f"{NEURONS}/id-number/<ids>", check=WRITE, query=VersionQuery, response=clio.NULL)
def delete(req, name, dataset, ids) -> None:
    """Delete the annotations of these body ids (comma-separated); answers null."""
    node = dvid.Node.of(dataset, req.query.version)
    wanted = _ids(ids)
    for bodyid in wanted:
        dvid.read(node.call("DELETE", ("key", bodyid), {"u": req.caller.email}))
    audit.write(req, "body_annotation_delete", "body_annotation", ",".join(wanted)[:1000], dataset=dataset)


# -- the version map: the dataset's metadata `neurons` -------------------------------------------


def _mapped(dataset, key: str) -> Any:
    found = dvid.version_map(dataset).get(key)
    if not found:
        raise errors.NotFound(f"dataset {dataset.name!r} has no {key} for its body annotations")
    return found


@app.get(f"{NEURONS}/versions", check=READ, answers=(404,), response=dict[str, str])
def versions(req, name, dataset):
    """The versions of the body annotations: `{tag: uuid}`."""
    return _mapped(dataset, "tag_to_uuid")


@app.get(f"{NEURONS}/head_tag", check=READ, answers=(404,), response=str)
def head_tag(req, name, dataset):
    """The tag of the newest version."""
    return _mapped(dataset, "head_tag")


@app.get(f"{NEURONS}/head_uuid", check=READ, answers=(404,), response=str)
def head_uuid(req, name, dataset):
    """The DVID node of the newest version."""
    return _mapped(dataset, "head_uuid")


@app.get(f"{NEURONS}/tag_to_uuid/<tag>", check=READ, answers=(404,), response=str)
def tag_to_uuid(req, name, dataset, tag):
    """The DVID node of a version tag."""
    tags = _mapped(dataset, "tag_to_uuid")
    if tag not in tags:
        raise errors.NotFound(f"dataset {name!r} has no version {tag!r}")
    return tags[tag]


@app.get(f"{NEURONS}/uuid_to_tag/<uuid>", check=READ, answers=(400, 404), response=str)
def uuid_to_tag(req, name, dataset, uuid):
    """The version tag of a DVID node, named by its uuid or a prefix of it (or it, of a longer one:
    DVID names a node by any unique prefix)."""
    nodes = _mapped(dataset, "uuid_to_tag")
    hits = {tag for node, tag in nodes.items() if node.startswith(uuid) or uuid.startswith(node)}
    if len(hits) > 1:
        raise errors.BadRequest(f"uuid {uuid!r} names more than one version of dataset {name!r}")
    if not hits:
        raise errors.NotFound(f"dataset {name!r} has no version at uuid {uuid!r}")
    return hits.pop()


def handle(request):
    return app(request)
