"""twins (SPEC §3): definitions, views, calls, masking, limits, state and call records."""

from __future__ import annotations

import concurrent.futures
import json
import os
import time

import pytest

from tests.conftest import OWNER, ROOT
from tests.utils import assert_error

READER = "reader@example.com"  # clio_read on lab
MANAGER = "manager@example.com"  # dataset_admin on lab
STRANGER = "stranger@example.com"  # no roles
SECRET = "SETTING-SECRET-4711"

ECHO = (
    "def echo(context, text: str, times: int = 1):\n    return {{'side': '{side}', 'echo': text * times}}\n"
)


@pytest.fixture
def world(api):
    api.add_dataset("lab")
    api.add_user(READER, datasets={"lab": ["clio_read"]})
    api.add_user(MANAGER, datasets={"lab": ["dataset_admin"]})


def side(code: str, **kw):
    return {"code": code, **kw}


def twin(path="lab.echo", mock=None, private=None, **fields):
    return {
        "path": path,
        "description": "an echo",
        "dataset": "lab",
        "mock": mock or side(ECHO.format(side="mock"), settings={"key": SECRET}),
        "private": private or side(ECHO.format(side="private"), settings={"key": SECRET}),
        **fields,
    }


def define(api, body, status=201):
    r = api.post("/twins", user=OWNER, json=body)
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json()


def patch(api, path, body, user=OWNER):
    return api.call("PATCH", f"/twins/{path}", user=user, json=body)


def call(api, path, user, args=None, suffix=""):
    return api.post(f"/twins/{path}{suffix}", user=user, json=args if args is not None else {})


def full(api, path):
    r = api.get(f"/twins/{path}?full=true", user=OWNER)
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


# -- definitions and views -------------------------------------------------------------------


def test_create_and_view_show_parameters_and_mock_but_never_settings_or_private(api, world):
    view = define(api, twin())
    assert view["kind"] == "twin" and view["dataset"] == "lab" and view["timeout_s"] == 60
    assert set(view["parameters"]["properties"]) == {"text", "times"}
    assert "context" not in view["parameters"]["properties"]
    assert view["mock"]["code"].startswith("def echo")
    for who in (OWNER, MANAGER, READER):
        text = api.get("/twins/lab.echo", user=who).get_data(as_text=True)
        assert SECRET not in text and "'private'" not in text and "settings" not in text
        listed = api.get("/twins", user=who).get_json()
        assert [e["path"] for e in listed] == ["lab.echo"]
        assert SECRET not in json.dumps(listed) and "'private'" not in json.dumps(listed)
    assert api.get("/twins/lab.echo", user=STRANGER).status_code == 404  # cannot read lab
    assert api.get("/twins", user=STRANGER).get_json() == []
    assert_error(api.get("/twins/lab.echo?full=true", user=MANAGER), 403, "forbidden")
    assert_error(api.get("/twins/lab.echo?full=true", user=READER), 403, "forbidden")
    logs = api.get("/datasets/lab/logs", user=MANAGER)  # the audit entry, readable by managers
    assert "twin_create" in logs.get_data(as_text=True) and SECRET not in logs.get_data(as_text=True)
    assert "'private'" not in logs.get_data(as_text=True)
    everything = full(api, "lab.echo")
    assert everything["sides"]["private"]["settings"] == {"key": SECRET}
    assert "'private'" in everything["sides"]["private"]["code"]
    assert everything["sides"]["mock"]["state"] == {}


