"""annotations v1 and v2, saved searches: per-user data, validation, bulk writes, paging."""

import threading
import time

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error

DS = "mb20"
ALICE, BOB, CURATOR = "alice@example.com", "bob@example.com", "curator@example.com"


@pytest.fixture
def world(api):
    api.add_dataset(DS)
    api.add_user(ALICE, datasets={DS: ["clio_general"]}, groups=["lab"])
    api.add_user(BOB, datasets={DS: ["clio_general"]}, groups=["lab"])
    api.add_user(CURATOR, datasets={DS: ["clio_write"]})


def _audit(action):
    from common.storage import store

    return [s.to_dict() for s in store.collection("audit").stream() if s.get("action") == action]


# -- v1 and saved searches: one free-form object per user and location --------------------------


@pytest.mark.parametrize("resource", ["annotations", "savedsearches"])
def test_v1_post_get_delete_per_user(api, world, resource):
    at = f"/{resource}/{DS}?x=50&y=30&z=50"
    assert api.post(at, user=ALICE, json={"foo": "bar"}).get_json() == {"key": "50_30_50"}
    assert api.post(at, user=ALICE, json={"foo": "baz", "user": "forged@example.com"}).status_code == 200
    assert api.post(at, user=BOB, json={"bob's": True}).status_code == 200
    mine = api.get(f"/{resource}/{DS}", user=ALICE).get_json()
    assert list(mine) == ["50_30_50"]
    entry = mine["50_30_50"]
    assert entry["foo"] == "baz" and entry["user"] == ALICE  # overwritten; the server's user wins
    assert entry["location"] == [50, 30, 50] and entry["locationkey"] == "50_30_50" and entry["timestamp"]
    assert "bob's" not in entry
    assert api.delete(at, user=ALICE).status_code == 200
    assert api.get(f"/{resource}/{DS}", user=ALICE).get_json() == {}
    assert "50_30_50" in api.get(f"/{resource}/{DS}", user=BOB).get_json()  # Bob's is untouched
    assert_error(api.delete(at, user=ALICE), 404, "not_found")
    assert len(_audit(("annotation_v1" if resource == "annotations" else "saved_search") + "_put")) == 3


@pytest.mark.parametrize("resource", ["annotations", "savedsearches"])
@pytest.mark.parametrize("query", ["x=1.5&y=2&z=3", "x=a&y=2&z=3", "y=2&z=3", "x=1&y=2&z=2147483648"])
def test_v1_location_must_be_integers(api, world, resource, query):
    assert_error(api.post(f"/{resource}/{DS}?{query}", user=ALICE, json={}), 400, "bad_request")


@pytest.mark.parametrize("resource", ["annotations", "savedsearches"])
def test_v1_bodies(api, world, resource):
    at = f"/{resource}/{DS}?x=1&y=2&z=3"
    for body in (["a"], "text", 3):
        assert_error(api.post(at, user=ALICE, json=body), 422, "validation_error")
    assert_error(
        api.post(at, user=ALICE, data="{not json", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )
    assert_error(api.post(at, user=ALICE, json={"nested": [[1]]}), 422, "validation_error")
    assert_error(api.post(f"/{resource}/nosuch?x=1&y=2&z=3", user=ALICE, json={}), 404, "not_found")
    assert api.get(f"/{resource}/{DS}", user=ALICE).get_json() == {}


# -- v2: typed annotations --------------------------------------------------------------------


def v2(api, user=ALICE, query="", **kw):
    return api.post(f"/annotations/v2/{DS}{query}", user=user, **kw)


def listed(api, user=ALICE, query=""):
    r = api.get(f"/annotations/v2/{DS}{query}", user=user)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_v2_kinds_and_keys(api, world):
    assert v2(api, json={"kind": "point", "pos": [1, -2, 3], "tags": ["t"], "prop": {"a": 1}}).get_json() == {
        "key": "Pt1_-2_3"
    }
    r = v2(
        api,
        json=[
            {"kind": "lineseg", "pos": [1, 2, 3, 4, 5, 6], "title": "axon"},
            {"kind": "sphere", "pos": [0, 0, 0, 10, 10, 10], "description": "soma"},
        ],
    )
    assert r.get_json() == {"keys": ["Ln1_2_3_4_5_6", "Sp0_0_0_10_10_10"]}
    items = {a["key"]: a for a in listed(api)}
    assert set(items) == {"Pt1_-2_3", "Ln1_2_3_4_5_6", "Sp0_0_0_10_10_10"}
    point = items["Pt1_-2_3"]
    assert point["user"] == ALICE and point["kind"] == "point" and point["pos"] == [1, -2, 3]
    assert point["tags"] == ["t"] and point["prop"] == {"a": 1} and point["timestamp"]
    assert listed(api, BOB) == []  # another user never sees them


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "point", "pos": [1.0, 2, 3]},  # floats are not coerced
        {"kind": "point", "pos": ["1", 2, 3]},  # nor strings
        {"kind": "point", "pos": [True, 2, 3]},
        {"kind": "point", "pos": [1, 2]},  # wrong length for the kind
        {"kind": "lineseg", "pos": [1, 2, 3]},
        {"kind": "sphere", "pos": [1, 2, 3, 4, 5, 6, 7]},
        {"kind": "point", "pos": [1, 2, 2**31]},  # outside [-2^31, 2^31)
        {"kind": "polygon", "pos": [1, 2, 3]},
        {"kind": "point", "pos": [1, 2, 3], "colour": "red"},  # unknown field
        {"kind": "point", "pos": [1, 2, 3], "user": "not-an-email"},
        {"kind": "point", "pos": [1, 2, 3], "prop": [1]},
        {"pos": [1, 2, 3]},
        [],
        "point",
    ],
)
def test_v2_validation(api, world, body):
    body_text = assert_error(v2(api, json=body), 422, "validation_error")
    assert body_text.get("details")
    assert listed(api) == []


