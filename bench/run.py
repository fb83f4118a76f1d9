"""`make bench`: each figure against its anchor, interleaved in the same run (`make bench` runs
them all; `make bench BENCH=annotations` one of them). Every figure prints its goal from issue
24's table with PASS or MISS (bench/figures.py: the pairs, medians and goals in one place), and
goes to .bench/<name>.json. The foundation's:

1. cold start, spawn -> first authenticated answer of `roles` (it verifies the token and reads
   Firestore) against a bare function that imports the Firestore client and reads one
   document, n=15 interleaved pairs; `roles`' `_health` against a bare functions-framework
   hello, n=7 (context);
2. warm `GET /roles` against the bare hello, both servers up at once, alternating bursts of
   BURST_SECONDS (requests/s with LOAD_THREADS connections), n=15;
3. auth + authz per request with warm caches, in-process (API key, dev token).

The machine is often shared: compare the ratios, which are taken within each pair. The
annotations figures are described in bench/annotations.py, the twins ones in bench/twins.py
and bench/twinjobs.py, the soak in bench/soak.py, clio's /v2 routes (and clio-store itself,
given CLIO_STORE) in bench/clio.py, body annotations' /all through DVID in bench/bodyannotations.py.
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import figures  # noqa: E402
from tools import devkeys  # noqa: E402
from tools.emulators import Emulators, free_port  # noqa: E402

COLD_RUNS = 7
LOAD_SECONDS = 4.0
LOAD_THREADS = 4
BURST_SECONDS = 1.0
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


def cold_once(source: str, path: str, env: dict[str, str], headers: dict[str, str] | None = None) -> float:
    """Seconds from spawning a fresh functions-framework process to its first 200 on `path`."""
    port = free_port()
    started = time.perf_counter()
    process = _spawn(source, port, env)
    try:
        return _first_200(port, path, headers or {}, started)
    finally:
        process.terminate()
        process.wait(timeout=10)


def cold_start(source: str, path: str, env: dict[str, str], headers: dict[str, str] | None = None) -> float:
    return statistics.median(cold_once(source, path, env, headers) for _ in range(COLD_RUNS))


def requests_per_second(
    port: int, path: str, headers: dict[str, str], seconds: float = LOAD_SECONDS
) -> float:
    counts = [0] * LOAD_THREADS
    stop = time.perf_counter() + seconds

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


class Server:
    """A function in its own functions-framework process, answering 200 on `path`."""

    def __init__(self, source: str, path: str, env: dict[str, str], headers: dict[str, str] | None = None):
        self.port, self.path, self.headers = free_port(), path, headers or {}
        self.process = _spawn(source, self.port, env)
        _first_200(self.port, path, self.headers, time.perf_counter())

    def burst(self) -> float:
        """Requests per second over one burst of BURST_SECONDS."""
        return requests_per_second(self.port, self.path, self.headers, BURST_SECONDS)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


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
    results = figures.figure(
        "cold_authenticated",
        figures.interleave(
            lambda: cold_once(bare_firestore, "/", env), lambda: cold_once(roles, "/", env, auth)
        ),
        "bare_firestore",
        "roles",
        "s",
        "vs_bare_firestore",
    )
    results |= figures.figure(
        "cold_health",
        figures.interleave(
            lambda: cold_once(hello, "/", env), lambda: cold_once(roles, "/_health", env), n=7
        ),
        "hello",
        "roles",
        "s",
        "vs_hello",
    )
    # Both servers up at once: short bursts alternate, so each pair sees the same machine.
    servers = [Server(hello, "/", env), Server(roles, "/", env, auth)]
    try:
        results |= figures.figure(
            "warm",
            figures.interleave(servers[0].burst, servers[1].burst),
            "hello",
            "roles",
            "rps",
            "roles_vs_hello",
        )
    finally:
        for server in servers:
            server.close()
    results.update({f"auth_authz_{k}_us": v for k, v in auth_tokens_bench(token).items()})
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("benches", nargs="*", help=f"some of: {', '.join(figures.BENCHES)} (default: all)")
    names = parser.parse_args().benches or list(figures.BENCHES)
    unknown = set(names) - set(figures.BENCHES)
    if unknown:
        parser.error(f"unknown benches: {', '.join(sorted(unknown))}")
    if "journey" in names:  # its own stack: `make dev` in a fresh clone
        from bench import journey

        figures.report("journey", journey.run(), ROOT)
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
            # a listing of 100,000 on a loaded machine can take longer than the default 30 s
            "BACKEND_DEADLINE_SECONDS": "240",
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
            figures.report(name, results, ROOT)
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
