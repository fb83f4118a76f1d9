"""Reads at the wire: queries (`RunQuery`) and batched gets (`BatchGetDocuments`) whose answers
are decoded straight from the plain protobuf messages into Python values.

The Firestore client spends most of a large read decoding it: `DocumentSnapshot.to_dict()`
deep-copies every document, and each field goes through proto-plus wrappers. Here the same
requests go out through the same generated client (the `FirestoreClient` common.storage.clients
builds: its channel with the Deadlines interceptor, its default retries, its routing headers)
with the client's metadata; each response is unwrapped once (`Message.pb`) and its `Value`s
decoded by `value`, which gives what `to_dict()` gives (tests/integration/test_wire.py).

A few of the client's private attributes are needed, as it offers no public form of them (they
are what `Query.stream` and `Client.get_all` use): `Client._firestore_api` (the generated
client), `_rpc_metadata` and `_database_string`, a collection's `_query()`, and a query's
`_to_protobuf()` and `_parent._parent_info()`. google-cloud-firestore is pinned in
requirements.txt for them; tests/integration/test_wire.py checks each.

Reads inside a transaction stay with the client (they carry the transaction's id).
Imported only where a read is made (it loads grpc and the Firestore client).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from google.api_core import exceptions
from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud.firestore_v1 import _helpers, field_path
from google.cloud.firestore_v1.collection import CollectionReference
from google.cloud.firestore_v1.document import DocumentSnapshot
from google.cloud.firestore_v1.types import firestore as requests
from proto.datetime_helpers import DatetimeWithNanoseconds as ProtoDatetime

_DOCUMENTS = "/documents/"

# What the generated client retries for RunQuery (its transports/base.py); its retry covers the
# call's start, and a stream broken later by one of these is resumed here. (Query.stream looks
# for that retry on the transport's stub, where it is not: its own resume fails.)
RESUMABLE = (exceptions.DeadlineExceeded, exceptions.InternalServerError, exceptions.ServiceUnavailable)
RESUMES = 3


class Doc:
    """One document as a read found it: the part of `DocumentSnapshot` the code uses (`id`,
    `exists`, `to_dict()`, `get(field)`, `reference`, the times), without its copies.
    `to_dict()` hands over the decoded fields themselves: each read decodes its own."""

    __slots__ = ("_client", "name", "id", "exists", "_data", "create_time", "update_time", "read_time")

    def __init__(
        self,
        client: Any,
        name: str,
        data: dict[str, Any] | None,
        create_time=None,
        update_time=None,
        read_time=None,
    ):
        self._client = client
        self.name = name  # projects/{p}/databases/{d}/documents/{path}
        self.id = name.rpartition("/")[2]
        self.exists = data is not None
        self._data = data
        self.create_time, self.update_time, self.read_time = create_time, update_time, read_time

    def to_dict(self) -> dict[str, Any] | None:
        return self._data

    def get(self, path: str) -> Any:
        """The value at a field path (`a.b`); KeyError when it is not there, as the client's."""
        if self._data is None:
            return None
        return field_path.get_nested_value(path, self._data)

    @property
    def path(self) -> str:
        """The document's path in the database (`collection/id/...`)."""
        return self.name.partition(_DOCUMENTS)[2]

    @property
    def reference(self):
        return self._client.document(self.path)

    def snapshot(self) -> DocumentSnapshot:
        """The client's snapshot of this document (for a query's `start_after`)."""
        return DocumentSnapshot(
            self.reference, self._data, self.exists, self.read_time, self.create_time, self.update_time
        )


