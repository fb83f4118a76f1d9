"""Deleting a dataset deletes what belongs to it: a new dataset of the same name starts empty and
grants nothing, also while the purge of the old one is still running (issue: deleted datasets
came back with their grants and data). Names are unique regardless of case. EXPOSE hides datasets."""

from __future__ import annotations

import io

import numpy as np
import pytest

from common import cache
from common.catalog import sigindex
from common.storage import store
from functions.datasets import purge
from tests.conftest import BUCKETS, OWNER
from tests.utils import assert_error
from tools import build_signatures

DS = "mb20"
FORMER_ADMIN = "former@example.com"
RESEARCHER = "researcher@example.com"
AT = "x=1&y=2&z=3"


def fill(api, name=DS):
    """One of everything a dataset holds, as its users would store it."""
    api.add_dataset(name, location="gs://em-data/mb20", transfer=["denoise"])
    api.add_user(FORMER_ADMIN, datasets={name: ["dataset_admin"]})
    api.add_user(RESEARCHER, global_roles=["clio_general"])
    for path, body in [
        (f"/annotations/{name}?{AT}", {"note": "v1"}),
        (f"/savedsearches/{name}?{AT}", {"q": "s"}),
        (f"/annotations/v2/{name}", {"kind": "point", "pos": [1, 2, 3]}),
    ]:
        assert api.post(path, user=FORMER_ADMIN, json=body).status_code == 200
    entry = api.post(f"/atlas/{name}?{AT}", user=FORMER_ADMIN, json={"title": "t"}).get_json()
    assert api.post(f"/atlas/verify/{entry['id']}", user=OWNER, json={"verified": True}).status_code == 200
    r = api.post(
        f"/datasets/{name}/attachments",
        user=FORMER_ADMIN,
        data={"name": "a.txt", "attachment": (io.BytesIO(b"x"), "a.txt")},
        content_type="multipart/form-data",
    )
    assert r.status_code == 201
    build_signatures.build(
        BUCKETS[1], name, np.array([(1, 2, 3, 42)], dtype=sigindex.record_dtype()), progress=False
    )
    assert (
        api.post(
            "/transfer",
            user=FORMER_ADMIN,
            json={"dataset": name, "model_name": "denoise", "center": [500, 500, 500]},
        ).status_code
        == 200
    )
    return entry


def assert_empty(api, name=DS, user=OWNER):
    """Nothing of a deleted dataset shows through `name`, to anyone."""
    assert api.get(f"/annotations/{name}", user=user).get_json() == {}
    assert api.get(f"/savedsearches/{name}", user=user).get_json() == {}
    assert api.get(f"/annotations/v2/{name}", user=user).get_json() == []
    assert api.get(f"/atlas/{name}", user=user).get_json() == {}
    assert [e for e in api.get("/atlas/all", user=user).get_json() if e["dataset"] == name] == []
    assert api.get(f"/datasets/{name}/attachments", user=user).get_json() == []
    assert_error(api.get(f"/signatures/atlocation/{name}?{AT}", user=user), 404, "not_found")
    assert [j for j in api.get("/transfer", user=user).get_json() if j["dataset"] == name] == []
    assert [e["action"] for e in api.get(f"/datasets/{name}/logs", user=user).get_json()] == [
        "dataset_create"
    ]


def delete(api, name=DS):
    r = api.delete("/datasets", user=OWNER, json=[name])
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert body["deleted"] == [name]
    return body["deletions"][0]


def stored_docs() -> int:
    """Documents still stored under any dataset (what the purge must reclaim)."""
    count = 0
    for root, sub in [
        ("annotations", "v1_annotations"),
        ("annotations", "v2_annotations"),
        ("savedsearches", "searches"),
    ]:
        for ref in store.collection(root).list_documents():
            count += len(list(ref.collection(sub).stream()))
    return (
        count
        + len(list(store.collection("atlas").stream()))
        + len(list(store.collection("transfer_jobs").stream()))
    )


