"""datasets: lifecycle, validation, finalize, logs and attachments."""

import io

import pytest
import requests

from tests.conftest import OWNER
from tests.utils import assert_error


def get(api, name):
    return api.get(f"/datasets/{name}", user=OWNER)


def test_create_replace_keeps_creation_fields(api):
    r = api.post(
        "/datasets",
        user=OWNER,
        json={"mb20": {"description": "4nm MB", "location": "gs://em-data/mb20", "voxel": {"nm": [4, 4, 4]}}},
    )
    assert r.status_code == 200
    first = r.get_json()["mb20"]
    assert first["name"] == "mb20" and first["voxel"] == {"nm": [4, 4, 4]} and first["public"] is False
    assert first["created_by"] == OWNER and first["created_at"] == first["modified_at"]
    second = api.post("/datasets", user=OWNER, json={"mb20": {"description": "v2"}}).get_json()["mb20"]
    assert second["created_at"] == first["created_at"] and second["modified_at"] >= first["modified_at"]
    assert "voxel" not in second  # replaced, not merged


BAD_DATASETS = {
    "leading underscore": {"_x": {"description": "d"}},
    "reserved all": {"all": {"description": "d"}},
    "reserved v2": {"v2": {"description": "d"}},
    "slash": {"a/b": {"description": "d"}},
    "too long": {"a" * 129: {"description": "d"}},
    "no description": {"ok": {"location": "gs://x"}},
    "description not a string": {"ok": {"description": 5}},
    "public as string": {"ok": {"description": "d", "public": "true"}},
    "server field": {"ok": {"description": "d", "created_by": "me@example.com"}},
    "nested arrays": {"ok": {"description": "d", "bbox": [[0, 0], [1, 1]]}},
    "huge integer": {"ok": {"description": "d", "n": 2**70}},
    "reserved field name": {"ok": {"description": "d", "__name__": 1}},
    "not an object": {"ok": "description"},
    "location a local path": {"ok": {"description": "d", "location": "/etc/passwd"}},
    "location a file url": {"ok": {"description": "d", "location": "file:///etc/passwd"}},
    "location a script": {"ok": {"description": "d", "location": "javascript://x%0Aalert(1)"}},
    "location with a newline": {"ok": {"description": "d", "location": "gs://em-data/a\nb"}},
    "location with a control character": {"ok": {"description": "d", "location": "gs://em\x00data"}},
    "location too long": {"ok": {"description": "d", "location": "gs://b/" + "x" * 2042}},
    "location not a string": {"ok": {"description": "d", "location": 5}},
}


@pytest.mark.parametrize("case", sorted(BAD_DATASETS))
def test_bad_datasets_are_422_and_nothing_written(api, case):
    body = {"good": {"description": "d"}, **BAD_DATASETS[case]}
    assert_error(api.post("/datasets", user=OWNER, json=body), 422, "validation_error")
    assert api.get("/datasets", user=OWNER).get_json() == {}


def test_finalized_dataset_cannot_be_replaced_and_nothing_is_written(api):
    api.add_dataset("mb20")
    assert api.post("/datasets/mb20/finalize", user=OWNER).status_code == 200
    r = api.post("/datasets", user=OWNER, json={"other": {"description": "d"}, "mb20": {"description": "x"}})
    assert_error(r, 409, "conflict")
    assert get(api, "other").status_code == 404
    assert get(api, "mb20").get_json()["description"] == "mb20 dataset"


def test_put_merges_and_null_removes_free_form_fields(api):
    api.post("/datasets", user=OWNER, json={"mb20": {"description": "d", "voxel": 8, "owner_lab": "x"}})
    r = api.put("/datasets/mb20", user=OWNER, json={"voxel": 4, "owner_lab": None, "tags": ["fly"]})
    assert r.status_code == 200
    body = r.get_json()
    assert body["voxel"] == 4 and "owner_lab" not in body and body["tags"] == ["fly"]
    assert body["description"] == "d"
    assert_error(api.put("/datasets/mb20", user=OWNER, json={"public": 1}), 422, "validation_error")
    assert_error(api.put("/datasets/mb20", user=OWNER, json={"modified_by": "x"}), 422, "validation_error")
    assert_error(
        api.put("/datasets/mb20", user=OWNER, json={"location": "file:///b/x"}), 422, "validation_error"
    )


