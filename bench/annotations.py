"""Annotations v2 against their floors, each figure interleaved with its anchor in one run
(bench/figures.py), on one emulator:

1. insert 10,000 annotations: one POST to the function vs naive sequential 500-write batches of
   the raw client (`batch.set`, `commit`) of the same documents; n=INSERT_PAIRS (a pair takes
   seconds);
2. warm GET 1,000 annotations over HTTP vs the wire floor: the same RunQuery as a plain
   protobuf request on the Firestore client's own channel, its `Value`s decoded by a minimal
   decoder, in this process (no HTTP, no JSON); each sample the mean of GET_BURST calls, n=15;
3. POST one annotation over HTTP vs the raw commit floor: its annotation and its audit entry as
   two plain `Write`s in one `Commit` on the same channel; each sample the mean of POST_BURST
   calls, n=15;
4. list 100,000 annotations of one dataset: the function's streamed GET vs the raw client's
   `stream()` of the same query, n=LIST_PAIRS (a pair takes tens of seconds), with the function
   process's peak memory (VmHWM): fresh, after listing 10,000, after one listing of 100,000
   and after all of them (under 150 MB, and flat). The function runs with MALLOC_ARENA_MAX=2,
   as deployed: glibc's per-thread arenas otherwise raise the peak each time a new gunicorn
   thread serves a request.
"""

from __future__ import annotations

import datetime
import http.client
import itertools
import json
import os
import time
import uuid

from bench import figures
from bench.run import ROOT, _first_200, _spawn
from tools.emulators import free_port

USER = "owner@example.com"
INSERT_COUNT = 10_000
INSERT_PAIRS = 7
GET_COUNT = 1_000
GET_BURST = 3
POST_BURST = 10
LIST_COUNT = 100_000
LIST_PAIRS = 3
SOURCE = os.path.join(ROOT, "functions", "annotations", "main.py")


def _coll(dataset: str):
    from common.storage import store

    return store.collection("annotations").document(dataset).collection("v2_annotations")


