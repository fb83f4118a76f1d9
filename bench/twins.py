"""Twin endpoint calls, in one run:

1. a warm mock call over HTTP (functions-framework process: auth, endpoint read, argument check,
   sandbox worker, call record) against the same function run in-process (its source executed
   and called directly), p50 of CALLS each; and, to see where the time goes, `sandbox.run`
   alone in this process and the function's `_health` over HTTP;
2. cold start: process spawn -> the first 200 of an authenticated mock call, against the
   foundation's baseline, a bare functions-framework hello;
3. request runs: approved request code runs in a fresh jailed worker used once (no network,
   its own root, uid and namespaces; functions/twins/sandbox.py): p50 of spawn -> result against the same
   function called in-process, and how many runs one instance sustains with its request lane
   full (runs per second over RATE_SECONDS).
Goals: < 5 ms p50 overhead over in-process for a warm mock call; < 100 ms p50 for a request run.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time

from bench.annotations import Function
from bench.run import ROOT, _first_200, _spawn, cold_start
from tools.emulators import free_port

CALLS = 300
WARMUP = 30
REQUEST_RUNS = 60
RATE_SECONDS = 5.0
REQUEST_CODE = "def use(echo):\n    return {'echo': 'a' * 2}\n"
SOURCE = os.path.join(ROOT, "functions", "twins", "main.py")
CODE = "def echo(context, text: str, times: int = 1):\n    return {'echo': text * times}\n"
PATH = "bench.echo"


def _define(port: int, headers: dict[str, str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("DELETE", f"/{PATH}", headers=headers)
    conn.getresponse().read()
    body = {"path": PATH, "description": "bench", "mock": {"code": CODE}, "private": {"code": CODE}}
    conn.request("POST", "/", body=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 201:
        raise RuntimeError(f"defining {PATH}: {response.status} {response.read()!r}")
    response.read()


def _latencies(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes | None, count: int
) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path}: {response.status}")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


class _Context:
    """The smallest context the in-process baseline needs."""

    settings: dict = {}


def in_process_ms() -> float:
    namespace: dict = {}
    exec(compile(CODE, "<endpoint>", "exec"), namespace)
    echo = namespace["echo"]
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        json.dumps({"result": echo(_Context(), text="a", times=2)})
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def sandbox_run_ms() -> float:
    from functions.twins import sandbox
    from functions.twins.state import FirestoreState

    program = sandbox.Program(code=CODE, helpers=[], settings={})
    state = FirestoreState("bench")
    samples = []
    for i in range(WARMUP + CALLS):
        started = time.perf_counter()
        outcome = sandbox.run(
            program,
            {"text": "a", "times": 2},
            user={"email": "b@example.com", "roles": []},
            state=state,
            timeout_s=10,
        )
        if outcome.status != "ok":
            raise RuntimeError(f"sandbox: {outcome.status} {outcome.message}")
        if i >= WARMUP:
            samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def request_run_ms() -> tuple[float, float]:
    """p50 of one request run (fresh jailed worker -> result), and its in-process baseline."""
    from functions.twins import sandbox

    if not sandbox.boundary().ok:
        raise RuntimeError(f"request runs cannot be contained here: {sandbox.boundary().reason}")
    program = sandbox.Program(code=REQUEST_CODE)
    samples = []
    for _ in range(REQUEST_RUNS):
        started = time.perf_counter()
        outcome = sandbox.run(program, {}, user={}, state=None, timeout_s=10, handles=["echo"])  # type: ignore[arg-type]
        if outcome.status != "ok":
            raise RuntimeError(f"request run: {outcome.status} {outcome.message}")
        samples.append((time.perf_counter() - started) * 1000)
    namespace: dict = {}
    exec(compile(REQUEST_CODE, "<request>", "exec"), namespace)
    baseline = []
    for _ in range(CALLS):
        started = time.perf_counter()
        json.dumps(namespace["use"](None))
        baseline.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), statistics.median(baseline)


def request_runs_per_second() -> float:
    """Runs finished per second with as many running at once as the request lane allows."""
    from concurrent.futures import ThreadPoolExecutor

    from functions.twins import sandbox

    program = sandbox.Program(code=REQUEST_CODE)
    stop = time.monotonic() + RATE_SECONDS

    def loop() -> int:
        done = 0
        while time.monotonic() < stop:
            outcome = sandbox.run(program, {}, user={}, state=None, timeout_s=10, handles=["echo"])  # type: ignore[arg-type]
            done += outcome.status == "ok"
        return done

    started = time.monotonic()
    with ThreadPoolExecutor(sandbox.LANES["requests"]) as pool:
        total = sum(pool.map(lambda _: loop(), range(sandbox.LANES["requests"])))
    return total / (time.monotonic() - started)


def run(env: dict[str, str], headers: dict[str, str]) -> dict[str, float]:
    results: dict[str, float] = {}
    json_headers = {**headers, "Content-Type": "application/json"}
    call = json.dumps({"text": "a", "times": 2}).encode()
    fn = Function(env, headers, SOURCE)
    try:
        _define(fn.port, headers)
        _latencies(fn.port, "POST", f"/{PATH}/mock", json_headers, call, WARMUP)
        results["http_mock_call_p50_ms"] = statistics.median(
            _latencies(fn.port, "POST", f"/{PATH}/mock", json_headers, call, CALLS)
        )
        results["http_health_p50_ms"] = statistics.median(
            _latencies(fn.port, "GET", "/_health", {}, None, CALLS)
        )
    finally:
        fn.close()
    results["in_process_call_p50_ms"] = in_process_ms()
    results["sandbox_run_p50_ms"] = sandbox_run_ms()
    results["overhead_p50_ms"] = results["http_mock_call_p50_ms"] - results["in_process_call_p50_ms"]
    run_ms, run_baseline_ms = request_run_ms()
    results["request_run_p50_ms"] = run_ms
    results["request_run_overhead_p50_ms"] = run_ms - run_baseline_ms
    results["request_runs_per_s"] = request_runs_per_second()

    hello = os.path.join(ROOT, "bench", "hello", "main.py")
    results["cold_hello_s"] = cold_start(hello, "/", env)
    results["cold_twins_first_call_s"] = _cold_first_call(env, json_headers, call)
    results["cold_twins_vs_hello"] = results["cold_twins_first_call_s"] / results["cold_hello_s"]
    return results


def _cold_first_call(env: dict[str, str], headers: dict[str, str], body: bytes, runs: int = 5) -> float:
    """Spawn -> the first 200 of POST /bench.echo/mock (auth, Firestore, the first worker)."""
    samples = []
    for _ in range(runs):
        port = free_port()
        started = time.perf_counter()
        process = _spawn(SOURCE, port, env)
        try:
            _first_200(port, "/_health", {}, started)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", f"/{PATH}/mock", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"first call: {response.status}")
            samples.append(time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=10)
    return statistics.median(samples)