# Locations as clio stores them: metadata naming where a dataset's images are read from.
SOURCES = [
    "gs://",  # clio's README: {"mb20": {"description": "4nm MB", "location": "gs://"}}
    "gs://em-data",
    "gs://em-data/mb20",
    "precomputed://gs://em-data/mb20/jpeg",
    "https://storage.googleapis.com/em-data/mb20",
    "dvid://emdata.example.org:8000/a1b2c3/grayscale",
    "zarr://s3://bucket/volume.zarr",
    "gs://b/" + "x" * 2041,  # 2048 characters
]


def test_clio_readme_example_and_any_named_source_are_accepted(api):
    """clio's own README example (the bare placeholder `gs://`) is a valid dataset, as in clio."""
    r = api.post("/datasets", user=OWNER, json={"mb20": {"description": "4nm MB", "location": "gs://"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["mb20"]["location"] == "gs://"
    assert get(api, "mb20").get_json()["location"] == "gs://"
    body = {f"ds{i}": {"description": "d", "location": location} for i, location in enumerate(SOURCES)}
    r = api.post("/datasets", user=OWNER, json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [r.get_json()[f"ds{i}"]["location"] for i in range(len(SOURCES))] == SOURCES
    for location in SOURCES:
        r = api.put("/datasets/mb20", user=OWNER, json={"location": location})
        assert r.status_code == 200 and r.get_json()["location"] == location


MANAGER = "manager@example.com"


def test_only_admins_set_or_change_a_location(api):
    api.add_dataset("mb20", location="gs://em-data/mb20")
    api.add_dataset("bare")
    api.add_user(MANAGER, datasets={"mb20": ["dataset_admin"], "bare": ["dataset_admin"]})
    for name, change in [
        ("mb20", {"location": "gs://elsewhere/mb20"}),
        ("mb20", {"location": None}),
        ("mb20", {"description": "d", "location": "dvid://host/uuid"}),
        ("bare", {"location": "gs://em-data/bare"}),
    ]:
        body = assert_error(api.put(f"/datasets/{name}", user=MANAGER, json=change), 403, "forbidden")
        assert "location" in body["message"]
    assert get(api, "mb20").get_json()["location"] == "gs://em-data/mb20"
    assert get(api, "mb20").get_json()["description"] == "mb20 dataset"
    assert "location" not in get(api, "bare").get_json() or get(api, "bare").get_json()["location"] is None
    # Other fields, and the location as it is, are the manager's to send.
    r = api.put("/datasets/mb20", user=MANAGER, json={"description": "new", "tags": ["fly"]})
    assert r.status_code == 200 and r.get_json()["location"] == "gs://em-data/mb20"
    r = api.put(
        "/datasets/mb20", user=MANAGER, json={"description": "again", "location": "gs://em-data/mb20"}
    )
    assert r.status_code == 200 and r.get_json()["description"] == "again"
    assert api.put("/datasets/bare", user=MANAGER, json={"location": None}).status_code == 200
    # Admins do.
    r = api.put("/datasets/mb20", user=OWNER, json={"location": "dvid://host/uuid"})
    assert r.status_code == 200 and r.get_json()["location"] == "dvid://host/uuid"
    assert api.put("/datasets/bare", user=OWNER, json={"location": "gs://"}).get_json()["location"] == "gs://"


def test_finalize_freezes_all_but_description_and_tags(api):
    api.add_dataset("mb20")
    r = api.post("/datasets/mb20/finalize", user=OWNER)
    assert r.status_code == 200 and r.get_json()["finalized_by"] == OWNER and r.get_json()["finalized_at"]
    assert_error(api.post("/datasets/mb20/finalize", user=OWNER), 409, "conflict")
    assert (
        api.put("/datasets/mb20", user=OWNER, json={"description": "new", "tags": ["a"]}).status_code == 200
    )
    assert_error(
        api.put("/datasets/mb20", user=OWNER, json={"location": "gs://elsewhere/mb20"}), 409, "conflict"
    )
    assert get(api, "mb20").get_json()["location"] is None


def test_unknown_dataset_is_404(api):
    for r in (
        get(api, "nope"),
        api.put("/datasets/nope", user=OWNER, json={"description": "d"}),
        api.post("/datasets/nope/finalize", user=OWNER),
        api.get("/datasets/nope/logs", user=OWNER),
    ):
        assert_error(r, 404, "not_found")


def test_delete_is_idempotent_and_removes_attachments(api):
    api.add_dataset("mb20")
    api.post(
        "/datasets/mb20/attachments",
        user=OWNER,
        data={"name": "a.txt", "attachment": (io.BytesIO(b"x"), "a.txt")},
        content_type="multipart/form-data",
    )
    assert api.delete("/datasets", user=OWNER, json=["mb20", "nope", "_bad"]).get_json()["deleted"] == [
        "mb20"
    ]
    api.add_dataset("mb20")
    assert api.get("/datasets/mb20/attachments", user=OWNER).get_json() == []


def test_logs_newest_first_with_paging(api):
    api.add_dataset("mb20")
    for i in range(4):
        api.put("/datasets/mb20", user=OWNER, json={"step": i})
    api.add_dataset("other")  # not in mb20's log
    everything = api.get("/datasets/mb20/logs", user=OWNER).get_json()
    assert [e["action"] for e in everything] == ["dataset_update"] * 4 + ["dataset_create"]
    assert [e["after"]["step"] for e in everything[:4]] == [3, 2, 1, 0]
    first = api.get("/datasets/mb20/logs?limit=2", user=OWNER)
    assert [e["id"] for e in first.get_json()] == [e["id"] for e in everything[:2]]
    link = first.headers["Link"]
    assert link.endswith('rel="next"')
    cursor = link.split("cursor=")[1].split(">")[0]
    second = api.get(f"/datasets/mb20/logs?limit=2&cursor={cursor}", user=OWNER).get_json()
    assert [e["id"] for e in second] == [e["id"] for e in everything[2:4]]
    assert_error(api.get("/datasets/mb20/logs?limit=0", user=OWNER), 400, "bad_request")
    assert_error(api.get("/datasets/mb20/logs?limit=ten", user=OWNER), 400, "bad_request")
    assert_error(api.get("/datasets/mb20/logs?limit=2&cursor=garbage", user=OWNER), 400, "bad_request")


# -- attachments ----------------------------------------------------------------------------


def upload(api, name, content=b"hello", filename="file.bin"):
    return api.post(
        "/datasets/mb20/attachments",
        user=OWNER,
        content_type="multipart/form-data",
        data={"name": name, "attachment": (io.BytesIO(content), filename)},
    )


def test_attachment_round_trip_through_a_signed_url(api):
    api.add_dataset("mb20")
    r = upload(api, "notes.txt", b"synapse counts")
    assert r.status_code == 201 and r.get_json() == {"name": "notes.txt", "size": 14}
    listed = api.get("/datasets/mb20/attachments", user=OWNER).get_json()
    assert [(a["name"], a["size"]) for a in listed] == [("notes.txt", 14)]
    url = listed[0]["url"]
    assert "X-Goog-Signature=" in url and "X-Goog-Expires=300" in url
    assert requests.get(url, timeout=10).content == b"synapse counts"
    assert api.delete("/datasets/mb20/attachments/notes.txt", user=OWNER).status_code == 204
    assert api.delete("/datasets/mb20/attachments/notes.txt", user=OWNER).status_code == 204
    assert api.get("/datasets/mb20/attachments", user=OWNER).get_json() == []
    actions = [e["action"] for e in api.get("/datasets/mb20/logs", user=OWNER).get_json()]
    assert actions[:2] == ["attachment_delete", "attachment_upload"]


def _bucket_contents() -> dict[str, bytes]:
    """Every object in the attachments bucket, by full object name, with its bytes."""
    from common.storage import blobs
    from tests.conftest import BUCKETS

    return {b.name: b.download_as_bytes() for b in blobs.bucket(BUCKETS[0]).list_blobs()}


def _targets(api) -> dict[str, bytes]:
    """Objects a traversing name could reach: mb20's own attachments named as a stripped or
    normalised name would come out ("secret", "b", "xy", ...), another dataset's attachment, and
    objects outside every dataset's prefix. Returns the bucket's contents with them in place."""
    from common.storage import blobs
    from tests.conftest import BUCKETS

    api.add_dataset("mb20")
    api.add_dataset("other")
    for name in ("secret", "b", "hidden", "xy", "ab", "a_b"):
        assert upload(api, name, b"original " + name.encode()).status_code == 201
    r = api.post(
        "/datasets/other/attachments",
        user=OWNER,
        content_type="multipart/form-data",
        data={"name": "x", "attachment": (io.BytesIO(b"other's x"), "x")},
    )
    assert r.status_code == 201
    for name in ("secret", "other/x", "x"):
        blobs.bucket(BUCKETS[0]).blob(name).upload_from_string(b"outside " + name.encode())
    before = _bucket_contents()
    assert len(before) == 10
    return before


@pytest.mark.parametrize("name", ["../secret", "..", ".hidden", "a/b", "a\\b", "x..y", "", "a\x00b"])
def test_attachment_names_are_plain_file_names(api, name):
    """A name that is not a plain file name is refused, and no object anywhere in the bucket is
    written over: every object the name could be made to reach is byte-for-byte as it was."""
    before = _targets(api)
    r = upload(api, name, b"overwritten", filename="")
    assert_error(r, 422, "validation_error")
    assert _bucket_contents() == before
    listed = api.get("/datasets/mb20/attachments", user=OWNER).get_json()
    assert sorted(a["name"] for a in listed) == ["a_b", "ab", "b", "hidden", "secret", "xy"]


@pytest.mark.parametrize("path", ["..%2F..%2Fother%2Fx", "..%2Fsecret", "..", "%2E%2E", "%2E%2E%2Fx"])
def test_attachment_paths_cannot_traverse(api, path):
    """A traversing path deletes nothing: not another dataset's attachment, not an object outside
    the dataset's prefix, not the dataset's own attachments."""
    before = _targets(api)
    r = api.delete(f"/datasets/mb20/attachments/{path}", user=OWNER)
    assert r.status_code in (404, 422) and r.get_json()["error"] in ("not_found", "validation_error")
    assert _bucket_contents() == before
    assert [a["name"] for a in api.get("/datasets/other/attachments", user=OWNER).get_json()] == ["x"]


def test_attachment_over_31_mib_is_413(api):
    """31 MiB: an upload (with its multipart overhead) must fit API Gateway's 32 MiB request cap."""
    api.add_dataset("mb20")
    assert_error(upload(api, "big.bin", b"\0" * ((31 << 20) + 1)), 413, "payload_too_large")
    assert api.get("/datasets/mb20/attachments", user=OWNER).get_json() == []


def test_attachment_needs_multipart(api):
    api.add_dataset("mb20")
    r = api.post("/datasets/mb20/attachments", user=OWNER, json={"name": "x"})
    assert_error(r, 415, "unsupported_media_type")
    r = api.post(
        "/datasets/mb20/attachments", user=OWNER, content_type="multipart/form-data", data={"name": "x"}
    )
    assert_error(r, 422, "validation_error")


def test_the_listing_is_cached_per_instance_filtered_per_caller_and_dropped_by_own_writes(api):
    """GET /datasets lists from this instance's copy of the records (30 s, as roles and public
    flags): a record written behind its back is not listed yet, each caller still sees only what
    they may read, and the instance's own writes show at once."""
    from common.storage import store

    api.add_dataset("open", public=True)
    api.add_dataset("closed")
    researcher = "researcher@example.com"
    api.add_user(researcher, datasets={"closed": ["clio_read"]})
    stranger = "stranger@example.com"
    assert set(api.get("/datasets", user=OWNER).get_json()) == {"open", "closed"}  # the copy is made
    store.collection("datasets").document("elsewhere").set({"description": "made by another instance"})
    assert set(api.get("/datasets", user=OWNER).get_json()) == {"open", "closed"}
    assert set(api.get("/datasets", user=researcher).get_json()) == {"open", "closed"}
    assert set(api.get("/datasets", user=stranger).get_json()) == {"open"}
    assert set(api.get("/v2/datasets", user=stranger).get_json()) == {"open"}

    api.add_dataset("fresh")  # this instance's own write: listed at once, with "elsewhere" now read
    assert set(api.get("/datasets", user=OWNER).get_json()) == {"open", "closed", "elsewhere", "fresh"}
    assert api.put("/datasets/closed", user=OWNER, json={"public": True}).status_code == 200
    assert set(api.get("/v2/datasets", user=stranger).get_json()) == {"open", "closed"}
    assert api.delete("/datasets", user=OWNER, json=["open"]).status_code == 200
    assert set(api.get("/datasets", user=stranger).get_json()) == {"closed"}
