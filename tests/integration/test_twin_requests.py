"""twins (SPEC §3): approval requests run once against private sides, and async jobs through
the Pub/Sub emulator's push subscription to the `job_work` worker."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest

from tests.conftest import BUCKETS, OWNER
from tests.utils import acknowledged, assert_error, wait_until

READER = "reader@example.com"  # clio_read on lab and on other
MANAGER = "manager@example.com"  # dataset_admin on lab
OTHER_MANAGER = "other-manager@example.com"  # dataset_admin on other
STRANGER = "stranger@example.com"  # clio_read on lab, not the requester
SECRET = "PRIVATE-ROW-4711"

# The private side counts its runs in its state: what proves how often it executed.
COUNTING = (
    "def count(context, n: int = 1):\n"
    "    runs = context.state.increment('runs')\n"
    "    return {'side': '{side}', 'n': n, 'runs': runs}\n"
)
SLOW = (
    "def slow(context, seconds: float = 1.0):\n    import time\n    time.sleep(seconds)\n    return 'slept'\n"
)
LEAKY = (
    "def leaky(context, n: int = 1):\n"
    f"    print('{SECRET}')\n"
    "    if n < 0:\n"
    f"        raise ValueError('{SECRET}')\n"
    "    return n\n"
)
BIG = "def big(context, size: int = 10):\n    return 'x' * size\n"


def _twin(path, code, dataset="lab", **fields):
    return {
        "path": path,
        "description": "d",
        "dataset": dataset,
        "mock": {"code": code.replace("{side}", "mock")},
        "private": {"code": code.replace("{side}", "private")},
        **fields,
    }


@pytest.fixture
def world(api):
    api.add_dataset("lab")
    api.add_dataset("other")
    api.add_user(READER, datasets={"lab": ["clio_read"], "other": ["clio_read"]})
    api.add_user(STRANGER, datasets={"lab": ["clio_read"]})
    api.add_user(MANAGER, datasets={"lab": ["dataset_admin"]})
    api.add_user(OTHER_MANAGER, datasets={"other": ["dataset_admin"]})
    for body in (
        _twin("lab.count", COUNTING),
        _twin("lab.slow", SLOW, timeout_s=10),
        _twin("lab.leaky", LEAKY),
        _twin("lab.big", BIG),
        _twin("other.count", COUNTING, dataset="other"),
    ):
        r = api.post("/twins", user=OWNER, json=body)
        assert r.status_code == 201, r.get_data(as_text=True)


def submit(api, code, endpoints, user=READER, **fields):
    r = api.post("/twins/requests", user=user, json={"endpoints": endpoints, "code": code, **fields})
    assert r.status_code == 201, r.get_data(as_text=True)
    return r.get_json()


def approve(api, request_id, user=MANAGER, reason="fine"):
    r = api.post(f"/twins/requests/{request_id}/approve", user=user, json={"reason": reason})
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def runs(api, path="lab.count"):
    """How often the private side of `path` has executed (its state counter)."""
    sides = api.get(f"/twins/{path}?full=true", user=OWNER).get_json()["sides"]
    return sides["private"]["state"].get("runs", 0)


def wait_job(api, location, user=READER, until=("done", "failed"), timeout=30.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get(location, user=user)
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in until:
            return body, seen
        time.sleep(0.05)
    raise AssertionError(f"job {location} still {seen} after {timeout} s")


USE_COUNT = "def use(count):\n    return [count(n=2), count.mock(n=3)]\n"


# -- the request lifecycle -----------------------------------------------------------------------


def test_pending_approved_done_then_a_second_run_returns_the_stored_result(api, world):
    request = submit(api, USE_COUNT, {"count": "lab.count"}, reason="cell counts for my paper")
    assert request["status"] == "pending" and request["requester"] == READER
    assert_error(api.post(f"/twins/requests/{request['id']}/run", user=READER), 409, "conflict")

    listed = api.get("/twins/requests", user=MANAGER).get_json()
    assert [r["id"] for r in listed] == [request["id"]] and listed[0]["code"] == USE_COUNT
    assert api.get("/twins/requests?status=pending", user=MANAGER).get_json()[0]["reason"].startswith("cell")
    assert api.get("/twins/requests?status=done", user=MANAGER).get_json() == []
    assert api.get("/twins/requests", user=OTHER_MANAGER).get_json() == []  # not their endpoint
    assert [r["id"] for r in api.get("/twins/requests", user=OWNER).get_json()] == [request["id"]]

    decided = approve(api, request["id"])
    assert decided["status"] == "approved" and decided["decided_by"] == MANAGER

    first = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert first.status_code == 200, first.get_data(as_text=True)
    result = first.get_json()["result"]
    assert result == [{"side": "private", "n": 2, "runs": 1}, {"side": "mock", "n": 3, "runs": 1}]
    again = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert again.status_code == 200 and again.get_json()["result"] == result
    assert runs(api) == 1

    shown = api.get(f"/twins/requests/{request['id']}", user=READER).get_json()
    assert shown["status"] == "done" and shown["result"] == result and "run" not in shown
    owner_view = api.get(f"/twins/requests/{request['id']}", user=MANAGER).get_json()
    assert len(owner_view["run"]["calls"]) == 2 and owner_view["run"]["status"] == "ok"
    # The endpoint calls it made are ordinary call records, tied to the request.
    calls = api.get("/twins/lab.count/calls", user=MANAGER).get_json()
    assert {c["origin"] for c in calls} == {f"request:{request['id']}"}
    assert {c["caller"] for c in calls} == {READER}


def test_denied_requests_cannot_run_nor_be_decided_again_after_a_run(api, world):
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    r = api.post(f"/twins/requests/{request['id']}/deny", user=MANAGER, json={"reason": "too broad"})
    assert r.status_code == 200 and r.get_json()["status"] == "denied"
    refused = assert_error(api.post(f"/twins/requests/{request['id']}/run", user=READER), 409, "conflict")
    assert "too broad" in refused["message"]
    assert runs(api) == 0
    # An approved request that has run is final.
    other = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, other["id"])
    assert api.post(f"/twins/requests/{other['id']}/run", user=READER).status_code == 200
    assert_error(api.post(f"/twins/requests/{other['id']}/deny", user=MANAGER), 409, "conflict")
    assert_error(api.post(f"/twins/requests/{other['id']}/approve", user=MANAGER), 409, "conflict")


def test_nobody_but_the_requester_runs_it(api, world):
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    assert_error(api.post(f"/twins/requests/{request['id']}/run", user=STRANGER), 404, "not_found")
    assert_error(api.get(f"/twins/requests/{request['id']}", user=STRANGER), 404, "not_found")
    assert_error(api.post(f"/twins/requests/{request['id']}/run", user=MANAGER), 403, "forbidden")
    assert_error(api.post(f"/twins/requests/{request['id']}/run", user=OWNER), 403, "forbidden")
    assert runs(api) == 0
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).status_code == 200


def test_approving_needs_ownership_of_every_endpoint_named(api, world):
    code = "def both(a, b):\n    return [a(n=1), b(n=1)]\n"
    request = submit(api, code, {"a": "lab.count", "b": "other.count"})
    for manager in (MANAGER, OTHER_MANAGER):  # each owns one of the two: sees it, cannot decide
        assert api.get(f"/twins/requests/{request['id']}", user=manager).status_code == 200
        assert_error(api.post(f"/twins/requests/{request['id']}/approve", user=manager), 403, "forbidden")
        assert_error(api.post(f"/twins/requests/{request['id']}/deny", user=manager), 403, "forbidden")
    assert_error(api.post(f"/twins/requests/{request['id']}/approve", user=READER), 403, "forbidden")
    approve(api, request["id"], user=OWNER)
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert [x["runs"] for x in r.get_json()["result"]] == [1, 1]


def test_an_owner_of_some_endpoints_sees_the_request_but_never_its_result_or_run_record(api, world):
    both = "both-manager@example.com"
    api.add_user(both, datasets={"lab": ["dataset_admin"], "other": ["dataset_admin"]})
    code = "def both(a, b):\n    print('-'.join(['RUN', 'OUTPUT']))\n    return [a(n=1), b(n=1)]\n"
    plain = submit(api, code, {"a": "lab.count", "b": "other.count"})
    queued = submit(api, code, {"a": "lab.count", "b": "other.count"})
    failing = submit(api, "def f(a, b):\n    return a(n=-1)\n", {"a": "lab.leaky", "b": "other.count"})
    for request in (plain, queued, failing):
        approve(api, request["id"], user=both)
    assert api.post(f"/twins/requests/{plain['id']}/run", user=READER).status_code == 200
    assert api.post(f"/twins/requests/{failing['id']}/run", user=READER).status_code == 500
    job = api.post(f"/twins/requests/{queued['id']}/run?async=1", user=READER).headers["Location"]
    wait_job(api, job)
    for partial in (MANAGER, OTHER_MANAGER):  # each owns one endpoint of two
        for request in (plain, queued, failing):
            shown = api.get(f"/twins/requests/{request['id']}", user=partial)
            assert shown.status_code == 200  # they see that it exists, and its status
            body = shown.get_json()
            assert body["status"] in ("done", "failed") and body["code"] == request["code"]
            assert not {"result", "error", "run"} & set(body), body
            assert "RUN-OUTPUT" not in shown.get_data(as_text=True)
        listed = api.get("/twins/requests", user=partial)
        assert {r["id"] for r in listed.get_json()} == {plain["id"], queued["id"], failing["id"]}
        assert "result" not in listed.get_data(as_text=True) and "RUN-OUTPUT" not in listed.get_data(
            as_text=True
        )
        assert_error(api.get(job, user=partial), 404, "not_found")
    for owner in (both, OWNER):  # owners of every endpoint named read the result and the run record
        body = api.get(f"/twins/requests/{plain['id']}", user=owner).get_json()
        assert body["result"] == [{"side": "private", "n": 1, "runs": 1}] * 2
        assert "RUN-OUTPUT" in body["run"]["stdout"]
        failed = api.get(f"/twins/requests/{failing['id']}", user=owner).get_json()
        assert failed["error"]["error"] == "endpoint_error" and failed["run"]["error_type"] == "EndpointError"
        assert api.get(job, user=owner).get_json()["status"] == "done"
    mine = api.get(f"/twins/requests/{plain['id']}", user=READER).get_json()  # the requester: the result
    assert mine["result"] and "run" not in mine
    assert api.get(job, user=READER).get_json()["result"]


def test_submission_is_checked(api, world):
    def refused(body, user=READER):
        return assert_error(api.post("/twins/requests", user=user, json=body), 422, "validation_error")

    refused({"endpoints": {"count": "lab.count"}, "code": "def f(other):\n    return 1\n"})
    refused({"endpoints": {"count": "lab.count"}, "code": "def f(count, more):\n    return 1\n"})
    refused({"endpoints": {"count": "lab.count"}, "code": "def f(count=1):\n    return 1\n"})
    refused(
        {"endpoints": {"count": "lab.count"}, "code": "import socketserver_x\ndef f(count):\n    return 1\n"}
    )
    refused({"endpoints": {"count": "lab.count"}, "code": "def f(count)\n    return 1\n"})
    refused({"endpoints": {"class": "lab.count"}, "code": "def f(count):\n    return 1\n"})
    refused({"endpoints": {}, "code": "def f():\n    return 1\n"})
    refused({"endpoints": {"count": "lab.count"}, "code": "def f(count):\n    return 1\n", "extra": 1})
    # An endpoint the caller may not see is answered as missing, in the body's terms.
    refused({"endpoints": {"count": "other.count"}, "code": "def f(count):\n    return 1\n"}, user=STRANGER)
    refused({"endpoints": {"count": "no.such"}, "code": "def f(count):\n    return 1\n"})
    assert api.get("/twins/requests", user=OWNER).get_json() == []


@pytest.mark.parametrize(
    "expression",
    ["-" * 100_000 + "1", "(" * 5_000 + "1" + ")" * 5_000, "[" * 5_000 + "]" * 5_000, "-" * 1_000 + "1"],
    ids=["unary_minus", "parentheses", "lists", "parses_but_does_not_compile"],
)
def test_deeply_nested_request_code_is_422_not_500(api, world, expression):
    code = f"def use(count):\n    return {expression}\n"
    r = api.post("/twins/requests", user=READER, json={"endpoints": {"count": "lab.count"}, "code": code})
    body = assert_error(r, 422, "validation_error")
    assert body["message"].startswith("code: ") and "nested" in body["message"], body["message"]
    assert body["details"][0]["loc"] == ["body", "code"]
    assert api.get("/twins/requests", user=OWNER).get_json() == []


@pytest.mark.parametrize(
    "code, line, name",
    [
        ("def use(count):\n    return eval('count(n=1)')\n", 2, "eval"),
        ("def use(count):\n    run = exec\n    run('x = 1')\n", 2, "exec"),
        ("import builtins\n\ndef use(count):\n    return builtins.compile('1', 'x', 'eval')\n", 4, "compile"),
        ("def use(count):\n    return __builtins__['eval']('1')\n", 2, "eval"),
        ("import builtins as b\ndef use(count):\n    return getattr(b, 'exec')('1')\n", 3, "exec"),
        ("def use(count):\n    from builtins import eval as e\n    return e('1')\n", 2, "eval"),
        ("def use(count):\n    return __import__('json').dumps(count(n=1))\n", 2, "__import__"),
    ],
)
def test_request_code_that_makes_code_at_run_time_is_refused_with_the_line(api, world, code, line, name):
    r = api.post("/twins/requests", user=READER, json={"endpoints": {"count": "lab.count"}, "code": code})
    body = assert_error(r, 422, "validation_error")
    assert body["message"].startswith(f"code: line {line}: request code may not use {name}"), body["message"]
    assert body["details"][0]["line"] == line and body["details"][0]["type"] == "code_error"


def test_names_the_code_binds_itself_are_not_the_builtins(api, world):
    code = "import re\n\ndef use(compile):\n    return [re.compile('a+').pattern, compile(n=1)['n']]\n"
    request = submit(api, code, {"compile": "lab.count"})
    approve(api, request["id"])
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).get_json() == {"result": ["a+", 1]}


# -- single use ----------------------------------------------------------------------------------


def test_two_concurrent_runs_execute_the_code_once(api, world):
    code = "def use(count, slow):\n    slow(seconds=0.5)\n    return count(n=1)\n"
    request = submit(api, code, {"count": "lab.count", "slow": "lab.slow"})
    approve(api, request["id"])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(lambda _: api.post(f"/twins/requests/{request['id']}/run", user=READER), range(2))
        )
    assert [a.status_code for a in answers] == [200, 200], [a.get_data(as_text=True) for a in answers]
    assert (
        answers[0].get_json() == answers[1].get_json() == {"result": {"side": "private", "n": 1, "runs": 1}}
    )
    assert runs(api) == 1


# -- bound to the endpoints as approved ----------------------------------------------------------


@pytest.mark.parametrize(
    "change", ["replace_private", "replace_mock", "recreate", "settings_private", "settings_mock"]
)
def test_an_endpoint_changed_after_approval_makes_the_run_409(api, world, change):
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    if change == "recreate":
        assert api.delete("/twins/lab.count", user=OWNER).status_code == 204
        assert api.post("/twins", user=OWNER, json=_twin("lab.count", COUNTING)).status_code == 201
    elif change.startswith("settings_"):  # settings only: the side's code and generation stay
        body = {"settings": {change.split("_")[1]: {"token": "changed"}}}
        assert api.call("PATCH", "/twins/lab.count", user=OWNER, json=body).status_code == 200
    else:
        side = change.split("_")[1]
        body = {side: {"code": COUNTING.replace("{side}", "new")}}
        assert api.call("PATCH", "/twins/lab.count", user=OWNER, json=body).status_code == 200
    refused = assert_error(api.post(f"/twins/requests/{request['id']}/run", user=READER), 409, "conflict")
    assert "lab.count" in refused["message"]
    assert runs(api) == 0
    # A new approval binds the endpoint as it is now.
    approve(api, request["id"])
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).status_code == 200


def test_an_approval_binds_a_hash_of_the_settings_never_the_settings(api, world):
    from common.storage import store

    token = "SETTING-TOKEN-0815"
    body = {"settings": {"private": {"token": token}}}
    assert api.call("PATCH", "/twins/lab.count", user=OWNER, json=body).status_code == 200
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    # The same settings sent again change nothing: the approval holds.
    assert api.call("PATCH", "/twins/lab.count", user=OWNER, json=body).status_code == 200
    stored = store.collection("twin_requests").document(request["id"]).get().to_dict()
    assert token not in json.dumps(stored, default=str)
    assert set(stored["approved"]["settings"]["count"]) == {"mock", "private"}
    for user in (READER, MANAGER, OWNER):
        shown = api.get(f"/twins/requests/{request['id']}", user=user)
        assert token not in shown.get_data(as_text=True) and "approved" not in shown.get_json()
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert runs(api) == 1


# -- checked again at run time -------------------------------------------------------------------


def _revoke(api, how):
    """READER loses the right to run: their grant on lab revoked, or their account disabled,
    through the API, or (`elsewhere`) straight in Firestore as another instance would, which
    this instance's role cache does not see."""
    from common.storage import store

    if how == "grant":
        api.add_user(READER, datasets={"other": ["clio_read"]})
    elif how == "disabled":
        api.add_user(READER, disabled=True)
    elif how == "grant_elsewhere":
        store.collection("users").document(READER).update({"datasets": {"other": ["clio_read"]}})
    else:
        store.collection("users").document(READER).update({"disabled": True})


