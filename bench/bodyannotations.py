"""Body annotations' `/all` through the bodyannotations function against the same bytes fetched
from DVID directly, same run: 100,000 DVID records (a body id above 2^53 in each, ~40 MB, about
the size of MANC's) in the
DVID stand-in (tools/dvid_standin.py), streamed through the function over HTTP
(functions-framework, its own process, MALLOC_ARENA_MAX=2 as deployed) and fetched from the
stand-in directly, in interleaved pairs; medians. The function process's peak memory (VmHWM):
fresh, after listing 1,000 (what a first request loads), after one listing of 100,000 and after
all of them: growth past the 1,000 listing must stay small against the answer's size (it is
never held).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import statistics
import subprocess
import sys
import time

from bench.annotations import Function, peak_rss_mb
from bench.run import ROOT
from tools.emulators import free_port

RECORDS = 100_000
RUNS = 7
NODE = "b0d1e5"
DATASET = "benchbodies"
SMALL, SMALL_DATASET = "5a11", "benchbodies1k"  # 1,000 records: the first request's imports
SOURCE = os.path.join(ROOT, "functions", "bodyannotations", "main.py")


def _records(count: int) -> list[dict]:
    return [
        {
            "bodyid": (1 << 60) + i,
            "type": f"T{i % 500}",
            "instance": f"T{i % 500}_{'LR'[i % 2]}",
            "status": "Traced",
            "group": (1 << 60) + i - i % 2,
            "class": "intrinsic neuron",
            "hemilineage": f"{i % 23}A",
            "soma_side": "LR"[i % 2],
            "root_side": "LR"[i % 2],
            "entry_nerve": None,
            "position": [i % 40000, i % 30000 + 5000, i % 90000 + 1000],
            "soma_position": [i % 41000, i % 31000 + 5000, i % 91000 + 1000],
            "description": "a body annotation as MANC's records are, with a few more fields",
            "type_user": "annotator@example.com",
            "type_time": "2026-01-01T00:00:00Z",
        }
        for i in range(count)
    ]


def fetch(port: int, path: str, headers: dict[str, str]) -> tuple[float, int, str]:
    """GET `path`, read in 64 KiB pieces and never held: (seconds, bytes, sha256)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    digest, size = hashlib.sha256(), 0
    started = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    while chunk := response.read(1 << 16):
        digest.update(chunk)
        size += len(chunk)
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status}")
    return elapsed, size, digest.hexdigest()


def serve(port: int) -> None:
    """The DVID stand-in with the bench's nodes, in a process of its own (`python -c`): fetched
    directly from the bench's process it would otherwise share that process's GIL with the
    client, and look slower than it is."""
    import threading

    from tools.dvid_standin import DvidService

    dvid = DvidService(port=port)
    dvid.add_node(NODE, _records(RECORDS))
    dvid.add_node(SMALL, _records(RECORDS // 100))
    dvid.start()
    threading.Event().wait()


def _start_dvid(env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    code = f"from bench.bodyannotations import serve; serve({port})"
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, start_new_session=True)
    started = time.monotonic()
    while time.monotonic() - started < 120:
        try:
            fetch(port, f"/api/node/{SMALL}/segmentation_annotations/fields", {})
            return process, port
        except (OSError, RuntimeError):
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the DVID stand-in did not start")


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    from common.storage import store

    dvid, dvid_port = _start_dvid(env)
    try:
        for name, node in ((DATASET, NODE), (SMALL_DATASET, SMALL)):
            store.collection("datasets").document(name).set(
                {"description": "bench", "dvid": f"http://127.0.0.1:{dvid_port}", "uuid": node}
            )
        direct_path = f"/api/node/{NODE}/segmentation_annotations/all"
        ours_path = f"/v2/json-annotations/{DATASET}/neurons/all"
        _, size, expected = fetch(dvid_port, direct_path, {})  # the stand-in makes its answer once
        results: dict[str, float] = {"all_mb": size / 1e6}
        fn = Function(env, headers, SOURCE)
        direct, ours = [], []
        try:
            results["idle_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
            # the first request loads what a request needs (the Firestore client, urllib3...)
            fetch(fn.port, f"/v2/json-annotations/{SMALL_DATASET}/neurons/all", headers)
            results["all_1k_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
            for run_no in range(RUNS):
                direct.append(fetch(dvid_port, direct_path, {})[0])
                elapsed, got, digest = fetch(fn.port, ours_path, headers)
                assert (got, digest) == (size, expected), "the function changed DVID's bytes"
                ours.append(elapsed)
                if run_no == 0:
                    results["all_100k_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
            results[f"all_100k_x{RUNS}_peak_rss_mb"] = peak_rss_mb(fn.process.pid)
        finally:
            fn.close()
    finally:
        dvid.terminate()
        dvid.wait(timeout=10)
    results["all_100k_direct_s"] = statistics.median(direct)
    results["all_100k_function_s"] = statistics.median(ours)
    results["all_function_vs_direct"] = results["all_100k_direct_s"] / results["all_100k_function_s"]
    results["all_rss_growth_mb"] = results[f"all_100k_x{RUNS}_peak_rss_mb"] - results["all_1k_peak_rss_mb"]
    return results
