"""Async twin calls through Pub/Sub on the emulators (`?async=1`), in one run:

1. the `202` answer time of `POST /twins/bench.echo/mock?async=1` over HTTP (functions-framework
   process);
2. the time from that `202` to the job's `done` as `GET /twins/jobs/{id}` shows it (polled every
   POLL_SECONDS): the message on the Pub/Sub emulator, its push to the `job_work` worker (as
   tools/workers.py serves it), the claim, the sandbox call and the stored result;
3. for comparison, the same call made synchronously (p50).
Goal: a trivial job done within about a second of its 202.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time

from bench.annotations import Function
from bench.run import ROOT
from bench.twins import CODE, PATH

JOBS = 30
POLL_SECONDS = 0.005
SOURCE = os.path.join(ROOT, "functions", "twins", "main.py")


def _call(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, json.loads(response.read()), response.getheader("Location")


def run(env: dict[str, str], headers: dict[str, str], emulators) -> dict[str, float]:
    from tools import workers

    worker = workers.serve(
        next(w for w in workers.WORKERS if w.target == "job_work"),
        emulators,
        min_backoff="0.1s",
        max_backoff="1s",
        max_delivery_attempts=5,
        ack_deadline_seconds=60,
    )
    fn = Function(env, headers, SOURCE)
    body = json.dumps({"text": "a", "times": 2}).encode()
    try:
        _call(fn.port, "DELETE", f"/{PATH}", headers)
        definition = {"path": PATH, "description": "bench", "mock": {"code": CODE}, "private": {"code": CODE}}
        status, answer, _ = _call(fn.port, "POST", "/", headers, json.dumps(definition).encode())
        if status != 201:
            raise RuntimeError(f"defining {PATH}: {status} {answer}")
        sync = []
        for _ in range(JOBS):
            began = time.perf_counter()
            _call(fn.port, "POST", f"/{PATH}/mock", headers, body)
            sync.append(time.perf_counter() - began)
        accepted, done = [], []
        for _ in range(JOBS):
            began = time.perf_counter()
            status, answer, location = _call(fn.port, "POST", f"/{PATH}/mock?async=1", headers, body)
            if status != 202:
                raise RuntimeError(f"async call: {status} {answer}")
            answered = time.perf_counter()
            accepted.append(answered - began)
            job = location.removeprefix("/twins")
            while True:
                status, answer, _ = _call(fn.port, "GET", job, headers)
                if answer["status"] in ("done", "failed"):
                    break
                time.sleep(POLL_SECONDS)
            if answer["status"] != "done":
                raise RuntimeError(f"job {job}: {answer}")
            done.append(time.perf_counter() - answered)
        return {
            "sync_call_p50_ms": 1000 * statistics.median(sync),
            "async_202_p50_ms": 1000 * statistics.median(accepted),
            "accepted_to_done_p50_ms": 1000 * statistics.median(done),
            "accepted_to_done_max_ms": 1000 * max(done),
            "jobs": JOBS,
        }
    finally:
        fn.close()
        worker.stop()
