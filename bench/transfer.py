"""Transfer through Pub/Sub on the emulators, in one run:

1. `POST /transfer` answer time (p50/p95) over HTTP through the function (functions-framework
   process), while the transfer network stand-in takes SLOW_SECONDS per part: the answer must
   not wait for the parts;
2. time from the POST to the job's `done` (p50/p95, range, n): the worker (tools/workers.py,
   behind its push subscription) sending the job's eight parts at once from one delivery, each
   answered by the stand-in after SLOW_SECONDS (it writes no chunks here: a part takes exactly
   that, however loaded the machine; writing them is the transfer network's work); against its
   floor, measured job by job in the same run: the eight parts POSTed at once straight to the
   stand-in (the slowest part). Goal: done <= 0.8 s, about the slowest part + 0.2 s (the emulator
   pushes two messages at a time, so one message per part took four rounds, 2.5 s);
3. the same with one part failing once (one redelivery after the subscription's backoff).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import time

from bench.annotations import Function
from bench.run import ROOT
from tools.transfer_standin import TransferService

JOBS = 10
SLOW_SECONDS = 0.5
BUCKET = "gatehouse-transfer-bench"
BODY = json.dumps({"dataset": "bench", "model_name": "denoise", "center": [1000, 2000, 3000]}).encode()


class _Parts(TransferService):
    """The stand-in, answering after its delay without writing the part's chunks."""

    @staticmethod
    def write_chunks(payload: dict) -> None:
        pass


def _call(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={**headers, "Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"{method} {path}: {response.status} {data}")
    return data


def _eight_parts_at_once(service) -> float:
    """The eight parts of a job POSTed at once straight to the stand-in: the floor."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from functions.transfer.main import part_requests

    requests_ = part_requests("gs://bench-data/volume", "denoise", [1000, 2000, 3000], f"gs://{BUCKET}/floor")
    began = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for response in pool.map(
            lambda r: requests.post(service.url, json=r, timeout=30), requests_.values()
        ):
            response.raise_for_status()
    return time.perf_counter() - began


def _until_done(port: int, headers: dict[str, str], job: str) -> None:
    while _call(port, "GET", f"/transfer/{job}", headers)["status"] == "running":
        time.sleep(0.01)


def _job_by_part_messages(port: int, headers: dict[str, str]) -> float:
    """POST -> done for a job recorded as POST /transfer records it, its parts published one
    message each, as before a delivery sent a job's parts at once (the worker still takes such
    messages, one part per delivery): the anchor of the same worker, emulator and load."""
    from common.config import settings
    from common.storage import collections, pubsub, store
    from functions.transfer.main import part_requests

    began = time.perf_counter()
    job = store.collection(collections.TRANSFER_JOBS).document()
    parts = part_requests("gs://bench-data/volume", "denoise", [1000, 2000, 3000], f"gs://{BUCKET}/{job.id}")
    batch = store.db().batch()
    batch.set(
        job, {"user": "owner@example.com", "dataset": "bench", "status": "running", "created_at": store.now()}
    )
    for key, request in parts.items():
        batch.set(
            job.collection(collections.TRANSFER_PARTS).document(key),
            {"request": request, "status": "pending", "attempts": 0, "error": None},
        )
    batch.commit()
    pubsub.publish_many(settings().transfer_topic, [{"job": job.id, "part": key} for key in parts])
    _until_done(port, headers, job.id)
    return time.perf_counter() - began


def _jobs(
    port: int, headers: dict[str, str], service=None
) -> tuple[list[float], list[float], list[float], list[float]]:
    """JOBS jobs through POST /transfer; with `service`, each interleaved with its floor and the
    same job published one message per part."""
    answers, done, floor, by_part = [], [], [], []
    for _ in range(JOBS):
        if service is not None:
            floor.append(_eight_parts_at_once(service))
            by_part.append(_job_by_part_messages(port, headers))
        began = time.perf_counter()
        job = _call(port, "POST", "/transfer", headers, BODY)["job"]
        answers.append(time.perf_counter() - began)
        _until_done(port, headers, job)
        done.append(time.perf_counter() - began)
    return answers, done, floor, by_part


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=20)[int(q * 20) - 1] if len(values) > 1 else values[0]


def run(env: dict[str, str], headers: dict[str, str], emulators) -> dict[str, float]:
    from common.storage import store
    from tools import workers

    service = _Parts().start()
    service.slow_seconds = SLOW_SECONDS
    env = {
        **env,
        "TRANSFER_FUNC": service.url,
        "TRANSFER_DEST": f"gs://{BUCKET}/volumes",
        "TRANSFER_TIMEOUT_SECONDS": "10",
        "TRANSFER_ATTEMPTS": "3",
    }
    os.environ.update(env)
    emulators.create_buckets(BUCKET)
    store.collection("datasets").document("bench").set(
        {"description": "bench", "location": "gs://bench-data/volume", "transfer": ["denoise"]}
    )
    worker = workers.serve(
        workers.WORKERS[0],
        emulators,
        min_backoff="0.1s",
        max_backoff="1s",
        max_delivery_attempts=5,
        ack_deadline_seconds=60,
    )
    fn = Function(env, headers, os.path.join(ROOT, "functions", "transfer", "main.py"))
    try:
        _call(fn.port, "GET", "/transfer?limit=1", headers)  # warm
        results: dict[str, float] = {}
        service.script = lambda offset, attempt: "slow"
        answers, done, floor, by_part = _jobs(fn.port, headers, service)
        results.update(
            {
                "answer_p50_ms": 1000 * statistics.median(answers),
                "answer_p95_ms": 1000 * _p(answers, 0.95),
                "done_p50_s": statistics.median(done),
                "done_p95_s": _p(done, 0.95),
                "done_min_s": min(done),
                "done_max_s": max(done),
                "jobs": JOBS,
                "eight_parts_at_once_p50_s": statistics.median(floor),
                "done_minus_floor_p50_s": statistics.median(d - f for d, f in zip(done, floor)),
                "done_one_message_per_part_p50_s": statistics.median(by_part),
                "done_vs_one_message_per_part_p50": statistics.median(d / b for d, b in zip(done, by_part)),
                "part_seconds_at_the_stand_in": SLOW_SECONDS,
            }
        )
        print(
            f"transfer done: p50 {results['done_p50_s']:.2f} s ({min(done):.2f}-{max(done):.2f} s, n={JOBS}); "
            f"the eight parts at once straight to the stand-in: p50 {results['eight_parts_at_once_p50_s']:.2f} s "
            f"({min(floor):.2f}-{max(floor):.2f} s); one message per part: p50 "
            f"{statistics.median(by_part):.2f} s ({min(by_part):.2f}-{max(by_part):.2f} s); goal: done <= 0.8 s",
            flush=True,
        )
        service.script = lambda offset, attempt: "fail" if offset == (0, 0, 0) and attempt == 1 else "slow"
        service.calls.clear()
        _, done, _, _ = _jobs(fn.port, headers)
        results["done_with_one_retry_p50_s"] = statistics.median(done)
        return results
    finally:
        fn.close()
        worker.stop()
        service.stop()
