"""transfer: the answer comes at once; the worker (through the Pub/Sub emulator's push
subscription) sends each part in the transfer network's wire format, retries failures, marks a
part that exhausts its attempts, and never counts a redelivery twice; the volume opens in
neuroglancer."""

import base64
import json
import threading
import time
from urllib.parse import unquote

import pytest
import requests

from common.storage import blobs, store
from tests.conftest import BUCKETS, OWNER
from tests.utils import acknowledged, assert_error, wait_until
from tools.transfer_standin import wire_format_problem

READER, STRANGER = "reader@example.com", "stranger@example.com"
BODY = {"dataset": "mb20", "model_name": "denoise", "center": [1000, 2000, 3000]}
GLBSTART = [872, 1872, 2872]  # center - 128
OFFSETS = [(x, y, z) for x in (0, 128) for y in (0, 128) for z in (0, 128)]
ATTEMPTS = 3  # TRANSFER_ATTEMPTS in tests/conftest.py


@pytest.fixture
def world(api):
    api.add_dataset("mb20", location="gs://em-data/mb20", transfer=["denoise"])
    api.add_dataset("nolocation", transfer=["denoise"])
    api.add_user(READER, datasets={"mb20": ["clio_read"], "nolocation": ["clio_read"]})


def _start(api, user=READER, body=BODY):
    r = api.post("/transfer", user=user, json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def _wait(api, job, user=READER, timeout=30.0, until=lambda job: job["status"] != "running"):
    deadline = time.monotonic() + timeout
    while True:
        body = api.get(f"/transfer/{job}", user=user).get_json()
        if until(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _finished(job):
    """The job has its final status and every part has finished."""
    return job["status"] != "running" and all(
        p["status"] in ("done", "failed") for p in job["parts"].values()
    )


def _objects(source):
    bucket, _, directory = source[len("precomputed://gs://") :].partition("/")
    return {
        b.name[len(directory) + 1 :]: b
        for b in blobs.client().list_blobs(blobs.bucket(bucket), prefix=directory + "/")
    }


def _calls(service, source, offset=None):
    dest = source[len("precomputed://") :] + "/8.0x8.0x8.0"
    return [
        c
        for c in service.calls
        if c["dest"] == dest
        and (offset is None or [s - g for s, g in zip(c["start"], c["glbstart"])] == list(offset))
    ]


def test_eight_parts_in_the_wire_format_fill_a_volume_neuroglancer_opens(api, world, transfer_service):
    started = _start(api)
    source = started["source"]
    assert source.startswith(f"precomputed://gs://{BUCKETS[2]}/volumes/")
    # addr: a neuroglancer link showing the volume as one image layer, centred in the cube
    base, _, state = started["addr"].partition("/#!")
    assert base == "https://neuroglancer-demo.appspot.com"
    state = json.loads(unquote(state))
    [layer] = state["layers"]
    assert layer["type"] == "image" and layer["source"] == source
    assert state["position"] == [128, 128, 128] and state["dimensions"]["x"] == [8e-9, "m"]

    job = _wait(api, started["job"])
    assert job["status"] == "done" and job["addr"] == started["addr"] and job["source"] == source
    assert all(
        p["status"] == "done" and p["attempts"] == 1 and p["error"] is None for p in job["parts"].values()
    )
    # the eight requests, exactly as the transfer network reads them (SPEC §3 transfer)
    calls = _calls(transfer_service, source)
    assert len(calls) == 8 and not transfer_service.refused
    for call in calls:
        assert set(call) == {"location", "glbstart", "start", "size", "model_name", "dest"}
        assert call["glbstart"] == GLBSTART  # the cube's first voxel, in every part
        assert call["size"] == [128, 128, 128] and call["model_name"] == "denoise"
        assert call["location"] == "gs://em-data/mb20"
        assert call["dest"] == f"{source[len('precomputed://') :]}/8.0x8.0x8.0"
    assert sorted(c["start"] for c in calls) == sorted(
        [g + o for g, o in zip(GLBSTART, off)] for off in OFFSETS
    )
    assert {k: p["start"] for k, p in job["parts"].items()}["128_0_128"] == [1000, 1872, 3000]

    # what neuroglancer reads: the info, and all 64 chunks of 64³ bytes
    objects = _objects(source)
    info = json.loads(objects.pop("info").download_as_bytes())
    assert info["data_type"] == "uint8" and info["num_channels"] == 1 and info["type"] == "image"
    [scale] = info["scales"]
    assert scale["resolution"] == [8, 8, 8] and scale["size"] == [256, 256, 256]
    assert scale["chunk_sizes"] == [[64, 64, 64]] and scale["encoding"] == "raw"
    expected = {
        f"{scale['key']}/{x}-{x + 64}_{y}-{y + 64}_{z}-{z + 64}"
        for x in range(0, 256, 64)
        for y in range(0, 256, 64)
        for z in range(0, 256, 64)
    }
    assert set(objects) == expected and len(expected) == 64
    assert all(b.size == 64**3 for b in objects.values())


HOLD = 5.0  # seconds the stand-in holds a part in `held_parts`
TIMEOUT = 3  # TRANSFER_TIMEOUT_SECONDS here (see `patient_worker`)


def _worker_settings(monkeypatch, **changes):
    """The transfer worker's settings with `changes` (it reads them at each delivery)."""
    import dataclasses

    from common import config
    from functions.transfer import worker

    changed = dataclasses.replace(config.load(), **changes)
    monkeypatch.setattr(worker, "settings", lambda: changed)


@pytest.fixture(autouse=True)
def patient_worker(monkeypatch):
    """An attempt may take TIMEOUT s here (1 s in the rest of the tests): one delivery writes a
    job's eight parts at once through the in-process stand-in, which took over a second on a
    loaded machine; a part that should time out hangs longer than this."""
    _worker_settings(monkeypatch, transfer_timeout_seconds=TIMEOUT)


@pytest.fixture
def held_parts(transfer_service, monkeypatch):
    """The stand-in holds every part until the test sets the event (HOLD s at most), and the
    worker waits as long for it: what must be true while parts are in flight is checked then,
    however loaded the machine is (a fixed 0.5 s part was sometimes over before the check)."""
    release = threading.Event()
    _worker_settings(monkeypatch, transfer_timeout_seconds=HOLD + 5)

    def script(offset, attempt):
        release.wait(HOLD)
        return "ok"

    transfer_service.script = script
    yield release
    release.set()


def test_the_answer_comes_before_any_part_is_written(api, world, held_parts):
    api.get("/transfer", user=READER)  # the function's instance is warm, as a second request finds it
    began = time.monotonic()
    started = _start(api)
    elapsed = time.monotonic() - began
    job = api.get(f"/transfer/{started['job']}", user=READER).get_json()
    assert elapsed < HOLD, elapsed  # it did not wait for the parts, which are held longer
    assert job["status"] == "running" and not any(p["status"] == "done" for p in job["parts"].values())
    assert set(_objects(started["source"])) == {"info"}  # neuroglancer can open it already
    held_parts.set()
    assert _wait(api, started["job"])["status"] == "done"
    assert len(_objects(started["source"])) == 65


def test_a_part_failing_twice_then_succeeding_ends_done(api, world, transfer_service):
    # part 0_0_0 answers 500 twice, then 200; part 128_128_128 does not answer in time once
    def script(offset, attempt):
        if offset == (0, 0, 0) and attempt <= 2:
            return "fail"
        if offset == (128, 128, 128) and attempt == 1:
            return "hang"
        return "ok"

    transfer_service.script = script
    transfer_service.hang_seconds = TIMEOUT + 0.3
    started = _start(api)
    job = _wait(api, started["job"])
    assert job["status"] == "done", job
    assert job["parts"]["0_0_0"] == {"start": GLBSTART, "status": "done", "attempts": 3, "error": None}
    assert job["parts"]["128_128_128"]["attempts"] == 2 and job["parts"]["128_128_128"]["status"] == "done"
    assert sum(p["attempts"] for p in job["parts"].values()) == 6 + 3 + 2
    assert len(_calls(transfer_service, started["source"], (0, 0, 0))) == 3


def test_a_part_that_always_fails_fails_the_job_naming_it(api, world, transfer_service, workers):
    transfer_service.script = lambda offset, attempt: "fail" if offset == (0, 128, 0) else "ok"
    started = _start(api)
    job = _wait(api, started["job"], until=_finished)
    assert job["status"] == "failed" and job["failed_parts"] == ["0_128_0"]
    assert "part 0_128_0 (3 attempts, last: HTTP 500)" in job["error"]
    assert job["parts"]["0_128_0"] == {
        "start": [872, 2000, 2872],
        "status": "failed",
        "attempts": ATTEMPTS,
        "error": "HTTP 500",
    }
    assert sum(p["status"] == "done" for p in job["parts"].values()) == 7
    # The job's message was acknowledged once that part had failed for good, so Pub/Sub sends it
    # no more: the part is sent no more (the other parts were done in its first delivery).
    message = {"job": started["job"]}
    wait_until(lambda: acknowledged(workers["transfer"], payload=message), "the last delivery acknowledged")
    answers = [d.status for d in workers["transfer"].answered if d.payload == message]
    assert answers == [500] * (ATTEMPTS - 1) + [200], answers
    assert len(_calls(transfer_service, started["source"], (0, 128, 0))) == ATTEMPTS


def test_a_part_that_never_answers_in_time_fails_after_its_attempts(api, world, transfer_service):
    transfer_service.script = lambda offset, attempt: "hang" if offset == (0, 0, 128) else "ok"
    transfer_service.hang_seconds = TIMEOUT + 0.2
    job = _wait(api, _start(api)["job"])
    assert job["status"] == "failed" and job["failed_parts"] == ["0_0_128"]
    assert job["parts"]["0_0_128"]["error"] == f"no answer within {TIMEOUT} s"
    assert job["parts"]["0_0_128"]["attempts"] == ATTEMPTS


def _push(url, message, message_id="1", **extra):
    """One delivery as the Pub/Sub emulator pushes it."""
    data = base64.b64encode(json.dumps(message).encode()).decode()
    return requests.post(
        url,
        json={
            "message": {"data": data, "messageId": message_id, "attributes": {}},
            "subscription": "projects/gatehouse-test/subscriptions/redelivery",
            **extra,
        },
        timeout=10,
    )


def test_a_redelivered_message_counts_nothing(api, world, transfer_service, workers):
    from common.storage import pubsub

    transfer_service.script = lambda offset, attempt: "fail" if offset == (128, 0, 0) else "ok"
    started = _start(api)
    before = _wait(api, started["job"], until=_finished)
    calls = len(_calls(transfer_service, started["source"]))
    url = workers["transfer"].url
    # the same messages again: pushed straight at the worker, and published through Pub/Sub; the
    # job's own, and messages naming one part (as published before a job's parts went out whole)
    published = []
    for message in (
        {"job": started["job"]},
        *({"job": started["job"], "part": k} for k in ("0_0_0", "128_0_0")),
    ):
        assert _push(url, message).status_code == 200
        published.append(pubsub.publish("gatehouse-transfer-parts", message))
    wait_until(
        lambda: all(acknowledged(workers["transfer"], message_id=m) for m in published),
        "the published messages delivered and acknowledged",
    )
    after = api.get(f"/transfer/{started['job']}", user=READER).get_json()
    assert after["parts"] == before["parts"] and after["status"] == before["status"] == "failed"
    assert len(_calls(transfer_service, started["source"])) == calls == 7 + ATTEMPTS
    # a message that names no part is acknowledged (no redelivery can fix it), a gone job too
    assert _push(url, {"nothing": 1}).status_code == 200
    assert _push(url, {"job": "nosuchjob", "part": "0_0_0"}).status_code == 200


def test_a_second_delivery_while_a_part_is_being_sent_waits(
    api, world, transfer_service, workers, held_parts
):
    started = _start(api)
    _wait(api, started["job"], until=lambda j: j["parts"]["0_0_0"]["status"] == "sending")
    # a duplicate of an in-flight message is refused (redelivered later), never sent twice: the
    # job's message, and one naming the part
    assert _push(workers["transfer"].url, {"job": started["job"]}).status_code == 500
    assert _push(workers["transfer"].url, {"job": started["job"], "part": "0_0_0"}).status_code == 500
    held_parts.set()
    job = _wait(api, started["job"])
    assert job["status"] == "done" and all(p["attempts"] == 1 for p in job["parts"].values())
    assert len(_calls(transfer_service, started["source"])) == 8


class _InFlight:
    """A stand-in script that holds each part `seconds` and counts the parts in flight at once."""

    def __init__(self, seconds: float):
        self.seconds, self.now, self.peak = seconds, 0, 0
        self._lock = threading.Lock()

    def __call__(self, offset, attempt):
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(self.seconds)
        with self._lock:
            self.now -= 1
        return "ok"


def test_one_delivery_sends_the_jobs_parts_at_once(api, world, transfer_service, workers):
    """The job's one message: its first delivery sends all eight parts concurrently (the Pub/Sub
    emulator pushes two messages at a time, so one message per part took four rounds)."""
    transfer_service.script = in_flight = _InFlight(0.5)
    started = _start(api)
    job = _wait(api, started["job"])
    assert job["status"] == "done" and all(p["attempts"] == 1 for p in job["parts"].values())
    assert in_flight.peak > 3, in_flight.peak  # eight at once, but for a loaded machine's stragglers
    message = {"job": started["job"]}
    wait_until(lambda: acknowledged(workers["transfer"], payload=message), "the job's message acknowledged")
    assert [d.status for d in workers["transfer"].answered if d.payload == message] == [200]


def test_parts_in_flight_are_bounded_and_the_rest_left_to_the_next_delivery(
    api, world, transfer_service, workers, monkeypatch
):
    """TRANSFER_PARALLEL_PARTS bounds the parts in flight; parts a delivery could not start within
    its window go to the next delivery of the job's message, each part still sent once."""
    from functions.transfer import worker

    _worker_settings(monkeypatch, transfer_parallel_parts=3, transfer_timeout_seconds=TIMEOUT)
    transfer_service.script = in_flight = _InFlight(0.3)
    assert _wait(api, _start(api)["job"])["status"] == "done"
    assert 2 <= in_flight.peak <= 3, in_flight.peak

    monkeypatch.setattr(worker, "START_WINDOW_SECONDS", 0)  # only the first three start per delivery
    started = _start(api)
    job = _wait(api, started["job"])
    assert job["status"] == "done" and all(p["attempts"] == 1 for p in job["parts"].values())
    assert len(_calls(transfer_service, started["source"])) == 8
    message = {"job": started["job"]}
    wait_until(lambda: acknowledged(workers["transfer"], payload=message), "the job's message acknowledged")
    assert [d.status for d in workers["transfer"].answered if d.payload == message] == [500, 500, 200]


def test_the_stand_in_refuses_another_wire_format(transfer_service):
    """The format Gatehouse used to send: glbstart the part's voxel, start its offset, dest the
    volume root. The real service reads it differently; the stand-in refuses it."""
    old = {
        "location": "gs://em-data/mb20",
        "glbstart": [1000, 1872, 2872],
        "start": [128, 0, 0],
        "size": [128, 128, 128],
        "model_name": "denoise",
        "dest": "gs://b/volumes/abc",
    }
    assert wire_format_problem(old)
    r = requests.post(transfer_service.url, json=old, timeout=5)
    assert r.status_code == 400 and transfer_service.refused == [old] and not transfer_service.calls
    good = {
        **old,
        "glbstart": [872, 1872, 2872],
        "start": [1000, 1872, 2872],
        "dest": "gs://b/volumes/abc/8.0x8.0x8.0",
    }
    assert wire_format_problem(good) is None
    for broken in (
        {**good, "size": [64, 64, 64]},
        {**good, "start": [873, 1872, 2872]},
        {**good, "location": "https://example.org/v"},
        {**good, "extra": 1},
        {**good, "glbstart": [872.0, 1872, 2872]},
    ):
        assert wire_format_problem(broken), broken


def test_listing_own_jobs_newest_first_admins_all(api, world):
    api.add_user("other@example.com", datasets={"mb20": ["clio_read"]})
    mine = [_start(api)["job"] for _ in range(3)]
    theirs = _start(api, user="other@example.com")["job"]
    listed = api.get("/transfer", user=READER).get_json()
    assert [j["id"] for j in listed] == mine[::-1]
    assert all(j["user"] == READER and "parts" not in j and j["addr"].startswith("https://") for j in listed)
    # paged
    r = api.get("/transfer?limit=2", user=READER)
    assert [j["id"] for j in r.get_json()] == mine[:0:-1] and 'rel="next"' in r.headers["Link"]
    cursor = r.headers["Link"].split("cursor=")[1].split(">")[0]
    r = api.get(f"/transfer?limit=2&cursor={cursor}", user=READER)
    assert [j["id"] for j in r.get_json()] == mine[:1] and "Link" not in r.headers
    # admins see everyone's; a stranger sees none
    assert [j["id"] for j in api.get("/transfer", user=OWNER).get_json()] == [theirs, *mine[::-1]]
    assert api.get("/transfer", user=STRANGER).get_json() == []
    assert_error(api.get("/transfer?limit=0", user=READER), 400, "bad_request")
    assert_error(api.get("/transfer?cursor=!!", user=READER), 400, "bad_request")


def test_validation_and_roles(api, world):
    assert_error(api.post("/transfer", user=STRANGER, json=BODY), 404, "not_found")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "model_name": "other"}), 400, "bad_request")
    assert_error(
        api.post("/transfer", user=READER, json={**BODY, "dataset": "nolocation"}), 400, "bad_request"
    )
    assert_error(api.post("/transfer", user=READER, json={**BODY, "center": [1, 2]}), 422, "validation_error")
    assert_error(
        api.post("/transfer", user=READER, json={**BODY, "center": [1.0, 2, 3]}), 422, "validation_error"
    )
    assert_error(api.post("/transfer", user=READER, json={**BODY, "extra": 1}), 422, "validation_error")
    # The cube reaches 128 voxels below its centre and 127 above: it must stay within int32.
    for center in ([2**31 - 127, 0, 0], [0, -(2**31) + 127, 0], [0, 0, 2**31 - 1]):
        assert_error(
            api.post("/transfer", user=READER, json={**BODY, "center": center}), 422, "validation_error"
        )
    assert not store.collection("transfer_jobs").get()
    edge = _start(api, body={**BODY, "center": [2**31 - 128, -(2**31) + 128, 0]})["job"]
    parts = api.get(f"/transfer/{edge}", user=READER).get_json()["parts"]
    assert max(p["start"][0] for p in parts.values()) + 127 == 2**31 - 1
    assert min(p["start"][1] for p in parts.values()) == -(2**31)
    job = _start(api)["job"]
    assert_error(api.get(f"/transfer/{job}", user=STRANGER), 404, "not_found")
    assert api.get(f"/transfer/{job}", user=OWNER).status_code == 200
    assert_error(api.get("/transfer/nosuchjob", user=READER), 404, "not_found")


