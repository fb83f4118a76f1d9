"""Every resource of the client against the real local stack: datasets, users, keys, annotations
(v1, v2 with paging, bulk upload, data frames), saved searches, atlas, signatures, transfer,
and typed errors with their envelope."""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
from conftest import OWNER, RESEARCHER
from gatehouse import (
    BadRequest,
    Conflict,
    Forbidden,
    GatehouseError,
    JobFailed,
    NotFound,
    RateLimited,
    ValidationError,
)
from gatehouse.records import Annotation, Dataset, User


@pytest.fixture
def mb20(gh):
    gh.datasets.create("mb20", "4nm MB", location="gs://em-data/mb20", transfer=["denoise"])
    gh.users.update(RESEARCHER, global_roles=["clio_general"], datasets={"mb20": ["clio_read"]})
    return "mb20"


def test_datasets(gh, connect, mb20, tmp_path):
    listed = gh.datasets.list()
    assert iter(listed) is listed  # every list() is an iterator of typed records
    [mb20_record] = [d for d in listed if d.name == "mb20"]
    assert (
        isinstance(mb20_record, Dataset) and mb20_record.description == mb20_record["description"] == "4nm MB"
    )
    assert gh.datasets.get("mb20").name == "mb20"
    with pytest.raises(TypeError, match=r"is an iterator, not a dict.*gh\.datasets\.get\(name\)"):
        gh.datasets.list()["mb20"]  # the shape before every list() was a Listing: a hint
    assert gh.datasets.update("mb20", tags=["fly"])["tags"] == ["fly"]
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"hello")
    assert gh.datasets.attach("mb20", notes) == {"name": "notes.txt", "size": 5}
    assert gh.datasets.attach("mb20", b"raw", filename="raw.bin")["size"] == 3
    listed = {a["name"]: a for a in connect(RESEARCHER).datasets.attachments("mb20")}
    assert set(listed) == {"notes.txt", "raw.bin"}
    import requests

    assert requests.get(listed["notes.txt"]["url"], timeout=5).content == b"hello"
    gh.datasets.detach("mb20", "raw.bin")
    assert gh.datasets.finalize("mb20")["finalized_by"] == OWNER
    with pytest.raises(Conflict):
        gh.datasets.finalize("mb20")
    actions = [entry["action"] for entry in gh.datasets.logs("mb20", page_size=2)]  # paged 2 at a time
    assert len(actions) >= 4 and len(actions) == len(set(e["request_id"] for e in gh.datasets.logs("mb20")))
    deleted = gh.datasets.delete("mb20")
    assert deleted["deleted"] == ["mb20"]
    assert gh.datasets.deletion(deleted["deletions"][0]["id"])["name"] == "mb20"
    assert any(d["name"] == "mb20" for d in gh.datasets.deletions())


def test_errors_are_typed_and_carry_the_envelope(gh, connect, mb20):
    with pytest.raises(NotFound) as caught:
        gh.datasets.get("nosuch")
    err = caught.value
    assert (err.status, err.error) == (404, "not_found") and "nosuch" in err.message
    assert err.request_id == err.response.headers["X-Request-Id"]
    assert isinstance(err, GatehouseError) and err.request_id in str(err)

    with pytest.raises(Forbidden) as caught:
        connect(RESEARCHER).datasets.create("mine")
    assert caught.value.status == 403

    with pytest.raises(ValidationError) as caught:
        gh.annotations.add(mb20, kind="point", pos=[1.5, 2, 3])
    assert caught.value.status == 422 and caught.value.details

    with pytest.raises(BadRequest) as caught:
        gh.annotations.add(mb20, kind="point", pos=[1, 2, 3], move_key="not a key")
    assert caught.value.error == "bad_request"


def test_users_and_keys(gh, connect):
    gh.users.update("someone@example.com", name="Some One", global_roles=["clio_general"])
    users = {u.email: u for u in gh.users.list()}
    assert isinstance(users["someone@example.com"], User) and users["someone@example.com"].name == "Some One"
    assert gh.users.me().email == OWNER
    created = gh.keys.create("pipeline", 30, user="someone@example.com")
    assert [k.name for k in gh.keys.list(user="someone@example.com")] == ["pipeline"]
    assert "key" not in next(gh.keys.list(user="someone@example.com"))  # shown once only
    someone = connect("someone@example.com")
    assert next(someone.keys.list()).id == created["id"]
    someone.keys.revoke(created["id"])
    assert gh.keys.list(user="someone@example.com").to_list() == []
    assert gh.users.delete("someone@example.com") == {"deleted": ["someone@example.com"]}


