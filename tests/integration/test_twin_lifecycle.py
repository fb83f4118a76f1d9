"""twins (SPEC §3): endpoints are bound to their dataset's generation, as its data and grants are.
Deleting a dataset deletes its endpoints with their state, call records, jobs and the approval
requests naming them; a new dataset of the same name inherits none of it, also while the purge
is still running. Call records and jobs are bound to their endpoint's generation: a path
deleted and used again shows none of the old ones."""

from __future__ import annotations

import time

import pytest

from common.storage import store
from functions.datasets import purge
from tests.conftest import OWNER
from tests.utils import assert_error

READER = "reader@example.com"  # clio_read on lab and keep
MANAGER = "manager@example.com"  # dataset_admin on lab and keep
COUNTING = (
    "def count(context, n: int = 1):\n"
    "    runs = context.state.increment('runs')\n"
    "    return {'side': '{side}', 'n': n, 'runs': runs}\n"
)


def _twin(path, dataset):
    return {
        "path": path,
        "description": "d",
        "dataset": dataset,
        "mock": {"code": COUNTING.replace("{side}", "mock")},
        "private": {"code": COUNTING.replace("{side}", "private"), "settings": {"token": "t"}},
    }


def _create(api, path, dataset="lab"):
    r = api.post("/twins", user=OWNER, json=_twin(path, dataset))
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def _grant(api):
    roles = {"lab": ["clio_read"], "keep": ["clio_read"]}
    api.add_user(READER, datasets=roles)
    api.add_user(MANAGER, datasets={"lab": ["dataset_admin"], "keep": ["dataset_admin"]})