def test_a_recreated_dataset_is_empty_and_grants_nothing(api):
    fill(api)
    deletion = delete(api)
    assert deletion["status"] == "done"
    api.add_dataset(DS)  # private, as new
    assert_empty(api)
    # The former dataset_admin's grant is gone: they cannot read the new dataset nor make it public.
    assert_error(api.get(f"/datasets/{DS}", user=FORMER_ADMIN), 404, "not_found")
    assert_error(api.put(f"/datasets/{DS}", user=FORMER_ADMIN, json={"public": True}), 404, "not_found")
    assert DS not in api.get("/roles", user=FORMER_ADMIN).get_json()["datasets"]
    assert DS not in api.get("/users", user=OWNER).get_json()[FORMER_ADMIN]["datasets"]
    # And everything was reclaimed: Firestore, the attachments and the signatures buckets.
    assert stored_docs() == 0
    from common.storage import blobs

    for bucket in BUCKETS[:2]:  # attachments, signatures
        assert [b.name for b in blobs.client().list_blobs(blobs.bucket(bucket))] == []


def test_nothing_shows_while_a_large_purge_is_still_running(api, monkeypatch):
    entry = fill(api)
    monkeypatch.setattr(purge, "INLINE_BUDGET", 1)  # the purge stops after one object
    queued = []
    monkeypatch.setattr(purge, "continue_later", queued.append)  # and the background waits
    deletion = delete(api)
    assert deletion["status"] == "purging"
    assert queued == [deletion["id"]]
    assert stored_docs() > 0  # data of the old dataset is still stored...
    api.add_dataset(DS)
    assert_empty(api)  # ...and none of it shows, nor do its grants
    assert_error(api.get(f"/datasets/{DS}", user=FORMER_ADMIN), 404, "not_found")
    assert_error(api.post(f"/atlas/verify/{entry['id']}", user=OWNER), 404, "not_found")
    # Data written to the new dataset is its own, and the purge leaves it alone.
    api.post(f"/annotations/v2/{DS}", user=OWNER, json={"kind": "point", "pos": [7, 7, 7]})
    api.add_user(RESEARCHER, datasets={DS: ["clio_read"]})
    for _ in range(100):
        state = api.post(f"/datasets/_deletions/{deletion['id']}/resume", user=OWNER).get_json()
        if state["status"] == "done":
            break
    assert state["status"] == "done" and state["purged_at"]
    again = api.post(f"/datasets/_deletions/{deletion['id']}/resume", user=OWNER)  # idempotent
    assert again.status_code == 200 and again.get_json()["status"] == "done"
    assert [a["key"] for a in api.get(f"/annotations/v2/{DS}", user=OWNER).get_json()] == ["Pt7_7_7"]
    assert api.get(f"/datasets/{DS}", user=RESEARCHER).status_code == 200  # a grant on the new dataset stays
    assert stored_docs() == 1  # the new dataset's one annotation
    listed = api.get("/datasets/_deletions", user=OWNER).get_json()
    assert [(d["id"], d["name"], d["status"]) for d in listed] == [(deletion["id"], DS, "done")]
    assert all(part["done"] for part in listed[0]["parts"].values())


def test_a_large_purge_finishes_in_the_background(api, monkeypatch):
    import time

    fill(api)
    monkeypatch.setattr(purge, "INLINE_BUDGET", 3)  # a few objects per step: many steps, through Pub/Sub
    deletion = delete(api)
    assert deletion["status"] == "purging"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = api.get(f"/datasets/_deletions/{deletion['id']}", user=OWNER).get_json()
        if state["status"] == "done":
            break
        time.sleep(0.2)
    assert state["status"] == "done", state
    assert stored_docs() == 0


def test_the_deleted_datasets_log_stays_readable_to_admins(api):
    api.add_dataset(DS)
    api.put(f"/datasets/{DS}", user=OWNER, json={"step": 1})
    deletion = delete(api)
    api.add_dataset(DS)
    assert [e["action"] for e in api.get(f"/datasets/{DS}/logs", user=OWNER).get_json()] == ["dataset_create"]
    old = api.get(f"/datasets/_deletions/{deletion['id']}/logs", user=OWNER).get_json()
    assert [e["action"] for e in old] == ["dataset_delete", "dataset_update", "dataset_create"]
    api.add_user(FORMER_ADMIN, datasets={DS: ["dataset_admin"]})
    assert_error(api.get(f"/datasets/_deletions/{deletion['id']}/logs", user=FORMER_ADMIN), 403, "forbidden")
    assert_error(api.get("/datasets/_deletions/nope", user=OWNER), 404, "not_found")
    assert_error(api.get("/datasets/_deletions/" + "0" * 32, user=OWNER), 404, "not_found")


def test_a_grant_given_before_the_dataset_existed_is_revoked_with_it(api):
    api.add_user(FORMER_ADMIN, datasets={DS: ["clio_read"]})
    api.add_dataset(DS)
    assert api.get(f"/datasets/{DS}", user=FORMER_ADMIN).status_code == 200
    delete(api)
    api.add_dataset(DS)
    assert_error(api.get(f"/datasets/{DS}", user=FORMER_ADMIN), 404, "not_found")