def test_endpoint_without_dataset_is_for_every_authenticated_user(api, world):
    define(api, {"path": "open.echo", "description": "d", "public": side(ECHO.format(side="public"))})
    assert api.get("/twins/open.echo", user=STRANGER).status_code == 200
    r = call(api, "open.echo", STRANGER, {"text": "a", "times": 2})
    assert r.status_code == 200 and r.get_json() == {"result": {"side": "public", "echo": "aa"}}
    assert_error(call(api, "open.echo", STRANGER, suffix="/mock"), 404, "not_found")
    r = api.post("/twins/open.echo", json={"text": "a"})
    assert_error(r, 401, "unauthenticated")  # a plain 401, never a masked 500
    assert r.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"unknown": 1}, "extra"),
        ({"path": "_hidden"}, "path"),
        ({"path": "requests"}, "path"),
        ({"path": "Upper.case"}, "path"),
        ({"path": "a..b"}, "path"),
        ({"public": {"code": ECHO.format(side="p")}}, "either public"),
        ({"private": None}, "both"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": "5"}, "timeout_s"),
        ({"rate_limit": {"calls": 1.5, "per_seconds": 10}}, "calls"),
        ({"dataset": "nope"}, "does not exist"),
        ({"mock": {"code": ECHO.format(side="m"), "settings": {"k": [[1]]}}}, "settings"),
    ],
)
def test_bad_definitions_are_422(api, world, body, fragment):
    r = api.post("/twins", user=OWNER, json={**twin(), **body})
    text = assert_error(r, 422, "validation_error")
    assert fragment in json.dumps(text), text
    assert api.get("/twins", user=OWNER).get_json() == []  # nothing half-written


def test_source_errors_are_422_with_the_line(api, world):
    bad = "def echo(context, text: str):\n    return (\n"
    body = assert_error(api.post("/twins", user=OWNER, json=twin(mock=side(bad))), 422, "validation_error")
    assert body["message"].startswith("mock: line ") and body["details"][0]["line"] >= 2
    not_a_function = "x = 1\n"
    assert_error(
        api.post("/twins", user=OWNER, json=twin(private=side(not_a_function))), 422, "validation_error"
    )


# Source nested deeper than Python's parser or compiler can take (each a 500 once).
DEEP = {
    "unary_minus": "-" * 100_000 + "1",
    "parentheses": "(" * 5_000 + "1" + ")" * 5_000,
    "lists": "[" * 5_000 + "]" * 5_000,
    "parses_but_does_not_compile": "-" * 1_000 + "1",
    "calls": "text" + "()" * 5_000,
}


@pytest.mark.parametrize("expression", DEEP.values(), ids=DEEP.keys())
def test_deeply_nested_source_is_422_not_500(api, world, expression):
    code = f"def echo(context, text: str, times: int = 1):\n    return {expression}\n"
    body = assert_error(api.post("/twins", user=OWNER, json=twin(mock=side(code))), 422, "validation_error")
    assert body["message"].startswith("mock: ") and "nested" in body["message"], body["message"]
    assert body["details"][0]["loc"] == ["body", "mock", "code"]
    helper = f"def deep():\n    return {expression}\n"
    body = assert_error(
        api.post("/twins", user=OWNER, json=twin(private=side(ECHO.format(side="p"), helpers=[helper]))),
        422,
        "validation_error",
    )
    assert "helper 1" in body["message"] and "nested" in body["message"], body["message"]
    assert api.get("/twins", user=OWNER).get_json() == []


def test_forbidden_import_is_refused_at_definition_time(api, world):
    code = (
        "def echo(context, text: str, times: int = 1):\n    import google.cloud.firestore\n    return text\n"
    )
    body = assert_error(
        api.post("/twins", user=OWNER, json=twin(private=side(code))), 422, "validation_error"
    )
    assert "google" in body["message"] and body["details"][0]["line"] == 2
    helper = "def leak():\n    import google.cloud.storage\n    return 1\n"
    r = api.post("/twins", user=OWNER, json=twin(mock=side(ECHO.format(side="m"), helpers=[helper])))
    assert_error(r, 422, "validation_error")


def test_mock_and_private_must_have_the_same_parameters(api, world):
    other = "def echo(context, text: str):\n    return text\n"
    body = assert_error(
        api.post("/twins", user=OWNER, json=twin(private=side(other))), 422, "validation_error"
    )
    assert "same parameters" in body["message"]
    define(api, twin())
    assert_error(patch(api, "lab.echo", {"private": side(other)}), 422, "validation_error")
    assert full(api, "lab.echo")["sides"]["private"]["code"].startswith("def echo(context, text: str, times")