def test_a_location_the_network_cannot_read_is_refused(api, world, transfer_service):
    """A dataset written before locations were checked: its location never reaches the network."""
    store.collection("datasets").document("mb20").update({"location": "file:///etc/passwd"})
    from common import cache

    cache.clear_all()
    body = assert_error(api.post("/transfer", user=READER, json=BODY), 422, "validation_error")
    assert "gs://bucket/path" in body["message"]
    assert not store.collection("transfer_jobs").get() and not transfer_service.calls


@pytest.mark.parametrize(
    "location", ["dvid://emdata.example.org/a1b2/grayscale", "gs://", "gs://em-data", "https://h/v"]
)
def test_a_dataset_location_that_is_not_a_readable_gs_path_is_422_naming_it(
    api, world, transfer_service, location
):
    """Any source is a valid location (metadata, as in clio); transfer sends only gs://bucket/path."""
    assert api.put("/datasets/mb20", user=OWNER, json={"location": location}).status_code == 200
    body = assert_error(api.post("/transfer", user=READER, json=BODY), 422, "validation_error")
    assert repr(location) in body["message"] and "gs://bucket/path" in body["message"]
    assert not store.collection("transfer_jobs").get() and not transfer_service.calls
    api.put("/datasets/mb20", user=OWNER, json={"location": "precomputed://gs://em-data/mb20"})
    assert _start(api)["job"]


