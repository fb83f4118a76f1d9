"""Signatures on a 1,000,000-record dataset in the Cloud Storage emulator, in one run:

1. index build time (tools/build_signatures.py: blocks + 4 x 4,000 partitions + info.json);
2. likelocation p50/p95 over HTTP through the function (functions-framework process), for
   queries at stored points that have near-copies (the first query at each point);
3. where storage is slow: the same queries on the function with DELAY_MS added to every object
   read (bench/slow_storage, the bench's own wrapper: real Cloud Storage takes tens of ms per
   small GET), interleaved query by query with (2): the first query at a point (two rounds of
   reads: its block, then four index partitions) and the same query again (the instance kept
   the objects); each answer checked against a brute-force scan of every record;
4. the same queries by brute force over all records: reading every block from the bucket and
   scanning them (what the function would do without the index), and the scan alone with
   the records already in memory.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time

from bench.annotations import Function, _dataset
from bench.run import ROOT

RECORDS = 1_000_000
VOLUME = 16_384  # voxels per axis
BLOCK_SIZE = 1024
QUERIES = 40
DELAY_MS = 20  # added to each object read in (3)
BRUTE_QUERIES = 3
BUCKET = "gatehouse-signatures-bench"


def generate(count: int = RECORDS, seed: int = 11):
    """Random points and signatures; the first QUERIES records each get 20 near-copies."""
    import numpy as np

    from common.catalog import sigindex

    rng = np.random.default_rng(seed)
    records = np.empty(count, dtype=sigindex.record_dtype())
    for axis in "xyz":
        records[axis] = rng.integers(0, VOLUME, size=count)
    records["signature"] = rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64)
    copies = 20
    for q in range(QUERIES):
        for c in range(copies):
            bits = rng.choice(63, size=int(rng.integers(1, 7)), replace=False)
            records["signature"][QUERIES + q * copies + c] = records["signature"][q] ^ np.int64(
                sum(1 << int(b) for b in bits)
            )
    return records


def brute_force_scan(records, signature: int):
    """The spec's likelocation candidates by scanning every record."""
    import numpy as np

    from common.catalog import sigindex

    sig = records["signature"].view(np.uint64)
    query = np.uint64(signature & sigindex.U64)
    shares = np.zeros(len(records), dtype=bool)
    for mask in sigindex.DEFAULT_MASKS:
        m = np.uint64(mask & sigindex.U64)
        shares |= (sig & m) == (query & m)
    dist = np.bitwise_count(sig ^ query)
    keep = shares & (dist < 8)
    found, dist = records[keep], dist[keep]
    order = np.lexsort((found["z"], found["y"], found["x"], dist))[:200]
    return found[order], dist[order]


def read_all_blocks(dataset: str):
    import numpy as np

    from common.catalog import sigindex
    from common.storage import blobs

    bucket = blobs.bucket(BUCKET)
    parts = [
        np.frombuffer(b.download_as_bytes(), dtype=sigindex.record_dtype())
        for b in blobs.client().list_blobs(bucket, prefix=f"{dataset}/blocks/")
    ]
    return np.concatenate(parts)


def expected_matches(records, q: int) -> list[dict]:
    """The answer at stored point q, by brute force over every record (the function's own
    suppression, which tests/integration/test_signatures.py checks against the spec)."""
    from functions.signatures.main import suppress

    point = tuple(int(records[q][a]) for a in "xyz")
    return suppress(point, *brute_force_scan(records, int(records[q]["signature"])))  # type: ignore[arg-type]


def _spread(values: list[float]) -> str:
    return f"{min(values) * 1000:.1f}-{max(values) * 1000:.1f} ms, n={len(values)}"


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[float, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"{path}: {response.status} {body[:200]!r}")
    return elapsed, json.loads(body)


def run(env: dict[str, str], headers: dict[str, str], emulators) -> dict[str, float]:
    from tools import build_signatures

    emulators.create_buckets(BUCKET)
    env = {**env, "SIG_BUCKET": BUCKET}
    results: dict[str, float] = {}
    records = generate()
    dataset = _dataset("sig1m")
    stats = build_signatures.build(BUCKET, dataset, records, block_size=BLOCK_SIZE, progress=False)
    results["build_1m_s"] = stats["seconds"]
    results["build_objects"] = stats["objects"]

    fn = Function(env, headers, os.path.join(ROOT, "functions", "signatures", "main.py"))
    slow = Function(
        {**env, "BENCH_BLOB_DELAY_MS": str(DELAY_MS)},
        headers,
        os.path.join(ROOT, "bench", "slow_storage", "main.py"),
    )
    try:
        # warm both instances at a point none of the queries reads (info.json is then cached)
        x, y, z = (int(records[-1][a]) for a in "xyz")
        for function in (fn, slow):
            _get(function.port, f"/likelocation/{dataset}?x={x}&y={y}&z={z}", headers)
        timings, first, again, matches, exact = [], [], [], [], 0
        for q in range(QUERIES):
            x, y, z = (int(records[q][a]) for a in "xyz")
            path = f"/likelocation/{dataset}?x={x}&y={y}&z={z}"
            elapsed, body = _get(fn.port, path, headers)
            timings.append(elapsed)
            matches.append(len(body["matches"]))
            elapsed, slow_first = _get(slow.port, path, headers)
            first.append(elapsed)
            elapsed, slow_again = _get(slow.port, path, headers)
            again.append(elapsed)
            expected = expected_matches(records, q)
            exact += body["matches"] == slow_first["matches"] == slow_again["matches"] == expected
    finally:
        fn.close()
        slow.close()
    timings.sort()
    results["likelocation_p50_ms"] = statistics.median(timings) * 1000
    results["likelocation_p95_ms"] = timings[int(len(timings) * 0.95) - 1] * 1000
    results["likelocation_mean_matches"] = statistics.mean(matches)
    results[f"slow_storage_{DELAY_MS}ms_first_query_p50_ms"] = statistics.median(first) * 1000
    results[f"slow_storage_{DELAY_MS}ms_again_p50_ms"] = statistics.median(again) * 1000
    results["slow_storage_again_vs_no_delay_first"] = statistics.median(again) / statistics.median(timings)
    results["answers_exact"] = exact
    results["queries"] = QUERIES
    print(
        f"likelocation, no delay: {_spread(timings)}; {DELAY_MS} ms per object read, first query at "
        f"a point: {_spread(first)}; the same again: {_spread(again)}; exact {exact}/{QUERIES}",
        flush=True,
    )

    brute_read, brute_scan = [], []
    for q in range(BRUTE_QUERIES):
        started = time.perf_counter()
        everything = read_all_blocks(dataset)
        read = time.perf_counter() - started
        started = time.perf_counter()
        brute_force_scan(everything, int(records[q]["signature"]))
        scan = time.perf_counter() - started
        brute_read.append(read + scan)
        brute_scan.append(scan)
    results["brute_force_with_reads_ms"] = statistics.median(brute_read) * 1000
    results["brute_force_scan_only_ms"] = statistics.median(brute_scan) * 1000
    results["brute_force_vs_likelocation"] = (
        results["brute_force_with_reads_ms"] / results["likelocation_p50_ms"]
    )
    return results