def test_v2_list_is_validated_whole_before_any_write(api, world):
    good = [{"kind": "point", "pos": [i, 0, 0]} for i in range(600)]
    r = v2(api, json=good + [{"kind": "point", "pos": [1, 2]}])
    details = assert_error(r, 422, "validation_error")["details"]
    assert details[0]["loc"][:2] == ["list", 600]
    assert listed(api) == []


def test_v2_more_than_10000_is_413_and_writes_nothing(api, world):
    body = [{"kind": "point", "pos": [i, 0, 0]} for i in range(10_001)]
    assert_error(v2(api, json=body), 413, "payload_too_large")
    assert listed(api, query="?limit=1") == []


def test_v2_bulk_is_committed_500_writes_at_a_time_and_idempotent(api, world):
    body = [{"kind": "point", "pos": [i, 1, 2]} for i in range(1_200)]
    r = v2(api, json=body)
    assert r.status_code == 200 and len(r.get_json()["keys"]) == 1_200
    commits = _audit("annotations_write")
    assert sorted(len(c["after"]["keys"]) for c in commits) == [202, 499, 499]  # + 1 audit write each
    assert v2(api, json=body).status_code == 200  # a retry of the same list changes nothing
    assert len(listed(api)) == 1_200


def _failing_commit(monkeypatch, failing_key: str, *, pause: float = 0.0) -> dict[str, int]:
    """commits.commit failing with ServiceUnavailable for the commit that writes `failing_key`
    (after pause / 3 s; the others commit after `pause` s); counts the commits in flight at once."""
    from google.api_core import exceptions

    from common.storage import commits

    real_commit, lock, seen = commits.commit, threading.Lock(), {"in_flight": 0, "most": 0}

    def flaky_commit(writes):
        with lock:
            seen["in_flight"] += 1
            seen["most"] = max(seen["most"], seen["in_flight"])
        try:
            failing = any(
                "key" in w.update.fields and w.update.fields["key"].string_value == failing_key
                for w in writes
            )
            time.sleep(pause / 3 if failing else pause)
            if failing:
                raise exceptions.ServiceUnavailable("store unavailable")
            return real_commit(writes)
        finally:
            with lock:
                seen["in_flight"] -= 1

    monkeypatch.setattr(commits, "commit", flaky_commit)
    return seen


def test_v2_failure_part_way_reports_what_was_written(api, world, monkeypatch):
    """The commits run concurrently: the one that fails is not written, the others are (the
    third commit, in flight with the second, is written although the second failed)."""
    _failing_commit(monkeypatch, "Pt499_0_0")  # the second commit's first annotation
    body = [{"kind": "point", "pos": [i, 0, 0]} for i in range(1_000)]
    r = v2(api, json=body)
    error = assert_error(r, 503, "unavailable")
    assert r.headers["Retry-After"]
    keys = [f"Pt{i}_0_0" for i in range(1_000)]
    assert error["details"] == {"written": keys[:499] + keys[998:], "not_written": keys[499:998]}
    assert sorted(a["key"] for a in listed(api)) == sorted(keys[:499] + keys[998:])
    monkeypatch.undo()
    assert v2(api, json=body).status_code == 200  # the retry completes it
    assert len(listed(api)) == 1_000


