"""clio's key-value store and pull requests (the kv function), replayed as its clients call them:
the clio website's merge tool (MergeBackendCloud: restore, store, pullRequest) and neuclease's
`fetch_pull_requests`, whose parsing is rewritten below and run on the answer; then the rules
Gatehouse adds (own data only, admins for others' pull requests, sizes, audit, deletion with the
user)."""

from __future__ import annotations

import datetime
import json
import time

import pytest

from tests.conftest import OWNER
from tests.utils import assert_error

ALICE, BOB = "alice@example.com", "bob@example.com"
SCOPE = "merges-mb20-v1.0"  # the website's scope: merges-<dataset key>-<tag>
BASE = f"/v2/kv/{SCOPE}"
JSON = {"Content-Type": "application/json"}  # the merge tool sends it on every call, GETs too


# -- the website's merge tool (src/Annotation/MergeBackendCloud.js) -----------------------------


def _restore(api, user):
    """MergeBackendCloud.restore: three GETs; 404 reads as empty, mainOrdered as `.array`."""
    found = []
    for key, empty in (("mainToOthers", {}), ("otherToMain", {}), ("mainOrdered", [])):
        r = api.get(f"{BASE}/{key}", user=user, headers=JSON)
        assert r.status_code in (200, 404), r.get_data(as_text=True)
        found.append(r.get_json() if r.status_code == 200 else empty)
    main_to_others, other_to_main, ordered = found
    return main_to_others or {}, other_to_main or {}, (ordered or {}).get("array") or []


def _store(api, user, main_to_others, other_to_main, main_ordered):
    """MergeBackendCloud.store: three POSTs, each only after the one before answered ok."""
    for key, value in (
        ("mainToOthers", main_to_others),
        ("otherToMain", other_to_main),
        ("mainOrdered", {"array": main_ordered}),
    ):
        r = api.post(f"{BASE}/{key}", user=user, data=json.dumps(value), headers=JSON)
        assert r.status_code == 200, r.get_data(as_text=True)  # res.ok
        assert r.get_json() is None


def test_the_merge_tool_restores_empty_stores_and_submits_a_pull_request(api):
    assert _restore(api, ALICE) == ({}, {}, [])  # nothing stored yet: three 404s
    merges = {"10017": [10043, 10086]}
    _store(api, ALICE, merges, {"10043": 10017, "10086": 10017}, [10017])
    assert _restore(api, ALICE) == (merges, {"10043": 10017, "10086": 10017}, [10017])
    # MergeBackendCloud.pullRequest: res.json() of a 200
    r = api.post(
        "/v2/pull-request", user=ALICE, data=json.dumps({"pull": f"kv/{SCOPE}/mainToOthers"}), headers=JSON
    )
    assert r.status_code == 200 and r.get_json() is None
    # another user's merge tool sees only their own (empty) stores
    assert _restore(api, BOB) == ({}, {}, [])


# -- neuclease (neuclease/clio/pullrequest.py fetch_pull_requests) ----------------------------


def parse_pull_requests(data):
    """neuclease's parsing of `GET /v2/pull-request`, rewritten: per user and scope exactly one
    key, `mainToOthers`; its `_timestamp` read as epoch seconds; the main bodies as ints."""
    cleaned, timestamps = {}, {}
    for email, scopes in data.items():
        cleaned[email], timestamps[email] = {}, {}
        for scope, merges in scopes.items():
            assert len(merges) == 1
            merges = dict(merges["mainToOthers"])
            timestamps[email][scope] = datetime.datetime.fromtimestamp(merges.pop("_timestamp"))
            cleaned[email][scope] = {int(main): bodies for main, bodies in merges.items()}
    return cleaned, timestamps


def _submit(api, user, merges):
    assert api.post(f"{BASE}/mainToOthers", user=user, json=merges).status_code == 200
    r = api.post("/v2/pull-request", user=user, json={"pull": f"kv/{SCOPE}/mainToOthers"})
    assert r.status_code == 200, r.get_data(as_text=True)


def test_neuclease_reads_everyones_pull_requests(api):
    before = time.time()
    _submit(api, ALICE, {"10017": [10043]})
    _submit(api, BOB, {"20001": [20002, 20003]})
    # neuclease's session.get(f"{base}/v2/pull-request", params={"user_email": "all"}) as an admin
    r = api.get("/v2/pull-request?user_email=all", user=OWNER)
    assert r.status_code == 200, r.get_data(as_text=True)
    cleaned, timestamps = parse_pull_requests(r.get_json())
    assert cleaned == {ALICE: {SCOPE: {10017: [10043]}}, BOB: {SCOPE: {20001: [20002, 20003]}}}
    for email in (ALICE, BOB):
        assert before - 1 <= timestamps[email][SCOPE].timestamp() <= time.time() + 1
    # one user's, by email (neuclease asserts the '@'): the caller's own, or any for an admin
    mine = api.get(f"/v2/pull-request?user_email={ALICE}", user=ALICE).get_json()
    assert parse_pull_requests(mine)[0] == {ALICE: {SCOPE: {10017: [10043]}}}
    assert api.get(f"/v2/pull-request?user_email={ALICE}", user=OWNER).get_json() == mine


