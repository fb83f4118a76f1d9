"""Soak: SOAK_SECONDS (60) at a fixed SOAK_RATE (40 requests/s) across several functions, mixed
reads and writes, each function in its own functions-framework process as in the cloud (one
instance each). Requests are sent on a fixed schedule whatever the answers take (open loop),
and latency counts from the scheduled time, so a stall shows in p99 instead of slowing the
load. Reported: p50/p99 latency, errors (goal: none) and each function's RSS after warm-up and
at the end (goal: flat).
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from bench.annotations import Function
from bench.run import ROOT

SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
RATE = float(os.environ.get("SOAK_RATE", "40"))
DATASET = "soak"
SPREAD = 8  # Firestore sustains about one write per second to one document
FUNCTIONS = ("roles", "datasets", "annotations", "savedsearches", "users")


def _mix() -> list[tuple[str, str, str, object]]:
    """(function, method, path, body): two reads for each write."""
    return [
        ("roles", "GET", "/", None),
        ("datasets", "GET", "/", None),
        ("datasets", "GET", f"/{DATASET}", None),
        ("users", "GET", "/me", None),
        ("annotations", "POST", f"/v2/{DATASET}", "point"),
        ("annotations", "GET", f"/v2/{DATASET}?limit=50", None),
        ("savedsearches", "POST", f"/{DATASET}?x=1&y=2&z=3", {"q": "soak"}),
        ("savedsearches", "GET", f"/{DATASET}", None),
        ("datasets", "PUT", "/", "description"),  # one of SPREAD datasets: ~1 write/s per document
    ]


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (functions-framework serves from gunicorn workers)."""
    total = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            total += sum(rss_mb(int(child)) for child in f.read().split())
    return total


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    from common.storage import store

    for name in [DATASET] + [f"{DATASET}{i}" for i in range(SPREAD)]:
        store.collection("datasets").document(name).set({"description": "soak", "public": False})
    functions = {
        name: Function(env, headers, os.path.join(ROOT, "functions", name, "main.py")) for name in FUNCTIONS
    }
    local = threading.local()
    counter = itertools.count()

    def send(function: str, method: str, path: str, body: object) -> int:
        conns = local.__dict__.setdefault("conns", {})
        if function not in conns:
            conns[function] = http.client.HTTPConnection("127.0.0.1", functions[function].port, timeout=30)
        if body == "point":
            n = next(counter)
            body = {"kind": "point", "pos": [n, random.randrange(1000), 7]}
        elif body == "description":
            n = next(counter)
            path, body = f"/{DATASET}{n % SPREAD}", {"description": f"soak {n}"}
        data = None if body is None else json.dumps(body)
        for _ in range(2):  # a kept-alive connection the server has closed: once more, anew
            try:
                conns[function].request(
                    method, path, body=data, headers={**headers, "Content-Type": "application/json"}
                )
                response = conns[function].getresponse()
                response.read()
                return response.status
            except OSError as exc:
                last = exc
                conns[function].close()
                conns[function] = http.client.HTTPConnection(
                    "127.0.0.1", functions[function].port, timeout=30
                )
        print(f"{function} {method} {path}: {last!r}")
        return 599

    try:
        mix = _mix()
        for request in mix * 3:  # warm-up: every route once per instance, caches filled
            send(*request)
        rss_start = {name: rss_mb(f.process.pid) for name, f in functions.items()}
        latencies: list[float] = []
        errors: dict[str, int] = {}
        lock = threading.Lock()
        total = int(SECONDS * RATE)
        started = time.perf_counter()

        def one(i: int) -> None:
            scheduled = started + i / RATE
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            request = mix[i % len(mix)]
            status = send(*request)
            took = time.perf_counter() - scheduled
            with lock:
                latencies.append(took)
                if status >= 400:
                    key = f"{request[0]} {request[1]} {status}"
                    errors[key] = errors.get(key, 0) + 1

        with ThreadPoolExecutor(max_workers=32) as pool:
            list(pool.map(one, range(total)))
        elapsed = time.perf_counter() - started
        rss_end = {name: rss_mb(f.process.pid) for name, f in functions.items()}
    finally:
        for f in functions.values():
            f.close()
    latencies.sort()
    results = {
        "requests": float(total),
        "achieved_rps": total / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "errors": float(sum(errors.values())),
    }
    for name in FUNCTIONS:
        results[f"rss_{name}_start_mb"] = rss_start[name]
        results[f"rss_{name}_end_mb"] = rss_end[name]
    if errors:
        print("errors:", errors)
    return results