def _wait_job(api, location, user):
    deadline = time.monotonic() + 30
    while True:
        body = api.get(location, user=user).get_json()
        if body["status"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def _request(api, endpoints, code, approve=True, run=True):
    r = api.post("/twins/requests", user=READER, json={"endpoints": endpoints, "code": code})
    assert r.status_code == 201, r.get_data(as_text=True)
    request_id = r.get_json()["id"]
    if approve:
        assert api.post(f"/twins/requests/{request_id}/approve", user=OWNER).status_code == 200
    if run:
        r = api.post(f"/twins/requests/{request_id}/run", user=READER)
        assert r.status_code == 200, r.get_data(as_text=True)
    return request_id


@pytest.fixture
def filled(api):
    """lab with an endpoint that has state, call records, a job and requests (one done, one
    pending, one naming an endpoint of another dataset too); keep, another dataset, likewise."""
    api.add_dataset("lab")
    api.add_dataset("keep")
    _grant(api)
    _create(api, "lab.count")
    _create(api, "keep.count", dataset="keep")
    for path in ("/twins/lab.count", "/twins/keep.count"):
        assert api.post(path, user=MANAGER, json={"n": 1}).status_code == 200  # private: state
        assert api.post(f"{path}/mock", user=READER, json={"n": 1}).status_code == 200
    job = api.post("/twins/lab.count/mock?async=1", user=READER, json={"n": 2}).headers["Location"]
    assert _wait_job(api, job, READER)["status"] == "done"
    use = "def use(count):\n    return count(n=3)\n"
    requests = {
        "done": _request(api, {"count": "lab.count"}, use),
        "pending": _request(api, {"count": "lab.count"}, use, approve=False, run=False),
        "both": _request(
            api, {"a": "lab.count", "b": "keep.count"}, "def both(a, b):\n    return [a(), b()]\n"
        ),
    }
    kept = _request(api, {"count": "keep.count"}, use)
    generations = api.get("/twins/lab.count?full=true", user=OWNER).get_json()["sides"]
    return {
        "job": job,
        "requests": requests,
        "kept": kept,
        "state": [side["generation"] for side in generations.values()],
    }


def _delete_lab(api):
    r = api.delete("/datasets", user=OWNER, json=["lab"])
    assert r.status_code == 200 and r.get_json()["deleted"] == ["lab"], r.get_data(as_text=True)
    return r.get_json()["deletions"][0]


def _nothing_of_the_old_endpoint(api, old):
    """Nothing of lab's old endpoint shows or runs, for anyone."""
    for user in (OWNER, MANAGER, READER):
        assert_error(api.get("/twins/lab.count", user=user), 404, "not_found")
        assert "lab.count" not in [e["path"] for e in api.get("/twins", user=user).get_json()]
        assert_error(api.get(old["job"], user=user), 404, "not_found")
        listed = {r["id"] for r in api.get("/twins/requests", user=user).get_json()}
        assert listed.isdisjoint(old["requests"].values())
        for request_id in old["requests"].values():
            assert_error(api.get(f"/twins/requests/{request_id}", user=user), 404, "not_found")
    for path in ("/twins/lab.count", "/twins/lab.count/mock", "/twins/lab.count/private"):
        assert_error(api.post(path, user=OWNER, json={"n": 1}), 404, "not_found")
    assert_error(api.get("/twins/lab.count/calls", user=OWNER), 404, "not_found")
    assert_error(
        api.call("PATCH", "/twins/lab.count", user=OWNER, json={"description": "x"}), 404, "not_found"
    )
    assert_error(api.delete("/twins/lab.count", user=OWNER), 404, "not_found")
    for request_id in old["requests"].values():
        assert_error(api.post(f"/twins/requests/{request_id}/run", user=READER), 404, "not_found")
        assert_error(api.post(f"/twins/requests/{request_id}/approve", user=OWNER), 404, "not_found")
    assert_error(
        api.post(
            "/twins/requests",
            user=READER,
            json={"endpoints": {"c": "lab.count"}, "code": "def f(c):\n    return 1\n"},
        ),
        422,
        "validation_error",
    )


def _the_other_dataset_is_untouched(api, old):
    assert api.get("/twins/keep.count/calls", user=MANAGER).status_code == 200
    assert len(api.get("/twins/keep.count/calls", user=MANAGER).get_json()) == 4  # 2 calls, 2 requests' calls
    r = api.get(f"/twins/requests/{old['kept']}", user=READER)
    assert r.status_code == 200 and r.get_json()["result"]["side"] == "private"


@pytest.mark.parametrize("purged", [True, False], ids=["purged", "purge_pending"])
def test_deleting_a_dataset_deletes_its_endpoints_and_a_new_dataset_of_the_name_inherits_none(
    api, filled, monkeypatch, purged
):
    if not purged:  # the purge stops at once and the background waits: nothing is reclaimed yet
        monkeypatch.setattr(purge, "INLINE_BUDGET", 0)
        monkeypatch.setattr(purge, "continue_later", lambda deletion_id: True)
    deletion = _delete_lab(api)
    assert deletion["status"] == ("done" if purged else "purging")
    _nothing_of_the_old_endpoint(api, filled)  # the dataset is gone
    api.add_dataset("lab")  # and made again
    _grant(api)
    _nothing_of_the_old_endpoint(api, filled)
    _the_other_dataset_is_untouched(api, filled)
    # An endpoint made again at the path is a new one: no state, no calls, no requests, no jobs.
    _create(api, "lab.count")
    assert api.get("/twins/lab.count/calls", user=OWNER).get_json() == []
    sides = api.get("/twins/lab.count?full=true", user=OWNER).get_json()["sides"]
    assert all(side["state"] == {} for side in sides.values())
    r = api.post("/twins/lab.count", user=MANAGER, json={"n": 1})
    assert r.status_code == 200 and r.get_json()["result"]["runs"] == 1
    assert [c["caller"] for c in api.get("/twins/lab.count/calls", user=OWNER).get_json()] == [MANAGER]
    for user in (OWNER, MANAGER, READER):
        assert_error(api.get(filled["job"], user=user), 404, "not_found")
        for request_id in filled["requests"].values():
            assert_error(api.get(f"/twins/requests/{request_id}", user=user), 404, "not_found")
    if not purged:
        assert store.collection("twin_requests").document(filled["requests"]["done"]).get().exists
        monkeypatch.undo()  # the purge goes on
        state = api.post(f"/datasets/_deletions/{deletion['id']}/resume", user=OWNER)
        for _ in range(20):
            if state.get_json()["status"] == "done":
                break
            state = api.post(f"/datasets/_deletions/{deletion['id']}/resume", user=OWNER)
        assert state.get_json()["status"] == "done", state.get_json()
    # Everything of the old endpoint is reclaimed; what belongs to the new one and to keep stays.
    parts = api.get(f"/datasets/_deletions/{deletion['id']}", user=OWNER).get_json()["parts"]
    assert all(parts[p]["done"] for p in ("twin_endpoints", "twin_calls", "twin_jobs", "twin_requests"))
    assert parts["twin_requests"]["deleted"] >= 3 and parts["twin_calls"]["deleted"] >= 4
    for request_id in filled["requests"].values():
        assert not store.collection("twin_requests").document(request_id).get().exists
    assert store.collection("twin_requests").document(filled["kept"]).get().exists
    old_job = filled["job"].rsplit("/", 1)[1]
    assert not store.collection("twin_jobs").document(old_job).get().exists
    for generation in filled["state"]:
        assert list(store.collection("twin_state").document(generation).collection("keys").stream()) == []
    calls = [s.to_dict() for s in store.collection("twin_calls").stream()]
    assert sorted(c["endpoint"] for c in calls) == ["keep.count"] * 4 + ["lab.count"]
    assert api.get("/twins/lab.count/calls", user=OWNER).get_json()[0]["caller"] == MANAGER
    _the_other_dataset_is_untouched(api, filled)


def test_an_endpoint_made_again_at_its_path_shows_no_old_calls_or_jobs(api, monkeypatch):
    api.add_dataset("lab")
    api.add_dataset("keep")
    _grant(api)
    _create(api, "lab.count")
    assert api.post("/twins/lab.count", user=MANAGER, json={"n": 1}).status_code == 200
    assert api.post("/twins/lab.count/mock", user=READER, json={"n": 1}).status_code == 200
    job = api.post("/twins/lab.count/mock?async=1", user=READER, json={"n": 2}).headers["Location"]
    assert _wait_job(api, job, READER)["status"] == "done"
    assert len(api.get("/twins/lab.count/calls", user=OWNER).get_json()) == 3
    assert api.delete("/twins/lab.count", user=OWNER).status_code == 204
    _create(api, "lab.count")
    assert api.get("/twins/lab.count/calls", user=OWNER).get_json() == []
    assert api.get("/twins/lab.count/calls?limit=10", user=MANAGER).get_json() == []
    for user in (READER, MANAGER, OWNER):
        assert_error(api.get(job, user=user), 404, "not_found")
    assert api.post("/twins/lab.count/mock", user=READER, json={"n": 5}).status_code == 200
    assert [c["caller"] for c in api.get("/twins/lab.count/calls", user=OWNER).get_json()] == [READER]
    # A job queued for the old endpoint and carried out after the path was reused runs nothing.
    from common.storage import pubsub
    from functions.twins import jobs

    queued = []
    monkeypatch.setattr(pubsub, "publish", lambda topic, message: queued.append(message))
    r = api.post("/twins/lab.count/private?async=1", user=MANAGER, json={"n": 1})
    assert r.status_code == 202 and queued == [{"job": r.get_json()["id"]}]
    job_id = r.get_json()["id"]
    assert api.delete("/twins/lab.count", user=OWNER).status_code == 204
    _create(api, "lab.count")
    jobs.work(job_id)
    assert api.get("/twins/lab.count/calls", user=OWNER).get_json() == []
    stored = store.collection("twin_jobs").document(job_id).get().to_dict()
    assert stored["status"] == "failed" and stored["http_status"] == 404
    assert_error(api.get(f"/twins/jobs/{job_id}", user=MANAGER), 404, "not_found")