def test_v2_bulk_commits_run_concurrently_and_one_failing_is_reported_exactly(api, world, monkeypatch):
    """Four commits in flight at once; the second fails: the three others in flight are written,
    the one queued behind them starts only if none had failed yet, and the answer lists exactly
    what is stored."""
    from common.storage import commits

    seen = _failing_commit(monkeypatch, "Pt499_0_0", pause=0.3)
    body = [{"kind": "point", "pos": [i, 0, 0]} for i in range(2_000)]  # 5 commits: 4 x 499 + 4
    error = assert_error(v2(api, json=body), 503, "unavailable")
    assert seen["most"] == commits.CONCURRENT_COMMITS
    keys = [f"Pt{i}_0_0" for i in range(2_000)]
    written, not_written = error["details"]["written"], error["details"]["not_written"]
    assert written == keys[:499] + keys[998:1996]  # the fifth waited behind the failed second
    assert not_written == keys[499:998] + keys[1996:]
    assert sorted(a["key"] for a in listed(api)) == sorted(written)
    assert sorted(len(c["after"]["keys"]) for c in _audit("annotations_write")) == [499, 499, 499]


def test_v2_replace_merge_and_conditional(api, world):
    point = {"kind": "point", "pos": [5, 5, 5]}
    v2(api, json={**point, "title": "first", "prop": {"a": 1, "b": 2}, "tags": ["x"]})
    v2(api, query="?replace=false", json={**point, "prop": {"b": 3, "c": 4}})
    [a] = listed(api)
    assert a["title"] == "first" and a["prop"] == {"a": 1, "b": 3, "c": 4} and a["tags"] == ["x"]
    v2(api, query="?conditional=title", json={**point, "title": "second", "description": "d"})
    [a] = listed(api)
    assert a["title"] == "first" and a["description"] == "d" and "prop" not in a  # replaced, title kept
    v2(api, json={**point, "title": "third"})
    assert listed(api)[0]["title"] == "third"
    assert_error(v2(api, query="?conditional=pos", json=point), 400, "bad_request")
    assert_error(v2(api, query="?replace=maybe", json=point), 400, "bad_request")


def test_v2_move_key(api, world):
    v2(api, json={"kind": "point", "pos": [1, 1, 1], "title": "here"})
    r = v2(api, query="?move_key=Pt1_1_1", json={"kind": "point", "pos": [2, 2, 2], "title": "moved"})
    assert r.get_json() == {"key": "Pt2_2_2"}
    assert [a["key"] for a in listed(api)] == ["Pt2_2_2"]
    assert_error(
        v2(api, query="?move_key=Pt2_2_2", json=[{"kind": "point", "pos": [3, 3, 3]}]), 400, "bad_request"
    )
    assert_error(
        v2(api, query="?move_key=nonsense", json={"kind": "point", "pos": [3, 3, 3]}), 400, "bad_request"
    )


def test_v2_other_users_need_write_others(api, world):
    theirs = {"kind": "point", "pos": [1, 2, 3], "user": BOB}
    assert_error(v2(api, json=theirs), 403, "forbidden")
    assert_error(v2(api, json=[{"kind": "point", "pos": [0, 0, 0]}, theirs]), 403, "forbidden")
    assert listed(api) == []
    assert v2(api, CURATOR, json=theirs).status_code == 200
    assert [a["user"] for a in listed(api, BOB)] == [BOB]
    assert_error(api.get(f"/annotations/v2/{DS}?user={BOB}", user=ALICE), 403, "forbidden")
    assert [a["key"] for a in listed(api, CURATOR, f"?user={BOB}")] == ["Pt1_2_3"]
    assert_error(api.delete(f"/annotations/v2/{DS}/Pt1_2_3?user={BOB}", user=ALICE), 403, "forbidden")
    assert api.delete(f"/annotations/v2/{DS}/Pt1_2_3?user={BOB}", user=CURATOR).status_code == 204
    assert listed(api, BOB) == []
    assert_error(api.delete(f"/annotations/v2/{DS}/Pt1_2_3?user={BOB}", user=CURATOR), 404, "not_found")
    assert_error(api.get(f"/annotations/v2/{DS}?user=nonsense", user=CURATOR), 400, "bad_request")