def test_unconfigured_transfer_is_503(api, world, monkeypatch):
    import dataclasses

    from common import config
    from common.web import http

    monkeypatch.setattr(http, "settings", lambda: dataclasses.replace(config.load(), transfer_func=""))
    monkeypatch.delitem(api._clients, "transfer", raising=False)  # a fresh instance reads the settings
    r = api.post("/transfer", user=READER, json=BODY)
    body = assert_error(r, 503, "unavailable")
    assert r.headers["Retry-After"] and "TRANSFER_FUNC" in body["message"]


def test_a_queue_that_refuses_the_parts_is_503_and_the_job_says_so(api, world, monkeypatch, transfer_service):
    import dataclasses

    from common import config
    from common.web import http

    monkeypatch.setattr(
        http, "settings", lambda: dataclasses.replace(config.load(), transfer_topic="no-such-topic")
    )
    monkeypatch.delitem(api._clients, "transfer", raising=False)
    r = api.post("/transfer", user=READER, json=BODY)
    assert_error(r, 503, "unavailable")
    [job] = store.collection("transfer_jobs").get()
    assert job.get("status") == "failed" and "could not be queued" in job.get("error")
    assert not transfer_service.calls


def test_a_message_the_worker_keeps_refusing_ends_on_the_dead_letter_topic(api, world, emulators):
    """The subscription's dead-letter policy (5 deliveries in tests): a part stuck "sending"
    (its sender still within its time) refuses every delivery, so the message is dead-lettered."""
    from common.storage import pubsub

    emulator = f"http://{emulators.pubsub_host}/v1/projects/{emulators.project}"
    requests.put(
        f"{emulator}/subscriptions/dead-letters-seen",
        timeout=10,
        json={"topic": f"projects/{emulators.project}/topics/gatehouse-transfer-parts-dead-letter"},
    )
    try:
        job = store.collection("transfer_jobs").document("stuckjob")
        job.set({"user": READER, "status": "running", "created_at": store.now()})
        job.collection("transfer_parts").document("0_0_0").set(
            {
                "request": {"start": GLBSTART},
                "status": "sending",
                "attempts": 1,
                "error": None,
                "claimed_at": store.now(),
            }
        )
        pubsub.publish("gatehouse-transfer-parts", {"job": "stuckjob", "part": "0_0_0"})
        deadline, received = time.monotonic() + 20, []
        while not received and time.monotonic() < deadline:
            r = requests.post(
                f"{emulator}/subscriptions/dead-letters-seen:pull",
                json={"maxMessages": 10, "returnImmediately": True},
                timeout=10,
            )
            received = [
                m
                for m in r.json().get("receivedMessages", [])
                if json.loads(base64.b64decode(m["message"]["data"])) == {"job": "stuckjob", "part": "0_0_0"}
            ]
            time.sleep(0.1)
        [message] = received
        assert message["message"]["attributes"]["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
        assert job.collection("transfer_parts").document("0_0_0").get().get("attempts") == 1  # never sent
    finally:
        requests.delete(f"{emulator}/subscriptions/dead-letters-seen", timeout=10)


def test_jobs_of_a_dataset_this_deployment_does_not_serve_are_hidden(api, world, monkeypatch):
    import dataclasses
    import re

    from common import config
    from common.storage import datasets

    job = _start(api)["job"]
    monkeypatch.setattr(
        datasets, "settings", lambda: dataclasses.replace(config.load(), expose=(re.compile("dataset:pub"),))
    )
    assert api.get("/transfer", user=OWNER).get_json() == []
    assert_error(api.get(f"/transfer/{job}", user=OWNER), 404, "not_found")


def test_a_job_answers_its_public_model_not_the_stored_document(api, world):
    """GET /transfer/{job} and GET /transfer answer TransferJob*Public: a field written into the
    stored job by something else (here directly in Firestore) is not shown, listed or streamed."""
    job = _start(api)["job"]
    store.collection("transfer_jobs").document(job).update({"internal_note": "not for callers"})
    got = api.get(f"/transfer/{job}", user=READER).get_json()
    assert got["id"] == job and len(got["parts"]) == 8 and "internal_note" not in got
    assert got["created_at"].endswith("Z")  # datetimes still go out as the encoder writes them
    for listing in ("/transfer", "/transfer?limit=5"):  # streamed item by item, and one page
        [listed] = api.get(listing, user=READER).get_json()
        assert listed["id"] == job and "internal_note" not in listed and "parts" not in listed


def test_jobs_of_a_dataset_recorded_without_created_at_are_listed(api, world):
    """An older dataset record has no created_at: its jobs are its own (listed, read), never a 500."""
    store.collection("datasets").document("old").set({"description": "made before created_at"})
    store.collection("transfer_jobs").document("oldjob").set(
        {"user": READER, "dataset": "old", "status": "done", "created_at": store.now()}
    )
    listed = api.get("/transfer", user=OWNER)
    assert listed.status_code == 200, listed.get_data(as_text=True)
    assert [job["id"] for job in listed.get_json()] == ["oldjob"]
    got = api.get("/transfer/oldjob", user=OWNER)
    assert got.status_code == 200 and got.get_json()["dataset"] == "old", got.get_data(as_text=True)


def test_deleting_a_dataset_purges_its_jobs_recorded_without_created_at(api, world):
    """An older job record has no created_at: the dataset's deletion purges it (never a KeyError)."""
    store.collection("transfer_jobs").document("oldjob").set(
        {"user": READER, "dataset": "mb20", "status": "done"}
    )
    r = api.delete("/datasets", user=OWNER, json=["mb20"])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert all(d["status"] == "done" for d in r.get_json()["deletions"]), r.get_json()
    assert not store.collection("transfer_jobs").document("oldjob").get().exists


def _part_to_send(job_id: str) -> None:
    """A job of READER's with one part (0_0_0) in the wire format, written straight into Firestore."""
    from tests.utils import load_function

    request = load_function("transfer").part_requests(
        "gs://em-data/mb20", "denoise", BODY["center"], f"gs://{BUCKETS[2]}/volumes/{job_id}"
    )["0_0_0"]
    job = store.collection("transfer_jobs").document(job_id)
    job.set({"user": READER, "dataset": "mb20", "status": "running", "created_at": store.now()})
    job.collection("transfer_parts").document("0_0_0").set(
        {"request": request, "status": "pending", "attempts": 0, "error": None}
    )


def _delivery_lines(err: str, message_id: str) -> list[dict]:
    """The worker's lines for one message; nothing else on stderr may hold a traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    loose = [line for line in lines if not line.startswith("{")]
    assert not any("Traceback" in line for line in loose), err
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    return [e for e in entries if e.get("message_id") == message_id]


def test_a_part_deleted_while_it_is_sent_is_acknowledged_in_one_line(
    world, transfer_service, workers, capsys
):
    """The job went with its dataset while the part was being sent (DELETE /datasets during a
    transfer): the worker's last write finds no part, which is done, not a crash."""
    _part_to_send("gonejob")

    def delete_the_job(offset, attempt):
        job = store.collection("transfer_jobs").document("gonejob")
        job.collection("transfer_parts").document("0_0_0").delete()
        job.delete()
        return "ok"

    transfer_service.script = delete_the_job
    capsys.readouterr()
    r = _push(workers["transfer"].url, {"job": "gonejob", "part": "0_0_0"}, "gone-1", deliveryAttempt=2)
    assert r.status_code == 200, r.text
    [line] = _delivery_lines(capsys.readouterr().err, "gone-1")
    assert (line["severity"], line["outcome"], line["status"], line["attempt"]) == ("INFO", "gone", 200, 2)
    assert (line["function"], line["worker"]) == ("transfer", "work")
    assert "deleted meanwhile" in line["reason"] and line["request_id"] and line["latency_ms"] > 0
    assert line["message"].startswith("transfer.work gone ") and "stack_trace" not in line


def test_a_worker_that_fails_logs_its_stack_in_one_line_and_answers_500(world, workers, capsys):
    """An unexpected failure (here a part record without `attempts`): one structured ERROR line
    with the stack, never Flask's traceback, and a 500 in the error envelope so Pub/Sub retries."""
    from google.cloud import firestore

    _part_to_send("brokenjob")
    part = store.collection("transfer_jobs").document("brokenjob").collection("transfer_parts")
    part.document("0_0_0").update({"attempts": firestore.DELETE_FIELD})
    capsys.readouterr()
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = requests.post(
        workers["transfer"].url,
        json={
            "message": {
                "data": base64.b64encode(b'{"job": "brokenjob", "part": "0_0_0"}').decode(),
                "messageId": "broken-1",
                "attributes": {},
            },
            "subscription": "projects/gatehouse-test/subscriptions/broken",
        },
        headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        timeout=10,
    )
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "internal" and body["request_id"] and "Traceback" not in r.text
    [line] = _delivery_lines(capsys.readouterr().err, "broken-1")
    assert (line["severity"], line["outcome"], line["status"]) == ("ERROR", "failed", 500)
    assert line["request_id"] == body["request_id"]
    assert line["logging.googleapis.com/trace"].endswith(f"/traces/{trace}")
    assert "KeyError: 'attempts'" in line["stack_trace"]


def test_a_delivery_that_outlived_its_lease_leaves_the_part_to_the_one_that_took_it_over(world):
    """Only the delivery that holds a part writes how its attempt went: an earlier one, whose
    lease ran out and whose part a later delivery claimed, writes nothing and is delivered again
    (then it finds the later attempt's outcome)."""
    from functions.transfer import worker

    _part_to_send("takenjob")
    part = (
        store.collection("transfer_jobs").document("takenjob").collection("transfer_parts").document("0_0_0")
    )
    part.update({"status": "sending", "attempts": 2, "claimed_at": store.now()})
    with pytest.raises(worker.TryAgain, match="claimed by another delivery"):
        worker._record(part, 1, {"status": "failed", "error": "HTTP 500", "finished_at": store.now()})
    assert (part.get().get("status"), part.get().get("error")) == ("sending", None)
    worker._record(part, 2, {"status": "done", "error": None, "finished_at": store.now()})
    assert part.get().get("status") == "done"