def test_a_pull_request_is_a_copy_taken_when_it_is_submitted(api):
    _submit(api, ALICE, {"1": [2]})
    api.post(f"{BASE}/mainToOthers", user=ALICE, json={"1": [2, 3]})  # edited after submitting
    (submitted,) = api.get("/v2/pull-request", user=ALICE).get_json()[ALICE][SCOPE].values()
    assert submitted["1"] == [2] and isinstance(submitted["_timestamp"], float)


# -- the store's rules -------------------------------------------------------------------------


def test_values_are_the_callers_own_and_timestamped_on_write(api):
    before = time.time()
    assert api.post(f"{BASE}/k", user=ALICE, json={"a": 1, "nested": {"b": [1, "x"]}}).status_code == 200
    assert api.get(f"{BASE}/k", user=ALICE).get_json() == {"a": 1, "nested": {"b": [1, "x"]}}
    stamped = api.get(f"{BASE}/k?timestamp=true", user=ALICE).get_json()
    assert before - 1 <= stamped["_timestamp"] <= time.time() + 1
    assert api.get(BASE, user=ALICE).get_json() == {"k": {"a": 1, "nested": {"b": [1, "x"]}}}
    assert (
        api.get(f"{BASE}?timestamp=true", user=ALICE).get_json()["k"]["_timestamp"] == stamped["_timestamp"]
    )
    assert_error(api.get(f"{BASE}/k", user=BOB), 404, "not_found")  # Bob's store has no k
    assert api.get(BASE, user=BOB).get_json() == {}
    # a trailing slash and unknown query parameters (malevnc, clio-py add app=...) change nothing
    assert api.get(f"{BASE}/k/?app=natverse", user=ALICE).get_json() == {"a": 1, "nested": {"b": [1, "x"]}}


def test_delete_is_200_also_when_there_is_nothing(api):
    api.post(f"{BASE}/k", user=ALICE, json={"a": 1})
    for _ in range(2):
        r = api.delete(f"{BASE}/k", user=ALICE)
        assert r.status_code == 200 and r.get_json() is None
    body = assert_error(api.get(f"{BASE}/k", user=ALICE), 404, "not_found")
    assert body["detail"] == body["message"]  # clio's clients read detail


@pytest.mark.parametrize(
    "body,status",
    [
        ([1, 2], 422),  # a value is a JSON object
        ({"a": [[1]]}, 422),  # Firestore cannot hold an array directly inside an array
        ({"big": "x" * (1 << 20)}, 413),  # at most 1 MiB
    ],
)
def test_a_value_is_a_storable_json_object_of_at_most_1_mib(api, body, status):
    r = api.post(f"{BASE}/k", user=ALICE, json=body)
    assert r.status_code == status, r.get_data(as_text=True)
    assert api.get(f"{BASE}/k", user=ALICE).status_code == 404


@pytest.mark.parametrize("pull", ["kv/s", "kv/s/k/x", "annotations/s/k", ""])
def test_a_pull_names_one_of_the_callers_values(api, pull):
    assert_error(api.post("/v2/pull-request", user=ALICE, json={"pull": pull}), 400, "bad_request")


def test_pulling_a_missing_value_is_404(api):
    api.post(f"{BASE}/k", user=BOB, json={"a": 1})  # Bob's, not Alice's
    assert_error(api.post("/v2/pull-request", user=ALICE, json={"pull": f"kv/{SCOPE}/k"}), 404, "not_found")


def test_others_pull_requests_need_admin(api):
    _submit(api, ALICE, {"1": [2]})
    assert api.get("/v2/pull-request?user_email=", user=ALICE).get_json().keys() == {ALICE}  # "" = self
    assert api.get("/v2/pull-request", user=BOB).get_json() == {}
    for query in (f"user_email={ALICE}", "user_email=all"):
        assert_error(api.get(f"/v2/pull-request?{query}", user=BOB), 403, "forbidden")
    assert_error(api.get("/v2/pull-request?user_email=nobody", user=OWNER), 400, "bad_request")


def test_unauthenticated_is_401(api):
    """neuroglancer and the website try without a token first and sign in on a 401."""
    for method, path in (("GET", f"{BASE}/k"), ("POST", "/v2/pull-request"), ("GET", "/v2/pull-request")):
        assert_error(api.call(method, path), 401, "unauthenticated")


def test_deleting_a_user_deletes_their_values_and_pull_requests(api):
    api.add_user(ALICE, name="Alice")
    _submit(api, ALICE, {"1": [2]})
    _submit(api, BOB, {"3": [4]})
    r = api.delete("/users", user=OWNER, json=[ALICE])
    assert r.status_code == 200 and r.get_json() == {"deleted": [ALICE]}
    assert api.get(BASE, user=ALICE).get_json() == {}
    assert api.get("/v2/pull-request?user_email=all", user=OWNER).get_json().keys() == {BOB}
    assert api.get(f"{BASE}/mainToOthers", user=BOB).status_code == 200  # others' are kept