def test_v2_groups(api, world):
    v2(api, ALICE, json={"kind": "point", "pos": [1, 1, 1]})
    v2(api, BOB, json={"kind": "point", "pos": [2, 2, 2]})
    v2(api, CURATOR, json={"kind": "point", "pos": [3, 3, 3]})
    assert {a["user"] for a in listed(api, ALICE, "?groups=lab")} == {ALICE, BOB}
    assert_error(api.get(f"/annotations/v2/{DS}?groups=lab", user=CURATOR), 403, "forbidden")
    assert {a["user"] for a in listed(api, OWNER, "?groups=lab")} == {ALICE, BOB}  # admins: any group
    assert listed(api, OWNER, "?groups=nobody") == []
    assert_error(api.get(f"/annotations/v2/{DS}?groups=lab&user={BOB}", user=ALICE), 400, "bad_request")


def test_v2_groups_larger_than_one_in_filter(api, world):
    """More than 30 members: several `in` queries, merged in key order and paged across them."""
    members = [f"m{i:02d}@example.com" for i in range(35)]
    api.post(
        "/users",
        user=OWNER,
        json={m: {"groups": ["big"], "datasets": {DS: ["clio_general"]}} for m in members},
    )
    for m in members:
        v2(api, OWNER, json={"kind": "point", "pos": [0, 0, 0], "user": m})
    everyone = listed(api, OWNER, "?groups=big")
    assert sorted(a["user"] for a in everyone) == members
    seen, query = [], "?groups=big&limit=10"
    while True:
        r = api.get(f"/annotations/v2/{DS}{query}", user=OWNER)
        seen += [a["user"] for a in r.get_json()]
        if "Link" not in r.headers:
            break
        query = "?" + r.headers["Link"].split("?", 1)[1].split(">")[0]
    assert seen == [a["user"] for a in everyone]


def test_v2_filters_and_paging(api, world):
    v2(
        api,
        json=[
            {"kind": "point", "pos": [i, 0, 0], "tags": ["even" if i % 2 == 0 else "odd"]} for i in range(25)
        ]
        + [{"kind": "sphere", "pos": [0, 0, 0, 1, 1, 1], "tags": ["even"]}],
    )
    assert len(listed(api, query="?kind=point")) == 25
    assert [a["kind"] for a in listed(api, query="?kind=sphere")] == ["sphere"]
    assert len(listed(api, query="?tag=even")) == 14
    assert len(listed(api, query="?tag=even&kind=point")) == 13
    assert_error(api.get(f"/annotations/v2/{DS}?kind=polygon", user=ALICE), 400, "bad_request")
    assert_error(api.get(f"/annotations/v2/{DS}?limit=0", user=ALICE), 400, "bad_request")
    pages, query = [], "?limit=10&kind=point"
    while True:
        r = api.get(f"/annotations/v2/{DS}{query}", user=ALICE)
        pages.append([a["key"] for a in r.get_json()])
        if "Link" not in r.headers:
            break
        assert r.headers["Link"].endswith('>; rel="next"')
        query = "?" + r.headers["Link"].split("?", 1)[1].split(">")[0]
        # the cursor stays valid when the last annotation it names is deleted
        api.delete(f"/annotations/v2/{DS}/{pages[-1][-1]}", user=ALICE)
    assert [len(p) for p in pages] == [10, 10, 5]
    assert len({k for p in pages for k in p}) == 25
    assert_error(api.get(f"/annotations/v2/{DS}?limit=5&cursor=%%%", user=ALICE), 400, "bad_request")


def test_emails_with_a_slash_are_refused_not_500(api, world):
    odd = "a/b@example.com"  # valid by RFC 5322; a Firestore document id cannot hold "/"
    assert_error(api.post("/users", user=OWNER, json={odd: {}}), 422, "validation_error")
    assert_error(
        v2(api, CURATOR, json={"kind": "point", "pos": [1, 2, 3], "user": odd}), 422, "validation_error"
    )
    assert_error(api.get(f"/annotations/v2/{DS}?user={odd}", user=CURATOR), 400, "bad_request")


def test_v2_delete_unknown_key(api, world):
    assert_error(api.delete(f"/annotations/v2/{DS}/Pt9_9_9", user=ALICE), 404, "not_found")
    assert_error(api.delete(f"/annotations/v2/{DS}/..", user=ALICE), 404, "not_found")