def test_create_twice_is_409_and_only_admins_define(api, world):
    define(api, twin())
    assert_error(api.post("/twins", user=OWNER, json=twin()), 409, "conflict")
    assert_error(api.post("/twins", user=MANAGER, json=twin(path="x.y")), 403, "forbidden")
    assert_error(patch(api, "lab.echo", {"description": "x"}, user=MANAGER), 403, "forbidden")
    assert_error(api.delete("/twins/lab.echo", user=MANAGER), 403, "forbidden")


def test_patch_fields_and_wrong_sides(api, world):
    define(api, twin())
    r = patch(
        api, "lab.echo", {"description": "new", "timeout_s": 5, "rate_limit": {"calls": 3, "per_seconds": 60}}
    )
    assert r.status_code == 200 and r.get_json()["description"] == "new" and r.get_json()["timeout_s"] == 5
    assert patch(api, "lab.echo", {"rate_limit": None}).get_json()["rate_limit"] is None
    assert_error(patch(api, "lab.echo", {"public": side(ECHO.format(side="p"))}), 422, "validation_error")
    assert_error(patch(api, "lab.echo", {"dataset": "other"}), 422, "validation_error")
    assert_error(patch(api, "lab.echo", {"settings": {"public": {}}}), 422, "validation_error")
    assert_error(patch(api, "no.such", {"description": "x"}), 404, "not_found")
    r = patch(api, "lab.echo", {"settings": {"private": {"key": "rotated"}}})
    assert r.status_code == 200 and full(api, "lab.echo")["sides"]["private"]["settings"] == {
        "key": "rotated"
    }


def test_hidden_mock_stays_hidden_when_a_side_is_replaced(api, world):
    define(api, twin(hide_mock_definition=True))
    assert "mock" not in api.get("/twins/lab.echo", user=READER).get_json()
    for change in (
        {"private": side(ECHO.format(side="private2"))},
        {"mock": side(ECHO.format(side="mock2"))},
        {"description": "still hidden"},
    ):
        assert patch(api, "lab.echo", change).status_code == 200
        view = api.get("/twins/lab.echo", user=READER).get_json()
        assert "mock" not in view and "mock2" not in json.dumps(view) and "private2" not in json.dumps(view)
        assert view["hide_mock_definition"] is True
    assert call(api, "lab.echo", READER, {"text": "a"}).get_json()["result"]["side"] == "mock2"
    assert patch(api, "lab.echo", {"hide_mock_definition": False}).status_code == 200
    assert "mock2" in api.get("/twins/lab.echo", user=READER).get_json()["mock"]["code"]


COUNTER = "def count(context, by: int = 1):\n    return context.state.increment('n', by)\n"


def test_replacing_a_side_resets_only_its_state(api, world):
    define(api, twin(path="lab.count", mock=side(COUNTER), private=side(COUNTER)))
    assert call(api, "lab.count", READER, {"by": 2}).get_json() == {"result": 2}  # mock
    assert call(api, "lab.count", MANAGER, {"by": 5}).get_json() == {"result": 5}  # private
    assert call(api, "lab.count", MANAGER, {"by": 5}).get_json() == {"result": 10}
    assert patch(api, "lab.count", {"private": side(COUNTER + "\n")}).status_code == 200
    sides = full(api, "lab.count")["sides"]
    assert sides["private"]["state"] == {} and sides["mock"]["state"] == {"n": 2}
    assert call(api, "lab.count", MANAGER).get_json() == {"result": 1}


def test_delete(api, world):
    define(api, twin())
    assert api.delete("/twins/lab.echo", user=OWNER).status_code == 204
    assert_error(api.get("/twins/lab.echo", user=OWNER), 404, "not_found")
    assert_error(api.delete("/twins/lab.echo", user=OWNER), 404, "not_found")
    define(api, twin())  # the path is free again


