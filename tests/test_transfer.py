"""transfer: the info and chunks of the volume exist; failures are retried or reported."""
import json

import pytest

from common import blobs
from tests.conftest import BUCKETS, OWNER
from tests.utils import assert_error

READER, STRANGER = "reader@example.com", "stranger@example.com"
BODY = {"dataset": "mb20", "model_name": "denoise", "center": [1000, 2000, 3000]}


@pytest.fixture
def world(api):
    api.add_dataset("mb20", location="gs://em/mb20", transfer=["denoise"])
    api.add_dataset("nolocation", transfer=["denoise"])
    api.add_user(READER, datasets={"mb20": ["clio_read"], "nolocation": ["clio_read"]})


def _objects(volume):
    bucket, _, directory = volume[len("gs://"):].partition("/")
    return {b.name[len(directory) + 1:]: b for b in blobs.client().list_blobs(blobs.bucket(bucket), prefix=directory + "/")}


def test_transfer_writes_a_volume_neuroglancer_can_open(api, world, transfer_service):
    r = api.post("/transfer", user=READER, json=BODY)
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["addr"].startswith(f"precomputed://gs://{BUCKETS[2]}/volumes/")
    objects = _objects(body["addr"][len("precomputed://"):])
    info = json.loads(objects.pop("info").download_as_bytes())
    assert info["data_type"] == "uint8" and info["num_channels"] == 1 and info["type"] == "image"
    [scale] = info["scales"]
    assert scale["resolution"] == [8, 8, 8] and scale["size"] == [256, 256, 256]
    assert scale["chunk_sizes"] == [[64, 64, 64]] and scale["encoding"] == "raw"
    # every 64³ chunk of the 256³ volume, each of 64³ bytes
    expected = {f"{scale['key']}/{x}-{x + 64}_{y}-{y + 64}_{z}-{z + 64}"
                for x in range(0, 256, 64) for y in range(0, 256, 64) for z in range(0, 256, 64)}
    assert set(objects) == expected
    assert all(b.size == 64 ** 3 for b in objects.values())
    # the eight parts, each sent once, with the spec's fields
    assert len(transfer_service.calls) == 8
    starts = sorted(tuple(c["start"]) for c in transfer_service.calls)
    assert starts == sorted((x, y, z) for x in (0, 128) for y in (0, 128) for z in (0, 128))
    call = next(c for c in transfer_service.calls if c["start"] == [128, 0, 0])
    assert call["glbstart"] == [1000, 1872, 2872] and call["size"] == [128, 128, 128]
    assert call["location"] == "gs://em/mb20" and call["model_name"] == "denoise"
    assert call["dest"] == body["addr"][len("precomputed://"):]
    job = api.get(f"/transfer/{body['job']}", user=READER).get_json()
    assert job["status"] == "done" and all(p["status"] == "done" and p["attempts"] == 1 for p in job["parts"].values())


def test_failures_are_retried(api, world, transfer_service):
    # part 0_0_0 answers 500 twice, then 200; part 128_128_128 times out once
    def script(start, attempt):
        if start == (0, 0, 0) and attempt <= 2:
            return "fail"
        if start == (128, 128, 128) and attempt == 1:
            return "hang"
        return "ok"
    transfer_service.script = script
    transfer_service.hang_seconds = 1.5
    r = api.post("/transfer", user=READER, json=BODY)
    assert r.status_code == 200, r.get_data(as_text=True)
    parts = api.get(f"/transfer/{r.get_json()['job']}", user=READER).get_json()["parts"]
    assert parts["0_0_0"] == {"start": [0, 0, 0], "status": "done", "attempts": 3, "error": None}
    assert parts["128_128_128"]["attempts"] == 2 and parts["128_128_128"]["status"] == "done"


def test_failures_are_reported_never_lost(api, world, transfer_service):
    transfer_service.script = lambda start, attempt: "fail" if start == (0, 128, 0) else "ok"
    r = api.post("/transfer", user=READER, json=BODY)
    error = assert_error(r, 502, "bad_gateway")
    failed = error["details"]["failed"]
    assert list(failed) == ["0_128_0"] and failed["0_128_0"]["attempts"] == 4
    assert failed["0_128_0"]["error"] == "HTTP 500"
    job = api.get(f"/transfer/{error['details']['job']}", user=READER).get_json()
    assert job["status"] == "failed" and job["parts"]["0_128_0"]["status"] == "failed"
    assert sum(p["status"] == "done" for p in job["parts"].values()) == 7


def test_timeouts_are_reported(api, world, transfer_service):
    transfer_service.script = lambda start, attempt: "hang" if start == (0, 0, 128) else "ok"
    transfer_service.hang_seconds = 1.5
    error = assert_error(api.post("/transfer", user=READER, json=BODY), 502, "bad_gateway")
    assert error["details"]["failed"]["0_0_128"]["error"] == "no answer within 1 s"


def test_validation_and_roles(api, world):
    assert_error(api.post("/transfer", user=STRANGER, json=BODY), 404, "not_found")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "model_name": "other"}), 400, "bad_request")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "dataset": "nolocation"}), 400, "bad_request")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "center": [1, 2]}), 422, "validation_error")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "center": [1.0, 2, 3]}), 422, "validation_error")
    assert_error(api.post("/transfer", user=READER, json={**BODY, "extra": 1}), 422, "validation_error")
    job = api.post("/transfer", user=READER, json=BODY).get_json()["job"]
    assert_error(api.get(f"/transfer/{job}", user=STRANGER), 404, "not_found")
    assert api.get(f"/transfer/{job}", user=OWNER).status_code == 200
    assert_error(api.get("/transfer/nosuchjob", user=READER), 404, "not_found")


def test_unconfigured_transfer_is_503(api, world, monkeypatch):
    import dataclasses

    from common import config, http
    monkeypatch.setattr(http, "settings", lambda: dataclasses.replace(config.load(), transfer_func=""))
    monkeypatch.delitem(api._clients, "transfer", raising=False)  # a fresh instance reads the settings
    r = api.post("/transfer", user=READER, json=BODY)
    body = assert_error(r, 503, "unavailable")
    assert r.headers["Retry-After"] and "TRANSFER_FUNC" in body["message"]