def value(pb: Any, client: Any) -> Any:
    """A `Value` protobuf as the Python value `to_dict()` gives for it (`client` makes references)."""
    kind = pb.WhichOneof("value_type")
    if kind == "string_value":
        return pb.string_value
    if kind == "integer_value":
        return pb.integer_value
    if kind == "map_value":
        return fields(pb.map_value.fields, client)
    if kind == "array_value":
        return [value(v, client) for v in pb.array_value.values]
    if kind == "timestamp_value":
        return DatetimeWithNanoseconds.from_timestamp_pb(pb.timestamp_value)
    if kind == "double_value":
        return pb.double_value
    if kind == "boolean_value":
        return pb.boolean_value
    if kind == "null_value":
        return None
    if kind == "bytes_value":
        return pb.bytes_value
    if kind == "reference_value":
        return _helpers.reference_value_to_document(pb.reference_value, client)
    if kind == "geo_point_value":
        return _helpers.GeoPoint(pb.geo_point_value.latitude, pb.geo_point_value.longitude)
    raise ValueError(f"unknown Firestore value type {kind!r}")


def fields(pb_fields: Any, client: Any) -> Any:
    """A protobuf map of `Value`s (a document's fields, a map value) as a dict (or, for the
    reserved maps of a vector or a BSON value, what the client makes of them)."""
    res = {key: value(v, client) for key, v in pb_fields.items()}
    if "__type__" in res or (len(res) == 1 and next(iter(res)).startswith("__")):
        # A vector or a BSON value: maps with reserved field names, decoded as the client does.
        return _helpers.decode_dict(pb_fields, client)
    return res


def _time(pb: Any) -> Any:
    """A document's create, update or read time as the client's snapshot has it: proto-plus's
    own DatetimeWithNanoseconds, which a precondition (`write_option(last_update_time=...)`)
    sends back to the nanosecond."""
    return ProtoDatetime.from_timestamp_pb(pb)


def _doc(client: Any, document: Any, read_time: Any) -> Doc:
    return Doc(
        client,
        document.name,
        fields(document.fields, client),
        _time(document.create_time),
        _time(document.update_time),
        _time(read_time),
    )


def stream(client: Any, query: Any) -> Iterator[Doc]:
    """The documents of `query` (a firestore Query or CollectionReference), as `query.stream()`
    yields them. A stream the server breaks with an error the generated client retries for
    RunQuery goes on after the last document seen, up to RESUMES times."""
    if isinstance(query, CollectionReference):  # a whole collection: its query
        query = query._query()
    last: Doc | None = None
    seen = resumes = 0
    responses = _run(client, query)
    while True:
        try:
            response = next(responses, None)
        except RESUMABLE:
            if resumes >= RESUMES:
                raise
            resumes += 1
            responses = _run(client, _rest(query, last, seen))
            continue
        if response is None:
            return
        pb = requests.RunQueryResponse.pb(response)
        if pb.HasField("document"):  # else a progress message
            last = _doc(client, pb.document, pb.read_time)
            seen += 1
            yield last


def _rest(query: Any, last: Doc | None, seen: int) -> Any:
    """What is left of `query` after `seen` documents, the last of them `last`: after it, with
    the offset already spent and the limit less what was seen."""
    if last is None:
        return query
    rest = query.start_after(last.snapshot()).offset(0)
    if query._limit is not None:
        rest = rest.limit(max(query._limit - seen, 0))
    return rest


def get_all(client: Any, references: Iterable[Any]) -> Iterator[Doc]:
    """The documents at `references` in the order the server answers (as `Client.get_all`);
    a missing one is a Doc whose `exists` is False."""
    prefix = client._database_string + _DOCUMENTS
    paths = list(dict.fromkeys(prefix + ref.path for ref in references))
    if not paths:
        return
    request = requests.BatchGetDocumentsRequest(database=client._database_string, documents=paths)
    for response in client._firestore_api.batch_get_documents(request=request, metadata=client._rpc_metadata):
        pb = requests.BatchGetDocumentsResponse.pb(response)
        if pb.WhichOneof("result") == "found":
            yield _doc(client, pb.found, pb.read_time)
        else:
            yield Doc(client, pb.missing, None, read_time=_time(pb.read_time))


def _run(client: Any, query: Any) -> Iterator[Any]:
    parent, _ = query._parent._parent_info()
    request = requests.RunQueryRequest(parent=parent, structured_query=query._to_protobuf())
    return iter(client._firestore_api.run_query(request=request, metadata=client._rpc_metadata))