def test_expose_hides_twins_from_everyone(api, world, monkeypatch):
    from common import config

    define(api, twin())
    define(api, twin(path="lab.other"))
    monkeypatch.setenv("EXPOSE", r"twin:lab\.other,dataset:.*")
    config.settings.cache_clear()
    try:
        assert_error(api.get("/twins/lab.echo", user=OWNER), 404, "not_found")
        assert_error(call(api, "lab.echo", OWNER, {"text": "a"}), 404, "not_found")
        assert [e["path"] for e in api.get("/twins", user=OWNER).get_json()] == ["lab.other"]
    finally:
        monkeypatch.delenv("EXPOSE")
        config.settings.cache_clear()


# -- calls -----------------------------------------------------------------------------------


def test_default_side_by_role_and_explicit_sides(api, world):
    define(api, twin())
    args = {"text": "hi"}
    assert call(api, "lab.echo", READER, args).get_json()["result"]["side"] == "mock"
    assert call(api, "lab.echo", MANAGER, args).get_json()["result"]["side"] == "private"
    assert call(api, "lab.echo", OWNER, args).get_json()["result"]["side"] == "private"
    assert call(api, "lab.echo", OWNER, args, "/mock").get_json()["result"]["side"] == "mock"
    assert call(api, "lab.echo", MANAGER, args, "/private").get_json()["result"]["side"] == "private"
    assert call(api, "lab.echo", READER, args, "/mock").get_json()["result"]["side"] == "mock"
    assert_error(call(api, "lab.echo", READER, args, "/private"), 403, "forbidden")
    assert_error(call(api, "lab.echo", STRANGER, args), 404, "not_found")
    assert_error(call(api, "lab.echo", STRANGER, args, "/private"), 404, "not_found")
    r = api.post("/twins/lab.echo", user=READER, data=json.dumps(args))  # no content type: curl -d
    assert r.status_code == 200


@pytest.mark.parametrize(
    "args",
    [{}, {"text": 1}, {"text": "a", "times": "2"}, {"text": "a", "times": 1.0}, {"text": "a", "other": 1}],
)
def test_arguments_are_checked_before_running(api, world, args):
    define(api, twin())
    body = assert_error(call(api, "lab.echo", READER, args), 422, "validation_error")
    assert body["details"]
    assert api.get("/twins/lab.echo/calls", user=OWNER).get_json() == []  # nothing ran