def test_a_grant_bound_to_an_old_generation_counts_for_nothing_before_it_is_revoked(api, monkeypatch):
    api.add_dataset(DS)
    api.add_user(FORMER_ADMIN, datasets={DS: ["dataset_admin"]})
    monkeypatch.setattr(purge, "INLINE_BUDGET", 0)  # nothing purged: the grant is still stored
    delete(api)
    api.add_dataset(DS)
    cache.clear_all()
    record = store.collection("users").document(FORMER_ADMIN).get().to_dict()
    assert record["datasets"] == {DS: ["dataset_admin"]}
    assert_error(api.get(f"/datasets/{DS}", user=FORMER_ADMIN), 404, "not_found")
    assert_error(api.put(f"/datasets/{DS}", user=FORMER_ADMIN, json={"public": True}), 404, "not_found")
    assert DS not in api.get("/roles", user=FORMER_ADMIN).get_json()["datasets"]


def test_names_are_unique_regardless_of_case(api):
    api.add_dataset("hemibrain")
    r = api.post("/datasets", user=OWNER, json={"HemiBrain": {"description": "d", "public": True}})
    assert_error(r, 409, "conflict")
    assert r.get_json()["details"]["taken"] == {"HemiBrain": "hemibrain"}
    assert_error(
        api.post("/datasets", user=OWNER, json={"a1": {"description": "d"}, "A1": {"description": "d"}}),
        409,
        "conflict",
    )
    assert api.get("/datasets/HemiBrain", user=OWNER).status_code == 404
    assert sorted(api.get("/datasets", user=OWNER).get_json()) == ["hemibrain"]
    api.add_dataset("hemibrain", description="replaced")  # the same name replaces, as before
    delete(api, "hemibrain")
    api.add_dataset("HemiBrain")  # free once the other is deleted
    assert sorted(api.get("/datasets", user=OWNER).get_json()) == ["HemiBrain"]


def test_the_generation_is_the_servers(api):
    api.add_dataset(DS)
    assert "generation" not in api.get(f"/datasets/{DS}", user=OWNER).get_json()
    assert_error(api.put(f"/datasets/{DS}", user=OWNER, json={"generation": "mine"}), 422, "validation_error")


@pytest.fixture
def expose(monkeypatch):
    from common import config

    def set_to(value: str):
        monkeypatch.setenv("EXPOSE", value)
        config.settings.cache_clear()
        cache.clear_all()

    yield set_to
    monkeypatch.delenv("EXPOSE", raising=False)
    config.settings.cache_clear()
    cache.clear_all()


def test_expose_hides_datasets_from_every_route_and_list(api, expose):
    fill(api, "hidden")
    api.add_dataset("shown", public=True)
    expose(r"dataset:sh.*,twin:.*")
    for path in [
        "/datasets/hidden",
        "/datasets/hidden/logs",
        "/datasets/hidden/attachments",
        "/annotations/hidden",
        "/annotations/v2/hidden",
        "/savedsearches/hidden",
        "/atlas/hidden",
        f"/signatures/atlocation/hidden?{AT}",
        f"/signatures/likelocation/hidden?{AT}",
    ]:
        assert_error(api.get(path, user=OWNER), 404, "not_found")
    assert_error(api.put("/datasets/hidden", user=OWNER, json={"description": "x"}), 404, "not_found")
    assert_error(
        api.post("/annotations/v2/hidden", user=OWNER, json={"kind": "point", "pos": [1, 2, 3]}),
        404,
        "not_found",
    )
    assert_error(
        api.post(
            "/transfer", user=OWNER, json={"dataset": "hidden", "model_name": "denoise", "center": [1, 2, 3]}
        ),
        404,
        "not_found",
    )
    assert sorted(api.get("/datasets", user=OWNER).get_json()) == ["shown"]
    assert [e for e in api.get("/atlas/all", user=OWNER).get_json() if e["dataset"] == "hidden"] == []
    assert api.get("/transfer", user=FORMER_ADMIN).get_json() == []
    assert "hidden" not in api.get("/roles", user=FORMER_ADMIN).get_json()["datasets"]
    assert api.get("/datasets/shown", user=RESEARCHER).status_code == 200
    expose("")
    assert api.get("/datasets/hidden", user=OWNER).status_code == 200
