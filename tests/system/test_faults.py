"""Faults that heal: a backend that dies or hangs mid-run gets a bounded 503 with Retry-After
and the error envelope, nothing is written beyond what the answer reports, and the same
instance serves normally once the backend is back, without a restart.

These run on emulators of their own (the session's stay untouched) behind one gateway process
(tools/gateway.py), whose backend budget is BUDGET seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import requests

from common.storage.commits import CONCURRENT_COMMITS
from tests.conftest import BUCKETS, OWNER, ROOT
from tools.emulators import Emulators, free_port

BUDGET = 4.0  # BACKEND_DEADLINE_SECONDS of the gateway under test
BOUND = BUDGET + 8  # the budget, the last retry pause (Cloud Storage: up to 4 s) and a loaded machine
PROJECT = "gatehouse-faults"
TOPIC = "faults-transfer-parts"


class Stack:
    def __init__(self, emulators: Emulators, base: str, gateway: subprocess.Popen, log: str, token: str):
        self.emulators, self.base, self.gateway, self.log, self.token = emulators, base, gateway, log, token

    def call(self, method: str, path: str, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kw)

    def timed(self, method: str, path: str, **kw) -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = self.call(method, path, **kw)
        return response, time.monotonic() - started

    def wait_healthy(self, path: str = "/datasets", timeout: float = 20) -> float:
        """Seconds until `path` answers 200 again."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.call("GET", path).status_code == 200:
                return time.monotonic() - started
            time.sleep(0.2)
        raise AssertionError(f"{path} did not recover within {timeout}s")

    def firestore(self, method: str, path: str, **kw) -> requests.Response:
        url = f"http://{self.emulators.firestore_host}/v1/projects/{PROJECT}/databases/(default)/{path}"
        return requests.request(method, url, timeout=10, **kw)