def test_body_must_be_a_json_object(api, world):
    define(api, twin())
    assert_error(api.post("/twins/lab.echo", user=READER, json=["a"]), 422, "validation_error")
    assert_error(
        api.post("/twins/lab.echo", user=READER, data="{", headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )


RAISES = (
    "def echo(context, text: str, times: int = 1):\n"
    "    print('PRIVATE-PRINT', context.settings['key'])\n"
    "    raise ValueError('PRIVATE-DETAIL ' + context.settings['key'])\n"
)


@pytest.mark.parametrize("failing", ["mock", "private"])
def test_errors_are_masked_for_non_owners_and_explained_to_owners(api, world, failing):
    sides = {failing: side(RAISES, settings={"key": SECRET})}
    define(api, twin(**sides))
    suffix = "/" + failing
    if failing == "mock":
        r = call(api, "lab.echo", READER, {"text": "a"}, suffix)
        body = assert_error(r, 500, "endpoint_error")
        text = r.get_data(as_text=True)
        for private in (SECRET, "PRIVATE-DETAIL", "PRIVATE-PRINT", "ValueError", "Traceback", "line "):
            assert private not in text, private
        reference = body["details"]["reference"]
        assert reference in body["message"]
    r = call(api, "lab.echo", MANAGER, {"text": "a"}, suffix)
    body = assert_error(r, 500, "endpoint_error")
    assert "ValueError: PRIVATE-DETAIL" in body["message"] and "PRIVATE-PRINT" not in r.get_data(as_text=True)
    records = api.get("/twins/lab.echo/calls", user=MANAGER).get_json()
    assert records[0]["id"] == body["details"]["reference"]
    assert (
        records[0]["side"] == failing and records[0]["caller"] == MANAGER and records[0]["status"] == "error"
    )
    assert "PRIVATE-PRINT" in records[0]["stdout"] and "ValueError" in records[0]["traceback"]
    assert records[0]["request_id"] == r.headers["X-Request-Id"] and records[0]["expire_at"]
    assert_error(api.get("/twins/lab.echo/calls", user=READER), 403, "forbidden")


def test_public_error_passes_through_as_written(api, world):
    code = (
        "def echo(context, text: str, times: int = 1):\n"
        "    raise context.PublicError('no cell named ' + text, status=404)\n"
    )
    define(api, twin(mock=side(code)))
    body = assert_error(call(api, "lab.echo", READER, {"text": "x1"}), 404, "not_found")
    assert body["message"] == "no cell named x1"
    plain = code.replace(", status=404", "")
    assert patch(api, "lab.echo", {"mock": side(plain)}).status_code == 200
    assert (
        assert_error(call(api, "lab.echo", READER, {"text": "x2"}), 400, "bad_request")["message"]
        == "no cell named x2"
    )


def test_call_records_for_owners(api, world):
    code = "def echo(context, text: str, times: int = 1):\n    print('out', text)\n    return text\n"
    define(api, twin(mock=side(code)))
    r = call(api, "lab.echo", READER, {"text": "a"})
    assert r.status_code == 200 and "out" not in r.get_data(as_text=True)
    call(api, "lab.echo", MANAGER, {"text": "b"})
    records = api.get("/twins/lab.echo/calls", user=OWNER).get_json()
    assert [(c["side"], c["caller"], c["status"], c["http_status"]) for c in records] == [
        ("private", MANAGER, "ok", 200),
        ("mock", READER, "ok", 200),
    ]
    assert records[1]["stdout"].strip() == "out a" and records[1]["duration_ms"] > 0
    page = api.get("/twins/lab.echo/calls?limit=1", user=OWNER)
    assert len(page.get_json()) == 1 and 'rel="next"' in page.headers["Link"]


# -- execution limits ------------------------------------------------------------------------

SLOW = (
    "def slow(context, wait: float = 0):\n"
    "    import time\n"
    "    time.sleep(wait)\n"
    "    context.state.set('marker', wait)\n"
    "    return 'done'\n"
)


def test_timeout_is_504_and_the_work_is_really_stopped(api, world):
    define(
        api, {"path": "lab.slow", "description": "d", "dataset": "lab", "timeout_s": 1, "public": side(SLOW)}
    )
    started = time.monotonic()
    r = call(api, "lab.slow", READER, {"wait": 3})
    elapsed = time.monotonic() - started
    body = assert_error(r, 504, "timeout")
    assert 1 <= elapsed < 2.2, elapsed
    assert body["details"]["reference"]
    time.sleep(3)  # past the moment the code would have written its marker
    assert full(api, "lab.slow")["sides"]["public"]["state"] == {}
    r = call(api, "lab.slow", READER, {"wait": 0})  # the same instance serves the next call
    assert r.status_code == 200 and r.get_json() == {"result": "done"}
    assert full(api, "lab.slow")["sides"]["public"]["state"] == {"marker": 0}
    statuses = [c["status"] for c in api.get("/twins/lab.slow/calls", user=OWNER).get_json()]
    assert statuses == ["ok", "timeout"]


def test_memory_cap_is_a_clear_error(api, world):
    code = (
        "def hog(context, mb: int = 2048):\n    block = bytearray(mb * 1024 * 1024)\n    return len(block)\n"
    )
    define(api, {"path": "lab.hog", "description": "d", "dataset": "lab", "public": side(code)})
    body = assert_error(call(api, "lab.hog", READER, {"mb": 2048}), 500, "endpoint_error")
    assert "memory" in body["message"] and body["details"]["reason"] == "memory"
    assert call(api, "lab.hog", READER, {"mb": 1}).get_json() == {"result": 1 << 20}


def test_result_cap_and_serializability_are_clear_errors(api, world):
    code = (
        "def big(context, size: int = 0, odd: bool = False):\n"
        "    if odd:\n"
        "        return {1, 2}\n"
        "    return 'x' * size\n"
    )
    define(api, {"path": "lab.big", "description": "d", "dataset": "lab", "public": side(code)})
    body = assert_error(call(api, "lab.big", READER, {"size": (16 << 20) + 1}), 500, "endpoint_error")
    assert "too large" in body["message"] and body["details"]["reason"] == "result_too_large"
    body = assert_error(call(api, "lab.big", READER, {"odd": True}), 500, "endpoint_error")
    assert "JSON" in body["message"] and body["details"]["reason"] == "not_serializable"


# -- concurrency -----------------------------------------------------------------------------


def _second_instance():
    """Another instance of the twins function (its own app and module), as in the cloud."""
    from functions_framework import create_app

    return create_app("handle", os.path.join(ROOT, "functions", "twins", "main.py")).test_client()


def test_rate_limit_is_exact_across_concurrent_callers_and_instances(api, world, setting):
    setting("TWIN_CALLS_PER_CALLER", "20")  # the rate limit alone refuses here
    define(api, twin(rate_limit={"calls": 5, "per_seconds": 3600}))
    clients = [api.client("twins"), _second_instance()]
    headers = {"Authorization": f"Bearer {api.token(READER)}", "Content-Type": "application/json"}

    def attempt(i):
        return clients[i % 2].post("/twins/lab.echo", headers=headers, data=json.dumps({"text": "a"}))

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(attempt, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 5 + [429] * 15, statuses
    for r in responses:
        if r.status_code == 429:
            assert_error(r, 429, "rate_limited")
            assert int(r.headers["Retry-After"]) >= 1
    # Admins are exempt; another caller has their own budget.
    assert all(call(api, "lab.echo", OWNER, {"text": "a"}).status_code == 200 for _ in range(7))
    assert call(api, "lab.echo", MANAGER, {"text": "a"}).status_code == 200


def test_state_increments_are_exact_under_concurrent_callers(api, world, setting):
    setting("TWIN_CALLS_PER_CALLER", "20")
    define(api, twin(path="lab.count", mock=side(COUNTER), private=side(COUNTER)))
    clients = [api.client("twins"), _second_instance()]
    headers = {"Authorization": f"Bearer {api.token(READER)}", "Content-Type": "application/json"}

    def attempt(i):
        return clients[i % 2].post("/twins/lab.count", headers=headers, data="{}")

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(attempt, range(20)))
    assert all(r.status_code == 200 for r in responses), [r.get_data(as_text=True) for r in responses]
    assert sorted(r.get_json()["result"] for r in responses) == list(range(1, 21))
    assert full(api, "lab.count")["sides"]["mock"]["state"] == {"n": 20}


STARTS_THEN_SLEEPS = (
    "def slow(context, wait: float = 0):\n"
    "    import time\n"
    "    context.state.increment('started')\n"
    "    time.sleep(wait)\n"
    "    return 'done'\n"
)


def test_one_caller_runs_at_most_twin_calls_per_caller_at_once(api, world, setting):
    setting("TWIN_CALLS_PER_CALLER", "2")
    body = {"path": "lab.slow", "description": "d", "dataset": "lab", "timeout_s": 20}
    define(api, {**body, "public": side(STARTS_THEN_SLEEPS)})

    def started() -> int:
        return full(api, "lab.slow")["sides"]["public"]["state"].get("started", 0)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        running = [pool.submit(call, api, "lab.slow", READER, {"wait": 2}) for _ in range(2)]
        deadline = time.monotonic() + 10
        while started() < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        before = time.monotonic()
        refused = call(api, "lab.slow", READER, {"wait": 0})
        assert time.monotonic() - before < 1  # at once, without waiting for a worker
        body = assert_error(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"] == "1" and body["details"]["reason"] == "concurrency"
        assert "at most 2" in body["message"]
        assert call(api, "lab.slow", OWNER, {"wait": 0}).status_code == 200  # another caller's own slots
        assert all(f.result().status_code == 200 for f in running)  # the two finish as they would
    assert call(api, "lab.slow", READER, {"wait": 0}).get_json() == {"result": "done"}
    assert started() == 4  # the refused call never ran
    from common import config

    assert config.Settings.twin_calls_per_caller == 2  # the default: fewer than the callers lane's workers


def test_endpoints_without_a_rate_limit_get_the_default_one(api, world, setting):
    setting("TWIN_DEFAULT_RATE_LIMIT", "3/3600")
    define(api, twin())
    define(api, twin(path="lab.own", rate_limit={"calls": 5, "per_seconds": 3600}))
    assert [call(api, "lab.echo", READER, {"text": "a"}).status_code for _ in range(3)] == [200] * 3
    refused = call(api, "lab.echo", READER, {"text": "a"})
    assert_error(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert call(api, "lab.echo", MANAGER, {"text": "a"}).status_code == 200  # a limit per caller
    assert all(call(api, "lab.echo", OWNER, {"text": "a"}).status_code == 200 for _ in range(5))  # admins
    own = [call(api, "lab.own", READER, {"text": "a"}).status_code for _ in range(6)]
    assert own == [200] * 5 + [429]  # an endpoint's own limit replaces the default
    setting("TWIN_DEFAULT_RATE_LIMIT", "off")
    assert call(api, "lab.echo", READER, {"text": "a"}).status_code == 200


@pytest.mark.parametrize("value", ["3", "3/0", "0/60", "three/60", "3/60/1"])
def test_a_malformed_default_rate_limit_stops_start_up(monkeypatch, value):
    from common import config

    monkeypatch.setenv("TWIN_DEFAULT_RATE_LIMIT", value)
    with pytest.raises(config.ConfigError, match="TWIN_DEFAULT_RATE_LIMIT"):
        config.load()
    monkeypatch.setenv("TWIN_DEFAULT_RATE_LIMIT", "600/60")
    monkeypatch.setenv("TWIN_CALLS_PER_CALLER", "0")
    with pytest.raises(config.ConfigError, match="TWIN_CALLS_PER_CALLER"):
        config.load()


def test_definitions_are_cached_briefly_and_dropped_by_the_instance_that_changes_them(
    api, world, monkeypatch
):
    from common.storage import collections, store
    from functions.twins import calls

    define(api, twin())
    assert call(api, "lab.echo", READER, {"text": "a"}).get_json()["result"]["side"] == "mock"
    # Another instance changes the stored definition: this one serves its copy until it expires...
    doc = store.collection(collections.TWINS).document("lab.echo")
    doc.update({"sides.mock.code": ECHO.format(side="changed")})
    assert call(api, "lab.echo", READER, {"text": "a"}).get_json()["result"]["side"] == "mock"
    later = time.monotonic() + calls.DEFINITION_CACHE_SECONDS  # ...at most this long
    monkeypatch.setattr(calls._definitions, "clock", lambda: later)
    assert call(api, "lab.echo", READER, {"text": "a"}).get_json()["result"]["side"] == "changed"
    # A change made through this instance applies at once.
    assert patch(api, "lab.echo", {"mock": side(ECHO.format(side="patched"))}).status_code == 200
    assert call(api, "lab.echo", READER, {"text": "a"}).get_json()["result"]["side"] == "patched"
    assert api.delete("/twins/lab.echo", user=OWNER).status_code == 204
    assert_error(call(api, "lab.echo", READER, {"text": "a"}), 404, "not_found")
    assert calls.DEFINITION_CACHE_SECONDS <= 5