REVOKED = {"grant": 404, "grant_elsewhere": 404, "disabled": 403, "disabled_elsewhere": 403}


@pytest.mark.parametrize("how", sorted(REVOKED))
def test_a_run_rechecks_the_requester_and_nothing_runs_when_they_lost_access(api, world, how):
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    _revoke(api, how)
    for path in (f"/twins/requests/{request['id']}/run", f"/twins/requests/{request['id']}/run?async=1"):
        r = api.post(path, user=READER)
        body = assert_error(r, REVOKED[how], "not_found" if REVOKED[how] == 404 else "forbidden")
        if REVOKED[how] == 404:
            assert "lab.count" in body["message"]
    assert runs(api) == 0
    assert api.get(f"/twins/requests/{request['id']}", user=OWNER).get_json()["status"] == "approved"
    assert api.get("/twins/lab.count/calls", user=OWNER).get_json() == []
    # Access given back: the approved request runs.
    api.add_user(READER, datasets={"lab": ["clio_read"], "other": ["clio_read"]}, disabled=False)
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert runs(api) == 1


@pytest.mark.parametrize("how", ["grant", "disabled", "settings"])
def test_an_async_run_whose_requester_lost_access_before_the_worker_starts_it_fails_and_nothing_runs(
    api, world, monkeypatch, how
):
    """The job is queued while the requester may run it; the worker checks again as it starts."""
    from common.storage import pubsub
    from functions.twins import jobs

    queued = []
    monkeypatch.setattr(pubsub, "publish", lambda topic, message: queued.append(message))
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER)
    assert r.status_code == 202, r.get_data(as_text=True)
    job_id = r.get_json()["id"]
    assert queued == [{"job": job_id}]
    if how == "settings":  # the approval no longer holds: 409, as for a plain run
        body = {"settings": {"private": {"token": "changed"}}}
        assert api.call("PATCH", "/twins/lab.count", user=OWNER, json=body).status_code == 200
    else:
        _revoke(api, how)
    jobs.work(job_id)  # the delivery of the message
    status, code = {
        "grant": (404, "not_found"),
        "disabled": (403, "forbidden"),
        "settings": (409, "conflict"),
    }[how]
    job = api.get(f"/twins/jobs/{job_id}", user=OWNER).get_json()
    assert job["status"] == "failed" and job["http_status"] == status and job["error"]["error"] == code
    shown = api.get(f"/twins/requests/{request['id']}", user=OWNER).get_json()
    assert shown["status"] == "failed" and shown["error"]["details"]["reason"] == code
    assert runs(api) == 0 and api.get("/twins/lab.count/calls", user=OWNER).get_json() == []
    jobs.work(job_id)  # delivered again: still nothing runs
    assert runs(api) == 0
    if how == "grant":  # the requester reads why, as the job's caller
        mine = api.get(f"/twins/jobs/{job_id}", user=READER).get_json()
        assert mine["http_status"] == 404 and "lab.count" in mine["error"]["message"]


