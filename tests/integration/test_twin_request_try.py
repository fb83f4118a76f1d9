"""twins: an owner tries a pending request's code on the mock sides before deciding it
(`POST /twins/requests/{id}/try`): it runs in the sandbox as a run would, every endpoint bound
to its mock side, and the request's status and single run are untouched."""

from __future__ import annotations

import pytest

from tests.conftest import OWNER
from tests.integration.test_twin_requests import (
    MANAGER,
    OTHER_MANAGER,
    READER,
    approve,
    runs,
    submit,
    world,  # noqa: F401 (the fixture)
)
from tests.utils import assert_error

PRIVATE_TOO = (
    "def use(count):\n    print('trying')\n    return [count(n=2), count.private(n=3), count.mock(n=4)]\n"
)


@pytest.mark.usefixtures("world")
def test_an_owner_tries_the_code_on_the_mock_sides_without_using_the_run(api):
    request = submit(api, PRIVATE_TOO, {"count": "lab.count"})
    tried = api.post(f"/twins/requests/{request['id']}/try", user=MANAGER)
    assert tried.status_code == 200, tried.get_data(as_text=True)
    body = tried.get_json()
    assert [r["side"] for r in body["result"]] == ["mock", "mock", "mock"]  # never the private side
    assert body["stdout"] == "trying\n" and len(body["calls"]) == 3
    assert runs(api) == 0
    calls = api.get("/twins/lab.count/calls", user=MANAGER).get_json()
    assert {(c["side"], c["origin"], c["caller"]) for c in calls} == {
        ("mock", f"try:{request['id']}", MANAGER)
    }
    shown = api.get(f"/twins/requests/{request['id']}", user=MANAGER).get_json()
    assert shown["status"] == "pending" and "run" not in shown
    # Tried again, then approved: the single run is still there, on the private side.
    assert api.post(f"/twins/requests/{request['id']}/try", user=OWNER).status_code == 200
    approve(api, request["id"])
    ran = api.post(f"/twins/requests/{request['id']}/run", user=READER).get_json()["result"]
    assert [r["side"] for r in ran] == ["private", "private", "mock"] and runs(api) == 2


@pytest.mark.usefixtures("world")
def test_only_owners_of_every_endpoint_try_and_they_read_the_failure(api):
    both = submit(
        api, "def both(a, b):\n    return [a(n=1), b(n=1)]\n", {"a": "lab.count", "b": "other.count"}
    )
    assert_error(api.post(f"/twins/requests/{both['id']}/try", user=MANAGER), 403, "forbidden")
    assert_error(api.post(f"/twins/requests/{both['id']}/try", user=OTHER_MANAGER), 403, "forbidden")
    assert_error(api.post(f"/twins/requests/{both['id']}/try", user=READER), 403, "forbidden")
    assert api.post(f"/twins/requests/{both['id']}/try", user=OWNER).status_code == 200

    failing = submit(api, "def f(leak):\n    print('before')\n    return 1 / 0\n", {"leak": "lab.leaky"})
    r = api.post(f"/twins/requests/{failing['id']}/try", user=MANAGER)
    assert r.status_code == 500 and r.get_json()["error"] == "endpoint_error"
    body = r.get_json()
    assert "ZeroDivisionError" in body["message"] and "ZeroDivisionError" in body["details"]["traceback"]
    assert body["details"]["stdout"] == "before\n" and body["details"]["reason"] == "error"
    assert api.get(f"/twins/requests/{failing['id']}", user=READER).get_json()["status"] == "pending"

    assert_error(
        api.post("/twins/requests/0123456789abcdef0123456789abcdef/try", user=MANAGER), 404, "not_found"
    )
