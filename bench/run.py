"""`make bench`: each figure against its baseline in the same run (`make bench` runs them all;
`make bench BENCH=annotations` one of them). The foundation's:

1. cold start: process spawn -> first 200, for a bare functions-framework hello, a bare function
   that imports the Firestore client and reads one document, and `roles` (its `_health`, and
   its first authenticated `GET /roles`, which verifies the token and reads Firestore);
2. warm `GET /roles` requests/s against the bare hello, same client, same machine;
3. auth + authz per request with warm caches, in-process (Google ID token, API key, dev token).

Medians of several runs; the machine is noisy, so compare the ratios. Results also go to
.bench/<name>.json. The annotations figures are described in bench/annotations.py, the twins ones in bench/twins.py and bench/twinjobs.py,
the soak in bench/soak.py, clio's /v2 routes against Gatehouse's own in bench/clio.py, body
annotations' /all through DVID in bench/bodyannotations.py.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools import devkeys  # noqa: E402
from tools.emulators import Emulators, free_port  # noqa: E402

COLD_RUNS = 7
LOAD_SECONDS = 4.0
LOAD_THREADS = 4
AUTH_CALLS = 20_000


def _spawn(source: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    argv = [
        os.path.join(os.path.dirname(sys.executable), "functions-framework"),
        "--target",
        "handle",
        "--source",
        source,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _first_200(port: int, path: str, headers: dict[str, str], started: float, timeout: float = 30.0) -> float:
    while time.perf_counter() - started < timeout:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers=headers)
            if conn.getresponse().status == 200:
                return time.perf_counter() - started
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"no 200 from {path} within {timeout}s")


def cold_start(source: str, path: str, env: dict[str, str], headers: dict[str, str] | None = None) -> float:
    runs = []
    for _ in range(COLD_RUNS):
        port = free_port()
        started = time.perf_counter()
        process = _spawn(source, port, env)
        try:
            runs.append(_first_200(port, path, headers or {}, started))
        finally:
            process.terminate()
            process.wait(timeout=10)
    return statistics.median(runs)


def requests_per_second(port: int, path: str, headers: dict[str, str]) -> float:
    counts = [0] * LOAD_THREADS
    stop = time.perf_counter() + LOAD_SECONDS

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while time.perf_counter() < stop:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"{path}: {response.status}")
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(LOAD_THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def warm_rps(source: str, path: str, env: dict[str, str], headers: dict[str, str] | None = None) -> float:
    port = free_port()
    process = _spawn(source, port, env)
    try:
        _first_200(port, path, headers or {}, time.perf_counter())
        requests_per_second(port, path, headers or {})  # warm-up
        return statistics.median(requests_per_second(port, path, headers or {}) for _ in range(3))
    finally:
        process.terminate()
        process.wait(timeout=10)


def auth_per_request(tokens: dict[str, str]) -> dict[str, float]:
    """Median microseconds of authenticate + a dataset role check, caches warm."""
    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from common.identity import auth, authz

    results = {}
    for kind, token in tokens.items():
        request = Request(
            EnvironBuilder(path="/roles", headers={"Authorization": f"Bearer {token}"}).get_environ()
        )
        caller = auth.authenticate(request)  # the first call verifies and loads roles
        authz.require_dataset(caller, "bench", authz.READ)
        samples = []
        for _ in range(AUTH_CALLS):
            t = time.perf_counter_ns()
            caller = auth.authenticate(request)
            authz.require_dataset(caller, "bench", authz.READ)
            samples.append(time.perf_counter_ns() - t)
        results[kind] = statistics.median(samples) / 1000
    return results


def foundation(env: dict[str, str], token: str) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {token}"}
    hello = os.path.join(ROOT, "bench", "hello", "main.py")
    bare_firestore = os.path.join(ROOT, "bench", "firestore_bare", "main.py")
    roles = os.path.join(ROOT, "functions", "roles", "main.py")
    results: dict[str, float] = {}
    results["cold_hello_s"] = cold_start(hello, "/", env)
    results["cold_bare_firestore_s"] = cold_start(bare_firestore, "/", env)
    results["cold_roles_health_s"] = cold_start(roles, "/_health", env)
    results["cold_roles_authenticated_s"] = cold_start(roles, "/", env, auth)
    results["warm_hello_rps"] = warm_rps(hello, "/", env)
    results["warm_roles_rps"] = warm_rps(roles, "/", env, auth)
    results.update({f"auth_authz_{k}_us": v for k, v in auth_tokens_bench(token).items()})
    results["cold_roles_health_vs_hello"] = results["cold_roles_health_s"] / results["cold_hello_s"]
    results["cold_roles_authenticated_vs_hello"] = (
        results["cold_roles_authenticated_s"] / results["cold_hello_s"]
    )
    results["cold_roles_authenticated_vs_bare_firestore"] = (
        results["cold_roles_authenticated_s"] / results["cold_bare_firestore_s"]
    )
    results["warm_roles_vs_hello"] = results["warm_roles_rps"] / results["warm_hello_rps"]
    return results


GOALS = {
    "foundation": "cold start <= 2x hello, authenticated <= 1x a bare Firestore read; warm GET /roles >= 0.6x hello; auth+authz < 500 us",
    "annotations": "insert and list >= 0.8x the raw client; list peak RSS < 150 MB, flat from 10k to 100k",
    "signatures": "likelocation p50 < 50 ms on 1,000,000 records; brute force over all records for comparison",
    "transfer": "POST /transfer answers well under a second, whatever the parts take; done soon after the slowest part",
    "soak": "SOAK_SECONDS at SOAK_RATE across 5 functions, mixed reads/writes: no errors; RSS flat",
    "twins": "warm mock call over HTTP < 5 ms p50 over the same function in-process; a request run (fresh jailed worker) < 100 ms p50 over in-process; request runs per second; cold start to the first call vs hello",
    "journey": "git clone -> make dev -> token -> the walkthrough's submit, review, approve, run -> the private result: under 2 minutes",
    "twinjobs": "an async trivial twin call: 202 -> done through the Pub/Sub emulator (p50), against the same call made synchronously",
    "clio": "a /v2 call (GET 1,000 annotations, POST one) costs < 5 % over the same call on Gatehouse's own route at p50 (clio_vs_own_p50 < 1.05)",
    "bodyannotations": "/all of 100,000 DVID records through the function >= 0.9x fetching the same bytes from DVID directly; peak RSS flat (all_rss_growth_mb small against all_mb)",
}


def report(name: str, results: dict[str, float]) -> None:
    print(f"\n{name}\n{'figure':42} {'value':>12}")
    for figure, value in results.items():
        print(f"{figure:42} {value:12.3f}")
    print(f"goals: {GOALS[name]}", flush=True)
    os.makedirs(os.path.join(ROOT, ".bench"), exist_ok=True)
    with open(os.path.join(ROOT, ".bench", f"{name}.json"), "w") as f:
        json.dump(results, f, indent=2)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("benches", nargs="*", help=f"some of: {', '.join(GOALS)} (default: all)")
    names = parser.parse_args().benches or list(GOALS)
    unknown = set(names) - set(GOALS)
    if unknown:
        parser.error(f"unknown benches: {', '.join(sorted(unknown))}")
    if "journey" in names:  # its own stack: `make dev` in a fresh clone
        from bench import journey

        report("journey", journey.run())
        names.remove("journey")
        if not names:
            return
    workdir = tempfile.mkdtemp(prefix="gatehouse-bench-")
    dev_key, signer = devkeys.ensure(workdir)
    emulators = Emulators(
        project="gatehouse-bench", log_dir=os.path.join(workdir, "logs"), storage_backend="filesystem"
    ).start()
    try:
        env = {
            **os.environ,
            **emulators.env,
            "PYTHONPATH": ROOT,
            "OWNER": "owner@example.com",
            "GATEHOUSE_DEV_MODE": "1",
            "GATEHOUSE_DEV_KEY_FILE": dev_key,
            "SIGNER_KEY_FILE": signer,
        }
        os.environ.update(env)
        from common.identity.auth import mint_dev_token

        with open(dev_key, "rb") as f:
            token = mint_dev_token("owner@example.com", f.read())
        for name in names:
            if name == "foundation":
                results = foundation(env, token)
            elif name == "annotations":
                from bench import annotations

                results = annotations.run(env, {"Authorization": f"Bearer {token}"})
            elif name == "transfer":
                from bench import transfer

                results = transfer.run(env, {"Authorization": f"Bearer {token}"}, emulators)
            elif name == "soak":
                from bench import soak

                results = soak.run(env, {"Authorization": f"Bearer {token}"})
            elif name == "twins":
                from bench import twins

                results = twins.run(env, {"Authorization": f"Bearer {token}"})
            elif name == "clio":
                from bench import clio

                results = clio.run(env, {"Authorization": f"Bearer {token}"})
            elif name == "bodyannotations":
                from bench import bodyannotations

                results = bodyannotations.run(env, {"Authorization": f"Bearer {token}"})
            elif name == "twinjobs":
                from bench import twinjobs

                results = twinjobs.run(env, {"Authorization": f"Bearer {token}"}, emulators)
            else:
                from bench import signatures

                results = signatures.run(env, {"Authorization": f"Bearer {token}"}, emulators)
            report(name, results)
    finally:
        emulators.stop()


def auth_tokens_bench(dev_token: str) -> dict[str, float]:
    """Auth+authz with a warm cache for each token kind (Google kind via a local certs endpoint
    is exercised by the tests; here: dev token and API key, which take the same cached path)."""
    from common.storage import store

    store.collection("datasets").document("bench").set({"description": "bench", "public": False})
    from functions_framework import create_app

    users = create_app("handle", os.path.join(ROOT, "functions", "users", "main.py")).test_client()
    key = users.post(
        "/users/me/keys", json={"name": "bench"}, headers={"Authorization": f"Bearer {dev_token}"}
    ).get_json()["key"]
    return auth_per_request({"dev_token": dev_token, "api_key": key})


if __name__ == "__main__":
    main()