# -- masking -------------------------------------------------------------------------------------


def test_private_prints_and_errors_do_not_reach_the_requester_but_the_owners_run_record(api, world):
    own = "REQUEST-OUTPUT"  # printed by the request's code, which spells it in two parts
    code = "def use(leaky):\n    print('-'.join(['REQUEST', 'OUTPUT']))\n    return leaky(n=-1)\n"
    request = submit(api, code, {"leaky": "lab.leaky"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    body = assert_error(r, 500, "endpoint_error")
    assert SECRET not in r.get_data(as_text=True) and own not in r.get_data(as_text=True)
    assert body["details"]["reference"] == request["id"]
    for text in (
        json.dumps(api.get(f"/twins/requests/{request['id']}", user=READER).get_json()),
        json.dumps(api.get("/twins/requests", user=READER).get_json()),
    ):
        assert SECRET not in text and own not in text
    record = api.get(f"/twins/requests/{request['id']}", user=MANAGER).get_json()["run"]
    assert own in record["stdout"] and record["error_type"] == "EndpointError"
    assert "Traceback" in record["traceback"]
    # The endpoint's own output is in its call record, for its owners.
    call = api.get("/twins/lab.leaky/calls", user=MANAGER).get_json()[0]
    assert SECRET in call["stdout"] and SECRET in call["message"]


def test_request_code_cannot_pass_private_text_off_as_a_public_error(api, world):
    code = (
        "def use(leaky):\n"
        "    try:\n"
        "        leaky(n=-1)\n"
        "    except Exception as exc:\n"
        "        import sys\n"
        f"        raise sys.modules['functions.twins.sandbox'].PublicError('{SECRET}', 400)\n"
    )
    request = submit(api, code, {"leaky": "lab.leaky"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 500 and SECRET not in r.get_data(as_text=True)


def test_an_endpoint_error_inside_a_request_is_masked_as_for_the_requester(api, world):
    code = "def use(leaky):\n    try:\n        leaky(n=-1)\n    except Exception as exc:\n        return str(exc)\n"
    request = submit(api, code, {"leaky": "lab.leaky"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 200 and SECRET not in r.get_data(as_text=True)
    assert "its owners can look it up by the reference" in r.get_json()["result"]


# -- async jobs ----------------------------------------------------------------------------------


def test_an_async_call_goes_pending_running_done_through_pub_sub(api, world):
    r = api.post("/twins/lab.slow?async=1", user=READER, json={"seconds": 0.6})
    assert r.status_code == 202, r.get_data(as_text=True)
    location = r.headers["Location"]
    assert location == f"/twins/jobs/{r.get_json()['id']}" and r.get_json()["status"] == "pending"
    job, seen = wait_job(api, location)
    assert job["status"] == "done" and job["result"] == "slept" and job["kind"] == "call"
    assert "running" in seen and seen[-1] == "done"
    assert api.get(location, user=MANAGER).get_json()["result"] == "slept"  # owners see it too
    assert_error(api.get(location, user=STRANGER), 404, "not_found")


def test_async_calls_are_checked_before_they_are_queued(api, world):
    assert_error(api.post("/twins/lab.count?async=1", user=READER, json={"n": "x"}), 422, "validation_error")
    assert_error(api.post("/twins/lab.count/private?async=1", user=READER, json={}), 403, "forbidden")
    assert_error(api.post("/twins/lab.count?async=maybe", user=READER, json={}), 400, "bad_request")
    assert_error(api.get("/twins/jobs/0123", user=READER), 404, "not_found")


def test_a_job_whose_code_raises_fails_with_a_masked_error(api, world):
    r = api.post("/twins/lab.leaky/mock?async=1", user=READER, json={"n": -1})
    job, _ = wait_job(api, r.headers["Location"])
    assert job["status"] == "failed" and job["error"]["error"] == "endpoint_error"
    assert SECRET not in json.dumps(job)
    reference = job["error"]["details"]["reference"]
    calls = api.get("/twins/lab.leaky/calls", user=MANAGER).get_json()
    assert [c for c in calls if c["id"] == reference][0]["origin"] == f"job:{job['id']}"


def test_a_redelivered_message_does_not_run_the_work_again(api, world, workers):
    from common.storage import pubsub
    from functions.twins import jobs

    r = api.post("/twins/lab.count/private?async=1", user=MANAGER, json={"n": 1})
    job, _ = wait_job(api, r.headers["Location"], user=MANAGER)
    assert job["result"]["runs"] == 1
    again = pubsub.publish("gatehouse-twin-jobs", {"job": job["id"]})  # delivered again by Pub/Sub
    jobs.work(job["id"])  # and once more, directly
    wait_until(lambda: acknowledged(workers["twins"], message_id=again), "the redelivery acknowledged")
    assert runs(api) == 1 and api.get(r.headers["Location"], user=MANAGER).get_json()["attempts"] == 1


def test_a_job_whose_worker_died_is_run_again_and_fails_after_the_last_attempt(api, world):
    import datetime

    from common.storage import collections, store
    from functions.twins import jobs

    def abandoned(attempts):
        """A job a worker claimed and then died on: its lease has run out."""
        job = jobs._job(
            type("Req", (), {"caller": type("C", (), {"email": MANAGER})(), "id": "req"})(),
            {
                "kind": "call",
                "endpoint": "lab.count",
                "endpoint_generation": store.collection("twins")
                .document("lab.count")
                .get()
                .get("generation"),
                "side": "private",
                "args_json": '{"n": 1}',
                "timeout_s": 1.0,
            },
        )
        past = store.now() - datetime.timedelta(minutes=5)
        job.update(status="running", attempts=attempts, started_at=past, lease_until=past)
        store.collection(collections.TWIN_JOBS).document(job["id"]).set(job)
        return job["id"]

    retried = abandoned(1)
    jobs.work(retried)
    job = api.get(f"/twins/jobs/{retried}", user=MANAGER).get_json()
    assert job["status"] == "done" and job["attempts"] == 2 and job["result"]["runs"] == 1

    given_up = abandoned(jobs.MAX_ATTEMPTS)
    jobs.work(given_up)
    job = api.get(f"/twins/jobs/{given_up}", user=MANAGER).get_json()
    assert job["status"] == "failed" and job["error"]["details"]["reason"] == "worker_stopped"
    assert runs(api) == 1


def test_a_run_whose_job_the_queue_refused_is_given_back(api, world, monkeypatch):
    """The run is held by its job from the moment it is queued; a job Pub/Sub did not take gives
    it back (approved again, 503), so the single run is not used up."""
    from common.storage import pubsub

    def refuse(topic, message):
        raise RuntimeError("the queue is down")

    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    monkeypatch.setattr(pubsub, "publish", refuse)
    assert_error(api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER), 503, "unavailable")
    assert api.get(f"/twins/requests/{request['id']}", user=READER).get_json()["status"] == "approved"
    monkeypatch.undo()
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).status_code == 200
    assert runs(api) == 1


def test_a_run_whose_instance_stopped_is_interrupted_and_never_runs_again(api, world):
    """A run's claim lasts its time limit plus a margin: a job's delivery while it lasts is sent
    back (busy); once it has run out the run ends `failed` (interrupted), read or delivered."""
    import datetime

    from common.storage import collections, store
    from functions.twins import approvals

    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    ref = store.collection(collections.TWIN_REQUESTS).document(request["id"])
    now = store.now()
    run = {"id": "r1", "request_id": "req", "job": "j1", "started_at": now, "lease_until": now}
    ref.update({"status": "running", "run": {**run, "lease_until": now + datetime.timedelta(minutes=5)}})
    assert approvals.start_queued(request["id"], "j1")[0] == "busy"
    assert approvals.start_queued(request["id"], "j2")[0] == "finished"  # not that job's run
    assert ref.get().get("status") == "running"
    ref.update({"run": run})  # its lease ran out: the worker's instance stopped
    state, doc, requester = approvals.start_queued(request["id"], "j1")
    assert (state, doc["status"], doc["outcome"], requester) == (
        "finished",
        "failed",
        {"status": "interrupted"},
        None,
    )
    ref.update({"status": "running", "run": {**run, "job": None}, "outcome": None})  # a plain run's
    got = api.get(f"/twins/requests/{request['id']}", user=READER).get_json()
    assert got["status"] == "failed" and got["error"]["details"]["reason"] == "interrupted"
    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 500 and r.get_json()["details"]["reason"] == "interrupted"
    assert runs(api) == 0


def test_a_job_whose_message_was_dead_lettered_ends_failed_when_it_is_read(api, world):
    """A job `running` well past its lease (ABANDONED_AFTER_S) gets no more deliveries: reading it
    ends it `failed` (dead-lettered); one whose lease ran out only lately is still waited for."""
    import datetime

    from common.storage import collections, store
    from functions.twins import jobs

    def running(lease_ran_out_s_ago):
        job = jobs._job(
            type("Req", (), {"caller": type("C", (), {"email": MANAGER})(), "id": "req"})(),
            {
                "kind": "call",
                "endpoint": "lab.count",
                "endpoint_generation": store.collection("twins")
                .document("lab.count")
                .get()
                .get("generation"),
                "side": "private",
                "args_json": '{"n": 1}',
                "timeout_s": 1.0,
            },
        )
        lease = store.now() - datetime.timedelta(seconds=lease_ran_out_s_ago)
        job.update(status="running", attempts=1, started_at=lease, lease_until=lease)
        store.collection(collections.TWIN_JOBS).document(job["id"]).set(job)
        return job["id"]

    lately = running(60)
    assert api.get(f"/twins/jobs/{lately}", user=MANAGER).get_json()["status"] == "running"
    gone = running(jobs.ABANDONED_AFTER_S + 60)
    job = api.get(f"/twins/jobs/{gone}", user=MANAGER).get_json()
    assert job["status"] == "failed" and job["error"]["details"]["reason"] == "dead_lettered"
    assert store.collection(collections.TWIN_JOBS).document(gone).get().get("status") == "failed"
    assert runs(api) == 0


def test_a_result_over_a_mebibyte_goes_to_cloud_storage_and_comes_back_intact(api, world):
    from common.storage import blobs

    size = 1_500_000
    r = api.post("/twins/lab.big/mock?async=1", user=READER, json={"size": size})
    job, _ = wait_job(api, r.headers["Location"])
    assert job["status"] == "done" and job["result"] == "x" * size
    assert blobs.bucket(BUCKETS[3]).blob(f"jobs/{job['id']}.json").exists()
    # A request's result too.
    request = submit(api, f"def use(big):\n    return big(size={size})\n", {"big": "lab.big"})
    approve(api, request["id"])
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).get_json()["result"] == "x" * size
    assert api.get(f"/twins/requests/{request['id']}", user=READER).get_json()["result"] == "x" * size


def test_an_async_run_is_a_job_and_stays_single_use(api, world):
    request = submit(api, USE_COUNT, {"count": "lab.count"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER)
    assert r.status_code == 202, r.get_data(as_text=True)
    again = api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER)
    assert again.headers["Location"] == r.headers["Location"]  # the same job
    job, _ = wait_job(api, r.headers["Location"])
    assert job["status"] == "done" and job["kind"] == "run" and job["result"][0]["runs"] == 1
    sync = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert sync.get_json()["result"] == job["result"] and runs(api) == 1
    assert api.get(r.headers["Location"], user=MANAGER).status_code == 200
    assert_error(api.get(r.headers["Location"], user=STRANGER), 404, "not_found")


def test_an_async_run_whose_code_leaks_is_masked_in_the_job(api, world):
    code = "def use(leaky):\n    return leaky(n=-1)\n"
    request = submit(api, code, {"leaky": "lab.leaky"})
    approve(api, request["id"])
    r = api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER)
    job, _ = wait_job(api, r.headers["Location"])
    assert job["status"] == "failed" and SECRET not in json.dumps(job)
    # Owners read what the code raised (the endpoint's answer, masked as for the requester) and
    # follow its reference to the endpoint's call record, which holds the private text.
    owner_job = api.get(r.headers["Location"], user=MANAGER).get_json()
    assert "EndpointError" in owner_job["error"]["message"]
    reference = owner_job["error"]["message"].rsplit(" ", 1)[1]
    calls = api.get("/twins/lab.leaky/calls", user=MANAGER).get_json()
    assert SECRET in [c for c in calls if c["id"] == reference][0]["message"]


def test_results_and_arguments_firestore_cannot_hold_natively_are_kept_intact(api, world):
    """Rows of a query are arrays in an array, which a Firestore document cannot hold."""
    code = "def rows(context, table: list = []):\n    return {'rows': table, 'nested': [[1, [2, [3]]]]}\n"
    assert api.post("/twins", user=OWNER, json=_twin("lab.rows", code)).status_code == 201
    table = [[1, "a"], [2, "b"]]
    r = api.post("/twins/lab.rows/mock?async=1", user=READER, json={"table": table})
    job, _ = wait_job(api, r.headers["Location"])
    assert job["status"] == "done" and job["result"] == {"rows": table, "nested": [[1, [2, [3]]]]}
    request = submit(api, "def use(rows):\n    return rows(table=[[1, 2], [3]])\n", {"rows": "lab.rows"})
    approve(api, request["id"])
    assert api.post(f"/twins/requests/{request['id']}/run", user=READER).get_json()["result"]["rows"] == [
        [1, 2],
        [3],
    ]


def test_an_async_run_while_a_plain_run_is_in_progress_is_409_not_a_job_that_does_not_exist(api, world):
    code = "def use(slow):\n    return slow(seconds=1.5)\n"
    request = submit(api, code, {"slow": "lab.slow"})
    approve(api, request["id"])
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(api.post, f"/twins/requests/{request['id']}/run", user=READER)
        deadline = time.monotonic() + 10
        while api.get(f"/twins/requests/{request['id']}", user=READER).get_json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert_error(api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER), 409, "conflict")
        assert running.result().get_json() == {"result": "slept"}
    # Once it has run, an async run is a finished job that can be followed.
    r = api.post(f"/twins/requests/{request['id']}/run?async=1", user=READER)
    assert (
        r.status_code == 202 and api.get(r.headers["Location"], user=READER).get_json()["result"] == "slept"
    )


# -- time ----------------------------------------------------------------------------------------

LATER = (
    "def later(context, seconds: float = 3.0):\n"
    "    import time\n"
    "    time.sleep(seconds)\n"
    "    return context.state.increment('n')\n"
)


def test_time_running_code_does_not_count_against_the_backend_budget(api, world, setting):
    """The one slow test. BACKEND_DEADLINE_SECONDS is 2 s here (30 s by default, which would make
    this a 35 s test): the code runs 3 s, longer than the whole budget, then uses Firestore (its
    state), and a request run's outcome is stored after it. Both used to find the budget spent."""
    body = {
        "path": "lab.later",
        "description": "d",
        "dataset": "lab",
        "timeout_s": 10,
        "public": {"code": LATER},
    }
    assert api.post("/twins", user=OWNER, json=body).status_code == 201
    request = submit(api, "def use(later):\n    return later()\n", {"later": "lab.later"})
    approve(api, request["id"])
    setting("BACKEND_DEADLINE_SECONDS", "2")

    started = time.monotonic()
    r = api.post("/twins/lab.later", user=READER, json={})
    assert r.status_code == 200 and r.get_json() == {"result": 1}, r.get_data(as_text=True)
    assert time.monotonic() - started >= 3

    r = api.post(f"/twins/requests/{request['id']}/run", user=READER)
    assert r.status_code == 200 and r.get_json() == {"result": 2}, r.get_data(as_text=True)
    stored = api.get(f"/twins/requests/{request['id']}", user=READER).get_json()
    assert stored["status"] == "done" and stored["result"] == 2


def test_a_result_that_cannot_be_stored_still_settles_the_run(api, world, setting):
    request = submit(api, "def use(big):\n    return big(size=600_000)\n", {"big": "lab.big"})
    approve(api, request["id"])
    setting("TWIN_RESULTS_BUCKET", "gatehouse-no-such-bucket")  # larger than 512 KiB: kept there
    run = f"/twins/requests/{request['id']}/run"
    body = assert_error(api.post(run, user=READER), 500, "endpoint_error")
    assert body["details"]["reason"] == "result_not_stored" and "submit it again" in body["message"]
    assert assert_error(api.post(run, user=READER), 500, "endpoint_error")["details"] == body["details"]
    seen = api.get(f"/twins/requests/{request['id']}", user=MANAGER).get_json()
    assert seen["status"] == "failed" and seen["run"]["status"] == "result_not_stored"