@pytest.fixture(scope="module")
def stack(workdir, test_env, api):
    emulators = Emulators(project=PROJECT, log_dir=os.path.join(workdir, "faults")).start()
    gateway = None
    try:
        emulators.create_buckets(*BUCKETS)
        emulators.create_topic(TOPIC)
        port = free_port()
        env = {
            **os.environ,
            **test_env,
            **emulators.env,
            "PYTHONPATH": ROOT,
            "BACKEND_DEADLINE_SECONDS": str(BUDGET),
            "TRANSFER_TOPIC": TOPIC,
        }
        log = os.path.join(workdir, "faults", "gateway.log")
        with open(log, "ab") as out:
            gateway = subprocess.Popen(
                [sys.executable, "-m", "tools.gateway", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack = Stack(emulators, f"http://127.0.0.1:{port}", gateway, log, api.token(OWNER))
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(stack.base + "/roles/_health", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert gateway.poll() is None and time.monotonic() < deadline, open(log).read()[-2000:]
            time.sleep(0.1)
        stack.wait_healthy(timeout=60)  # a fresh emulator's first answers take seconds (JIT)
        yield stack
    finally:
        if gateway is not None:
            os.killpg(gateway.pid, signal.SIGTERM)
            gateway.wait(timeout=10)
        emulators.stop()


def _dataset(stack: Stack, name: str = "faulty") -> None:
    body = {name: {"description": "d", "location": "gs://em-data/faulty", "transfer": ["denoise"]}}
    assert stack.call("POST", "/datasets", json=body).status_code == 200


def _assert_unavailable(stack: Stack, response: requests.Response, elapsed: float) -> dict:
    assert response.status_code == 503, (response.text, open(stack.log).read()[-3000:])
    assert elapsed < BOUND, f"answered after {elapsed:.1f}s"
    body = response.json()
    assert set(body) >= {"error", "message", "request_id"} and body["error"] == "unavailable"
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert int(response.headers["Retry-After"]) >= 1
    assert "Traceback" not in response.text and "grpc" not in response.text.lower()
    return body


def test_firestore_gone_answers_503_in_bounded_time_and_the_same_instance_recovers(stack):
    _dataset(stack)
    assert stack.call("GET", "/datasets").status_code == 200
    emulators = stack.emulators
    port = emulators.ports["firestore"]
    emulators.stop_one("firestore")
    try:
        # (GET /datasets is not here: an instance answers it from its 30 s cache of the records.)
        for method, path, body in (
            ("GET", "/users", None),
            ("POST", "/datasets", {"more": {"description": "d"}}),
            ("GET", "/annotations/v2/faulty", None),
        ):
            response, elapsed = stack.timed(method, path, json=body)
            _assert_unavailable(stack, response, elapsed)
    finally:
        emulators.restart("firestore")
    assert emulators.ports["firestore"] == port
    # The same gateway process: its clients reconnect on their own (no restart, no new client).
    assert stack.wait_healthy() < 10
    assert stack.gateway.poll() is None
    _dataset(stack, "after")  # the emulator came back empty; writes work again
    assert "after" in stack.call("GET", "/datasets").json()


def test_storage_gone_answers_503_and_a_transfer_writes_no_job(stack):
    _dataset(stack)
    emulators = stack.emulators
    assert stack.call("GET", "/datasets/faulty/attachments").status_code == 200
    jobs_before = stack.call("GET", "/transfer").json()
    emulators.stop_one("fake-gcs")
    try:
        response, elapsed = stack.timed("GET", "/datasets/faulty/attachments")
        _assert_unavailable(stack, response, elapsed)
        transfer = {"dataset": "faulty", "model_name": "denoise", "center": [500, 500, 500]}
        response, elapsed = stack.timed("POST", "/transfer", json=transfer)
        _assert_unavailable(stack, response, elapsed)
        # The volume could not be made, so no job was written (nothing to clean up, nothing queued).
        assert stack.call("GET", "/transfer").json() == jobs_before
    finally:
        emulators.restart("fake-gcs")
        emulators.create_buckets(*BUCKETS)  # the memory backend came back empty
    assert stack.wait_healthy("/datasets/faulty/attachments") < 10
    response = stack.call("POST", "/transfer", json=transfer)
    assert response.status_code == 200, response.text
    assert len(stack.call("GET", "/transfer").json()) == len(jobs_before) + 1


def test_pubsub_gone_fails_the_transfer_job_it_reports(stack):
    _dataset(stack)
    emulators = stack.emulators
    emulators.stop_one("pubsub")
    try:
        transfer = {"dataset": "faulty", "model_name": "denoise", "center": [500, 500, 500]}
        response, elapsed = stack.timed("POST", "/transfer", json=transfer)
        _assert_unavailable(stack, response, elapsed)
        failed = [j for j in stack.call("GET", "/transfer").json() if j["status"] == "failed"]
        assert failed and "could not be queued" in failed[-1]["error"]
    finally:
        emulators.restart("pubsub")
        emulators.create_topic(TOPIC)
    assert stack.call("POST", "/transfer", json=transfer).status_code == 200


def _stored_keys(stack: Stack, limit: int | None = None) -> set[str]:
    query: dict = {
        "structuredQuery": {
            "from": [{"collectionId": "v2_annotations", "allDescendants": True}],
            "select": {"fields": [{"fieldPath": "key"}]},
        }
    }
    if limit is not None:
        query["structuredQuery"]["limit"] = limit
    rows = stack.firestore("POST", "documents:runQuery", json=query).json()
    return {row["document"]["fields"]["key"]["stringValue"] for row in rows if "document" in row}


def test_bulk_write_cut_short_by_a_hung_store_names_what_was_written(stack):
    """The emulator freezes (SIGSTOP) after the first commit of a bulk write: the request gives
    up within its budget and answers with the keys written and not written; every key it calls
    written is stored, and nothing beyond the commits that were in flight (several run at once,
    common.storage.commits)."""
    _dataset(stack)
    # As many as one request may write (20 commits), each with a note of 1,200 bytes: with 4
    # commits in flight at once, smaller writes were all stored before the store could be frozen.
    note = "n" * 1200
    points = [{"kind": "point", "pos": [i, 0, 0], "prop": {"note": note}} for i in range(10_000)]
    keys = [f"Pt{i}_0_0" for i in range(10_000)]
    answer: dict = {}

    def write():
        started = time.monotonic()
        answer["response"] = stack.call("POST", "/annotations/v2/faulty", json=points)
        answer["elapsed"] = time.monotonic() - started

    writer = threading.Thread(target=write)
    writer.start()
    firestore = stack.emulators.named["firestore"]
    try:
        while not _stored_keys(stack, limit=1):  # the first commit has landed (asked cheaply)
            assert writer.is_alive(), answer["response"].text
            time.sleep(0.02)
        os.killpg(firestore.pid, signal.SIGSTOP)
        writer.join(timeout=BOUND + 5)
    finally:
        os.killpg(firestore.pid, signal.SIGCONT)
    assert not writer.is_alive()
    body = _assert_unavailable(stack, answer["response"], answer["elapsed"])
    written, not_written = body["details"]["written"], body["details"]["not_written"]
    # `written` may be empty: the store can freeze after it took the first commit, before its answer.
    assert not_written and sorted(written + not_written) == sorted(keys)
    assert written == [k for k in keys if k in set(written)]  # each list in request order
    stored = _stored_keys(stack)
    assert set(written) <= stored
    # Beyond what was reported, at most the commits the store took as it froze, 499 annotations
    # each (a retry of the same request is safe: the writes are idempotent).
    in_flight = stored - set(written)
    assert in_flight <= set(not_written) and len(in_flight) <= CONCURRENT_COMMITS * 499
    assert stack.wait_healthy() < 10