def test_annotations_v2_page_transparently(gh, mb20):
    points = [
        {"kind": "point", "pos": [i, 0, 0], "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(25)
    ]
    keys = gh.annotations.upload(mb20, points, chunk_size=10)  # three requests
    assert keys == [f"Pt{i}_0_0" for i in range(25)]
    listed = list(gh.annotations.list(mb20, page_size=7))  # four pages, read as one iterator
    assert sorted(a["key"] for a in listed) == sorted(keys)
    assert len(list(gh.annotations.list(mb20, tag="even", page_size=5))) == 13

    iterator = gh.annotations.list(mb20, page_size=10)
    first = next(iterator)  # lazily: one page fetched so far
    assert isinstance(first, Annotation) and first.kind == first["kind"] == "point"
    assert "Listing of annotations of mb20: [Annotation({'key': " in repr(iterator)  # peeks, keeps
    assert len(list(iterator)) == 24

    key = gh.annotations.add(mb20, kind="sphere", pos=[5, 5, 5, 9, 9, 9], title="soma")
    assert key == "Sp5_5_5_9_9_9"
    gh.annotations.add(
        mb20, {"kind": "sphere", "pos": [5, 5, 5, 9, 9, 9], "prop": {"ok": True}}, replace=False
    )
    [soma] = gh.annotations.list(mb20, kind="sphere")
    assert soma["title"] == "soma" and soma["prop"] == {"ok": True}  # merged, not replaced
    gh.annotations.add(mb20, kind="point", pos=[99, 0, 0], move_key="Pt0_0_0")
    gh.annotations.delete(mb20, "Pt99_0_0")
    with pytest.raises(NotFound):
        gh.annotations.delete(mb20, "Pt99_0_0")
    assert len(list(gh.annotations.list(mb20))) == 25  # 24 points and the sphere


def test_annotations_bulk_upload_shows_progress(gh, mb20, capsys):
    points = [{"kind": "point", "pos": [i, 1, 2]} for i in range(2500)]
    keys = gh.annotations.upload(mb20, iter(points), chunk_size=1000, progress=True)
    assert len(keys) == 2500
    assert "2500/2500" in capsys.readouterr().err  # tqdm's bar on stderr
    with pytest.raises(ValueError):
        gh.annotations.upload(mb20, points, chunk_size=10_001)


def test_annotations_as_dataframe(gh, mb20):
    gh.annotations.upload(
        mb20,
        [
            {"kind": "point", "pos": [1, 2, 3], "prop": {"confidence": 0.9}, "tags": ["synapse"]},
            {"kind": "lineseg", "pos": [0, 0, 0, 10, 10, 10]},
        ],
    )
    frame = gh.annotations.as_dataframe(mb20)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    assert {"key", "user", "kind", "pos", "prop.confidence"} <= set(frame.columns)
    assert frame.set_index("key").loc["Pt1_2_3", "prop.confidence"] == 0.9
    assert list(gh.annotations.as_dataframe(mb20, kind="sphere").columns) == ["key", "user", "kind", "pos"]


def test_annotations_v1_savedsearches_and_atlas(gh, connect, mb20):
    gh.annotations.v1.put(mb20, (50, 30, 50), {"foo": "bar"})
    [v1] = gh.annotations.v1.list(mb20)
    assert (v1.locationkey, v1.foo) == ("50_30_50", "bar")
    gh.annotations.v1.delete(mb20, (50, 30, 50))
    assert gh.annotations.v1.list(mb20).to_list() == []

    gh.savedsearches.save(mb20, (1, 2, 3), {"query": "kc"})
    [search] = gh.savedsearches.list(mb20)
    assert (search.locationkey, search["query"]) == ("1_2_3", "kc")
    gh.savedsearches.delete(mb20, (1, 2, 3))
    assert list(gh.savedsearches.list(mb20)) == []

    entry = gh.atlas.add(mb20, (50, 30, 50), "weird point", "it is really strange")
    assert entry["verified"] is False and entry["title"] == "weird point"
    assert [e.locationkey for e in gh.atlas.list(mb20)] == ["50_30_50"]
    assert gh.atlas.verify(entry["id"])["verified"] is True
    assert gh.atlas.verify(entry["id"], verified=True)["verified"] is True
    assert [e["id"] for e in connect(RESEARCHER).atlas.all()] == [entry["id"]]  # verified: visible
    gh.atlas.delete(mb20, (50, 30, 50))
    assert gh.atlas.all().to_list() == []


def test_signatures(gh, workdir):
    from tests.conftest import BUCKETS
    from tools import build_signatures, dev

    # A name no other test uses: the gateway's signatures process keeps each dataset's index
    # info for a while, and an earlier test's hemibrain is gone.
    gh.datasets.create("sigclient", "public", public=True)
    demo = dev.demo_signatures(os.path.join(workdir, "client-signatures.npy"))
    build_signatures.build(BUCKETS[1], "sigclient", build_signatures.read_records(demo), progress=False)
    near = gh.signatures.at("sigclient", (17000, 20000, 18010))
    assert near["point"] == [17000, 20000, 18000] and int(near["signature"])  # int64 as a decimal string
    matches = gh.signatures.like("sigclient", dev.DEMO_POINT)
    assert matches and {"point", "dist", "score"} <= set(matches[0])
    with pytest.raises(NotFound):
        gh.signatures.at("sigclient", (0, 0, 0))


def test_transfer_submit_and_wait_with_progress(connect, mb20, capsys):
    researcher = connect(RESEARCHER)
    job = researcher.transfer.submit(mb20, "denoise", center=(5000, 5000, 5000))
    assert job.addr.startswith("https://") and job.source.startswith("precomputed://gs://")
    done = job.wait(timeout=60, poll=0.2, progress=True)
    assert done["status"] == "done" and len(done["parts"]) == 8
    assert "8/8" in capsys.readouterr().err
    assert [j["id"] for j in researcher.transfer.list()] == [job.id]
    assert researcher.transfer.get(job.id)["status"] == "done"


def test_transfer_failure_raises_job_failed(connect, mb20, transfer_service):
    transfer_service.script = lambda offset, attempt: "fail" if offset == (128, 0, 0) else "ok"
    job = connect(RESEARCHER).transfer.submit(mb20, "denoise", center=(5000, 5000, 5000))
    with pytest.raises(JobFailed) as caught:
        job.wait(timeout=60, poll=0.2)
    assert caught.value.details["status"] == "failed" and caught.value.details["failed_parts"]


def test_rate_limits_are_retried_politely(gh, connect, mb20):
    gh.twins.define(
        path="lab.ping",
        description="answers pong",
        dataset=mb20,
        rate_limit={"calls": 1, "per_seconds": 1},
        public={"code": "def ping(context):\n    return 'pong'"},
    )
    patient, impatient = connect(RESEARCHER), connect(RESEARCHER, retries=0)
    started = time.monotonic()
    assert [patient.twins.lab.ping() for _ in range(3)] == ["pong"] * 3  # waits out Retry-After
    assert time.monotonic() - started >= 1.0
    with pytest.raises(RateLimited) as caught:
        impatient.twins.lab.ping()
        impatient.twins.lab.ping()
    assert caught.value.status == 429 and int(caught.value.response.headers["Retry-After"]) >= 1


def test_a_long_retry_after_is_not_waited_out(gh, connect, mb20):
    gh.twins.define(
        path="lab.hourly",
        description="once an hour",
        dataset=mb20,
        rate_limit={"calls": 1, "per_seconds": 3600},
        public={"code": "def hourly(context):\n    return 'ok'"},
    )
    researcher = connect(RESEARCHER)  # retries=3, max_wait=30 s
    assert researcher.twins.lab.hourly() == "ok"
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        researcher.twins.lab.hourly()
    assert time.monotonic() - started < 5  # Retry-After is far past max_wait: raised at once
    assert int(caught.value.response.headers["Retry-After"]) > 30
