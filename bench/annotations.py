"""Annotations v2 against the raw google-cloud-firestore client, same emulator, same run:

1. insert 10,000 annotations: one POST to the function vs the raw client's batched writes
   (500 per commit) of the same documents;
2. list 100,000 annotations of one dataset: the function's streamed GET vs the raw client's
   `stream()` of the same query, with the function process's peak memory (VmHWM): fresh, after
   listing 10,000, after listing 100,000, and after three listings of 100,000 (it must stay
   flat, under 150 MB). The function runs with MALLOC_ARENA_MAX=2, as deployed: glibc's
   per-thread arenas otherwise raise the peak each time a new gunicorn thread serves a request.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import statistics
import time

from bench.run import ROOT, _first_200, _spawn
from tools.emulators import free_port

USER = "owner@example.com"
INSERT_COUNT = 10_000
INSERT_RUNS = 5
LIST_COUNT = 100_000
LIST_RUNS = 3
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


def function_insert(port: int, dataset: str, body: bytes, headers: dict[str, str]) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    started = time.perf_counter()
    conn.request("POST", f"/v2/{dataset}", body=body, headers={**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"POST: {response.status} {data[:300]!r}")
    return elapsed


def raw_list(dataset: str) -> tuple[float, int]:
    from google.cloud.firestore_v1.base_query import FieldFilter

    started = time.perf_counter()
    count = sum(
        1
        for snap in _coll(dataset).where(filter=FieldFilter("user", "==", USER)).order_by("__name__").stream()
        if snap.to_dict()
    )
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


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    results: dict[str, float] = {}

    # 1. insert 10,000, alternating function and raw client, fresh collections each time
    body = json.dumps(_annotations(INSERT_COUNT)).encode()
    fn = Function(env, headers)
    try:
        function_insert(fn.port, _dataset("warmup"), json.dumps(_annotations(10)).encode(), headers)
        raw, ours = [], []
        for run_no in range(INSERT_RUNS):
            raw.append(raw_insert(f"raw{run_no}", _records(INSERT_COUNT)))
            ours.append(function_insert(fn.port, _dataset(f"fn{run_no}"), body, headers))
    finally:
        fn.close()
    results["insert_10k_raw_s"] = statistics.median(raw)
    results["insert_10k_function_s"] = statistics.median(ours)
    results["insert_function_vs_raw"] = results["insert_10k_raw_s"] / results["insert_10k_function_s"]

    # 2. list: seed 100,000 in one dataset (and 10,000 in another), then stream them
    big, small = _dataset("list100k"), _dataset("list10k")
    raw_insert(big, _records(LIST_COUNT))
    raw_insert(small, _records(LIST_COUNT // 10))
    raw, ours = [], []
    fn = Function(env, headers)
    try:
        results["idle_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
        assert function_list(fn.port, small, headers)[1] == LIST_COUNT // 10
        results["list_10k_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
        for run_no in range(LIST_RUNS):
            elapsed, count = raw_list(big)
            assert count == LIST_COUNT, count
            raw.append(elapsed)
            elapsed, count = function_list(fn.port, big, headers)
            assert count == LIST_COUNT, count
            ours.append(elapsed)
            # the same process: its peak after one listing of 100,000, and after all of them
            results["list_100k_peak_rss_mb" if run_no == 0 else "list_100k_x3_peak_rss_mb"] = peak_rss_mb(
                fn.process.pid
            )
    finally:
        fn.close()
    results["list_100k_raw_s"] = statistics.median(raw)
    results["list_100k_function_s"] = statistics.median(ours)
    results["list_function_vs_raw"] = results["list_100k_raw_s"] / results["list_100k_function_s"]
    results["list_rss_100k_vs_10k"] = results["list_100k_peak_rss_mb"] / results["list_10k_peak_rss_mb"]
    return results
