"""Writes at the wire: Firestore `Write`s built as plain protobufs and committed on the client's
own channel.

The client's `batch.set` builds every value as a proto-plus object (about 0.1 ms a document),
which is most of the time of a bulk write; here a document's fields are set in place on the
plain protobuf (`types.Write.pb()`), in the same encoding (`test_commits` compares what each
stores for every kind of value). A commit goes through the client's generated API with the
client's metadata, so it keeps the deadlines of common.storage.clients and the API's default
retries, as `batch.commit()` does. The client exposes neither the API nor its metadata publicly:
`_firestore_api`, `_rpc_metadata` and `_database_string` are read here alone
(google-cloud-firestore is pinned in requirements.txt; test_commits checks them).

Imported at start-up by every function that writes an audit entry: the Firestore types load
at first use.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import datetime
import functools
import random
import string
import threading
from collections.abc import Callable, Sequence
from typing import Any

from common.storage import store

# Commits in flight at once for one request: a commit is I/O bound, so four overlap well on
# one instance (measured: bulk insert of 10k, 3-5x the time of sequential commits saved).
CONCURRENT_COMMITS = 4

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def _put(target: Any, value: Any) -> None:
    """Set the `Value` protobuf `target` to `value`, as the client's `encode_value` would."""
    kind = type(value)
    if kind is str:
        target.string_value = value
    elif kind is int:
        target.integer_value = value
    elif value is None:
        target.null_value = 0
    elif kind is bool:
        target.boolean_value = value
    elif kind is float:
        target.double_value = value
    elif isinstance(value, dict):
        fields = target.map_value.fields
        target.map_value.SetInParent()  # an empty map is still a map
        for key, item in value.items():
            _put(fields[_field_name(key)], item)
    elif isinstance(value, list | tuple | set | frozenset):
        values = target.array_value.values
        target.array_value.SetInParent()
        for item in value:
            _put(values.add(), item)
    elif isinstance(value, datetime.datetime):
        _put_time(target.timestamp_value, value)
    elif isinstance(value, bool):
        target.boolean_value = value
    elif isinstance(value, int):
        target.integer_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    else:
        _put_other(target, value)


def _field_name(key: str) -> str:
    if not key:  # as the client refuses it
        raise ValueError("a field name cannot be empty")
    return key


def _put_time(timestamp: Any, value: datetime.datetime) -> None:
    """A time stamp: a naive datetime is UTC, as for the client; nanoseconds where given
    (the client's DatetimeWithNanoseconds)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    seconds, micros = divmod((value - _EPOCH) // _MICROSECOND, 1_000_000)
    timestamp.seconds = seconds
    timestamp.nanos = getattr(value, "nanosecond", 0) or micros * 1000


def _put_other(target: Any, value: Any) -> None:
    from google.cloud.firestore_v1 import GeoPoint  # lazy: loads the Firestore client, at first use

    reference = getattr(value, "_document_path", None)  # a DocumentReference, as the client knows one
    if reference is not None:
        target.reference_value = reference
    elif isinstance(value, GeoPoint):
        target.geo_point_value.latitude = value.latitude
        target.geo_point_value.longitude = value.longitude
    else:
        raise TypeError(f"Firestore cannot store a {type(value).__name__}: {value!r}")


@functools.cache
def _types() -> tuple[Any, Any, Any, Any]:
    """The plain protobuf classes of Write and CommitRequest, and the client's proto-plus
    CommitRequest and CommitResponse (the generated API takes and gives those)."""
    from google.cloud.firestore_v1.types import (  # lazy: loads the Firestore client, at first use
        CommitRequest,
        CommitResponse,
        Write,
    )

    return Write.pb(), CommitRequest.pb(), CommitRequest, CommitResponse


def document_name(*path: str) -> str:
    """The full resource name of the document at `path` (collection, id, collection, id...), or
    the prefix of the names of a collection's documents (`name + "/" + id`); the ids are
    trusted (this code's own, or checked with store.valid_id)."""
    return f"{store.db()._database_string}/documents/{'/'.join(path)}"


_ID_ALPHABET = string.ascii_letters + string.digits


def auto_id() -> str:
    """A new document id, as the client's `collection.document()` makes one (20 letters and
    digits), without building a DocumentReference."""
    return "".join(random.choices(_ID_ALPHABET, k=20))


def set_write(name: str, data: dict[str, Any], *, create: bool = False) -> Any:
    """`batch.set(ref, data)` of the document `name` (`document_name`) as a plain `Write`
    protobuf; `create`: only if there is none (`batch.create`)."""
    write = _types()[0]()
    document = write.update
    document.name = name
    fields = document.fields
    for key, value in data.items():
        _put(fields[_field_name(key)], value)
    if create:
        write.current_document.exists = False
    return write


def delete_write(name: str) -> Any:
    """`batch.delete(ref)` of the document `name` as a plain `Write` protobuf."""
    return _types()[0](delete=name)


def commit(writes: Sequence[Any]) -> Any:
    """Commit plain `Write`s atomically (at most 500, Firestore's limit); the plain
    `CommitResponse`. Raises the client's errors (google.api_core.exceptions) as `batch.commit()`."""
    if len(writes) > store.MAX_WRITES_PER_COMMIT:
        raise ValueError(f"a commit holds at most {store.MAX_WRITES_PER_COMMIT} writes, not {len(writes)}")
    _, request_pb, request_type, response_type = _types()
    client = store.db()
    request = request_pb(database=client._database_string, writes=writes)
    response = client._firestore_api.commit(request=request_type.wrap(request), metadata=client._rpc_metadata)
    return response_type.pb(response)


def concurrently(jobs: Sequence[Callable[[], Any]]) -> list[Exception | None]:
    """Run `jobs` (each one commit, whole or not at all), up to CONCURRENT_COMMITS at a time, in
    order, each in the caller's context (its backend budget). Each job's outcome: None when it
    committed, else the store's error (a google.api_core GoogleAPIError) that failed it or, for
    a job not started because another had failed by then, that error. Any other exception is
    raised once the jobs in flight are done."""
    from google.api_core.exceptions import GoogleAPIError  # lazy: loads google.api_core, at first use

    failed: list[Exception] = []
    lock = threading.Lock()

    def run(job: Callable[[], Any]) -> Exception | None:
        if failed:
            return failed[0]
        try:
            job()
            return None
        except GoogleAPIError as exc:
            with lock:
                failed.append(exc)
            return exc
        except BaseException:
            with lock:
                failed.append(RuntimeError("another commit of the request failed"))
            raise

    if len(jobs) == 1:  # one commit: no thread to start
        return [run(jobs[0])]
    with concurrent.futures.ThreadPoolExecutor(min(CONCURRENT_COMMITS, len(jobs))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, run, job) for job in jobs]
        return [future.result() for future in futures]