def _annotations(count: int, z: int = 0) -> list[dict]:
    return [{"kind": "point", "pos": [i % 1000, i // 1000, z], "tags": ["bench"]} for i in range(count)]


def _records(count: int, z: int = 0) -> list[tuple[str, dict]]:
    """The documents the function would write for `_annotations(count, z)`."""
    from common.catalog.locations import user_doc_id

    now = datetime.datetime.now(datetime.UTC)
    out = []
    for a in _annotations(count, z):
        key = "Pt" + "_".join(map(str, a["pos"]))
        out.append(
            (
                user_doc_id(USER, key),
                {
                    "key": key,
                    "user": USER,
                    "kind": "point",
                    "pos": a["pos"],
                    "tags": a["tags"],
                    "timestamp": now,
                },
            )
        )
    return out


def raw_insert(dataset: str, records: list[tuple[str, dict]]) -> float:
    from common.storage import store

    coll = _coll(dataset)
    started = time.perf_counter()
    for chunk in store.chunks(records, store.MAX_WRITES_PER_COMMIT):
        batch = store.db().batch()
        for doc_id, record in chunk:
            batch.set(coll.document(doc_id), record)
        batch.commit()
    return time.perf_counter() - started


def raw_list(dataset: str) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for snap in _user_query(dataset).stream() if snap.to_dict())
    return time.perf_counter() - started, count


def function_list(port: int, dataset: str, headers: dict[str, str]) -> tuple[float, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", f"/v2/{dataset}", headers=headers)
    response = conn.getresponse()
    chunks = []
    while chunk := response.read(1 << 16):
        chunks.append(chunk)
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"GET: {response.status}")
    return elapsed, len(json.loads(b"".join(chunks)))


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def peak_rss_mb(pid: int) -> float:
    """The largest VmHWM of the functions-framework process and its gunicorn worker(s)."""
    peaks = []
    for p in [pid, *_children(pid)]:
        with open(f"/proc/{p}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
    return max(peaks)


class Function:
    """A function (annotations by default) in its own functions-framework process."""

    def __init__(self, env: dict[str, str], headers: dict[str, str], source: str = SOURCE):
        self.port = free_port()
        self.process = _spawn(source, self.port, {**env, "MALLOC_ARENA_MAX": "2"})
        _first_200(self.port, "/_health", {}, time.perf_counter())
        self.headers = headers

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _dataset(name: str) -> str:
    from common.storage import store

    store.collection("datasets").document(name).set({"description": "bench", "public": False})
    return name


def function_call(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> float:
    """Seconds from the request to the last byte of a 200 answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
    return elapsed


def decode(value) -> object:
    """A Firestore `Value` (plain protobuf) as the Python value `to_dict()` gives."""
    kind = value.WhichOneof("value_type")
    if kind == "map_value":
        return {k: decode(v) for k, v in value.map_value.fields.items()}
    if kind == "array_value":
        return [decode(v) for v in value.array_value.values]
    if kind == "timestamp_value":
        return value.timestamp_value.ToDatetime(datetime.UTC)
    if kind == "null_value":
        return None
    return getattr(value, kind)


def encode(value: object):
    """A Python value as a Firestore `Value` (plain protobuf), for the kinds a record holds."""
    from google.cloud.firestore_v1.types import document

    Value = document.Value.pb()
    if value is None:
        return Value(null_value=0)
    if isinstance(value, bool):
        return Value(boolean_value=value)
    if isinstance(value, int):
        return Value(integer_value=value)
    if isinstance(value, float):
        return Value(double_value=value)
    if isinstance(value, str):
        return Value(string_value=value)
    if isinstance(value, datetime.datetime):
        stamp = Value(timestamp_value={})
        stamp.timestamp_value.FromDatetime(value)
        return stamp
    if isinstance(value, list):
        return Value(array_value={"values": [encode(v) for v in value]})
    if isinstance(value, dict):
        return Value(map_value={"fields": {k: encode(v) for k, v in value.items()}})
    raise TypeError(f"no Value for {type(value).__name__}")


class Wire:
    """The floors: RunQuery and Commit as plain protobuf messages on the Firestore client's own
    channel (the one the function's calls take, with its deadlines), nothing of proto-plus."""

    def __init__(self):
        from google.cloud.firestore_v1.types import firestore as fs

        from common.storage import store

        self.db = store.db()
        self.fs = fs
        channel = self.db._transport.grpc_channel
        # the client's own: the resource prefix and, on the emulator, the owner's bearer (without
        # it the emulator evaluates security rules on every call)
        self.metadata = self.db._rpc_metadata
        self.run_query = channel.unary_stream(
            "/google.firestore.v1.Firestore/RunQuery",
            request_serializer=fs.RunQueryRequest.pb().SerializeToString,
            response_deserializer=fs.RunQueryResponse.pb().FromString,
        )
        self.commit_call = channel.unary_unary(
            "/google.firestore.v1.Firestore/Commit",
            request_serializer=fs.CommitRequest.pb().SerializeToString,
            response_deserializer=fs.CommitResponse.pb().FromString,
        )

    def query(self, query):
        """The plain RunQueryRequest of a library query (built once, sent many times)."""
        parent = query._parent._parent_info()[0]
        return self.fs.RunQueryRequest.pb(
            self.fs.RunQueryRequest(parent=parent, structured_query=query._to_protobuf())
        )

    def read(self, request) -> list[dict]:
        return [
            {k: decode(v) for k, v in response.document.fields.items()}
            for response in self.run_query(request, metadata=self.metadata, timeout=60)
            if response.HasField("document")
        ]

    def commit(self, documents: list[tuple[str, dict]]) -> None:
        """One Commit of full-document writes (`batch.set`'s), path -> record."""
        from google.cloud.firestore_v1.types import write

        base = self.db._database_string + "/documents/"
        writes = [
            write.Write.pb()(
                update={"name": base + path, "fields": {k: encode(v) for k, v in record.items()}}
            )
            for path, record in documents
        ]
        request = self.fs.CommitRequest.pb()(database=self.db._database_string, writes=writes)
        self.commit_call(request, metadata=self.metadata, timeout=60)


def _user_query(dataset: str):
    from google.cloud.firestore_v1.base_query import FieldFilter

    return _coll(dataset).where(filter=FieldFilter("user", "==", USER)).order_by("__name__")


def _post_floor(wire: Wire, dataset: str) -> float:
    """The annotation and the audit entry the function writes for one POST, in one plain commit."""
    from common.catalog.locations import user_doc_id

    started = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC)
    key = "Pt1_2_3"
    annotation = {
        "key": key,
        "user": USER,
        "kind": "point",
        "pos": [1, 2, 3],
        "timestamp": now,
        "tags": ["bench"],
    }
    audit = {
        "at": now,
        "actor": USER,
        "action": "annotations_write",
        "target_type": "annotation",
        "target_id": key,
        "request_id": uuid.uuid4().hex,
        "expire_at": now + datetime.timedelta(days=400),
        "dataset": dataset,
        "after": {"keys": [key], "users": [USER]},
    }
    wire.commit(
        [
            (f"annotations/{dataset}/v2_annotations/{user_doc_id(USER, key)}", annotation),
            (f"audit/{uuid.uuid4().hex[:20]}", audit),
        ]
    )
    return time.perf_counter() - started


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    return calls(env, headers) | listing(env, headers)


def calls(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    """Figures 1-3: insert 10k, warm GET 1,000, POST one."""
    results: dict[str, float] = {}
    fresh = (f"bulk{n}" for n in itertools.count())
    wire = Wire()

    fn = Function(env, headers)
    try:
        # 1. insert 10,000, fresh collections each time
        body = json.dumps(_annotations(INSERT_COUNT)).encode()
        posting = {**headers, "Content-Type": "application/json"}
        results |= figures.figure(
            "insert_10k",
            figures.interleave(
                lambda: raw_insert(next(fresh), _records(INSERT_COUNT)),
                lambda: function_call(
                    fn.port, "POST", f"/annotations/v2/{_dataset(next(fresh))}", posting, body
                ),
                n=INSERT_PAIRS,
            ),
            "raw_batches",
            "function",
            "s",
            "speedup_vs_raw_batches",
            anchor_over_side=True,
        )

        # 2. warm GET 1,000 against the wire floor
        listed = _dataset("get1k")
        raw_insert(listed, _records(GET_COUNT))
        request = wire.query(_user_query(listed))
        # the floor decodes to what the library's to_dict() gives
        assert wire.read(request) == [s.to_dict() for s in _user_query(listed).stream()]

        def floor_get() -> float:
            started = time.perf_counter()
            wire.read(request)
            return 1000 * (time.perf_counter() - started)

        results |= figures.figure(
            "get_1k",
            figures.interleave(
                figures.burst(floor_get, GET_BURST),
                figures.burst(
                    lambda: 1000 * function_call(fn.port, "GET", f"/annotations/v2/{listed}", headers),
                    GET_BURST,
                ),
                warmup=3,
            ),
            "wire_floor",
            "function",
            "ms",
            "vs_wire_floor",
        )

        # 3. POST one against the raw commit floor
        written = _dataset("post1")
        one = json.dumps({"kind": "point", "pos": [1, 2, 3], "tags": ["bench"]}).encode()
        results |= figures.figure(
            "post_1",
            figures.interleave(
                figures.burst(lambda: 1000 * _post_floor(wire, written), POST_BURST),
                figures.burst(
                    lambda: 1000 * function_call(fn.port, "POST", f"/annotations/v2/{written}", posting, one),
                    POST_BURST,
                ),
                warmup=3,
            ),
            "raw_commit",
            "function",
            "ms",
            "vs_raw_commit",
        )
    finally:
        fn.close()
    return results


def listing(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    """Figure 4: list 100,000, with the function's peak memory."""
    results: dict[str, float] = {}
    # seed 100,000 in one dataset (and 10,000 in another), then stream them
    big, small = _dataset("list100k"), _dataset("list10k")
    raw_insert(big, _records(LIST_COUNT))
    raw_insert(small, _records(LIST_COUNT // 10))
    fn = Function(env, headers)
    try:
        results["idle_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
        assert function_list(fn.port, small, headers)[1] == LIST_COUNT // 10
        results["list_10k_peak_rss_mb"] = peak_rss_mb(fn.process.pid)

        def raw() -> float:
            elapsed, count = raw_list(big)
            assert count == LIST_COUNT, count
            return elapsed

        def ours() -> float:
            elapsed, count = function_list(fn.port, big, headers)
            assert count == LIST_COUNT, count
            if "list_100k_peak_rss_mb" not in results:  # the same process after its first listing
                results["list_100k_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
            return elapsed

        results |= figures.figure(
            "list_100k",
            figures.interleave(raw, ours, n=LIST_PAIRS, warmup=0),
            "raw_stream",
            "function",
            "s",
            "speedup_vs_raw_stream",
            anchor_over_side=True,
        )
        results["list_100k_x3_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
    finally:
        fn.close()
    results["list_rss_x3_vs_first"] = results["list_100k_x3_peak_rss_mb"] / results["list_100k_peak_rss_mb"]
    results["list_rss_100k_vs_10k"] = results["list_100k_peak_rss_mb"] / results["list_10k_peak_rss_mb"]
    return results
