"""common.http: meta routes, the error envelope, request ids, CORS, body rules."""

import pytest

from common.version import VERSION
from tests.conftest import ORIGIN, OWNER
from tests.utils import assert_error
from tools.gateway import function_names

FUNCTIONS = function_names()  # every functions/<name>/main.py


@pytest.mark.parametrize("function", FUNCTIONS)
def test_health_needs_no_token(api, function):
    r = api.get(f"/{function}/_health")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "function": function, "version": f"{VERSION}+test"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_openapi_is_generated_from_the_route_table(api, function):
    doc = api.get(f"/{function}/_openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    ops = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert (f"/{function}/_health", "get") in ops
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "/_" not in path:
                assert op["x-gatehouse-role"], (path, method)
                assert op["security"] == [{"bearer": []}]


def test_openapi_documents_request_models(api):
    doc = api.get("/users/_openapi.json").get_json()
    body = doc["paths"]["/users/me/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("KeyCreate")
    schema = doc["components"]["schemas"]["KeyCreate"]
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert "{email}" in "".join(doc["paths"])


def test_unknown_route_is_a_404_envelope(api):
    assert_error(api.get("/datasets/mb20/nothing/here", user=OWNER), 404, "not_found")


def test_wrong_method_is_405_with_allow(api):
    r = api.call("PATCH", "/roles", user=OWNER)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]


def test_request_id_is_always_the_servers_and_a_callers_is_echoed_apart(api):
    r = api.get("/roles/_health")
    assert len(r.headers["X-Request-Id"]) == 32 and "X-Client-Request-Id" not in r.headers
    r = api.get("/roles/_health", headers={"X-Request-Id": "trace-12345678"})
    assert len(r.headers["X-Request-Id"]) == 32 and r.headers["X-Request-Id"] != "trace-12345678"
    assert r.headers["X-Client-Request-Id"] == "trace-12345678"
    r = api.get("/roles/_health", headers={"X-Request-Id": "bad id with spaces"})
    assert "X-Client-Request-Id" not in r.headers


def test_function_routes_its_own_url_without_prefix(api):
    # At the function's own URL the path arrives without /<function>.
    r = api.client("roles").get("/", headers={"Authorization": f"Bearer {api.token(OWNER)}"})
    assert r.status_code == 200 and r.get_json()["email"] == OWNER
    assert api.client("roles").get("/_health").status_code == 200


def test_cors_listed_origin_is_echoed(api):
    r = api.get("/roles", user=OWNER, headers={"Origin": ORIGIN})
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"]
    assert "X-Request-Id" in r.headers["Access-Control-Expose-Headers"]


def test_cors_unlisted_origin_gets_nothing(api):
    r = api.get("/roles", user=OWNER, headers={"Origin": "https://evil.example.com"})
    assert r.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in r.headers.keys())


def test_cors_preflight(api):
    r = api.call(
        "OPTIONS",
        "/datasets/mb20",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        },
    )
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert set(r.headers["Access-Control-Allow-Methods"].split(", ")) == {
        "GET",
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    }
    assert set(r.headers["Access-Control-Allow-Headers"].split(", ")) == {
        "Authorization",
        "Content-Type",
        "Range",
        "Idempotency-Key",
    }
    assert r.headers["Access-Control-Max-Age"] == "3600"


def test_cors_wildcard_never_with_credentials(monkeypatch, test_env):
    from werkzeug.test import Client
    from werkzeug.wrappers import Request

    from common import config, http

    monkeypatch.setenv("ALLOWED_ORIGINS", "*")
    config.settings.cache_clear()
    try:
        probe = http.App("probe")
    finally:
        config.settings.cache_clear()
    client = Client(lambda environ, start: probe(Request(environ))(environ, start))
    r = client.get("/probe/_health", headers={"Origin": "https://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers


def test_malformed_json_is_400(api):
    r = api.post("/datasets", user=OWNER, data='{"mb20": {', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_request")


def test_empty_body_is_400(api):
    assert_error(api.call("DELETE", "/datasets", user=OWNER), 400, "bad_request")


def test_curl_default_form_content_type_is_read_as_json(api):
    r = api.post(
        "/datasets",
        user=OWNER,
        data='{"mb20": {"description": "x"}}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200


def test_other_media_types_are_415(api):
    r = api.post("/datasets", user=OWNER, data="<mb20/>", headers={"Content-Type": "application/xml"})
    assert_error(r, 415, "unsupported_media_type")


def test_oversize_body_is_413_and_nothing_written(api):
    big = {"mb20": {"description": "x", "blob": "a" * (1 << 20)}}
    assert_error(api.post("/datasets", user=OWNER, json=big), 413, "payload_too_large")
    assert api.get("/datasets/mb20", user=OWNER).status_code == 404


def test_oversize_body_without_length_is_413(api):
    import io

    r = api.post(
        "/datasets",
        user=OWNER,
        input_stream=io.BytesIO(b"x" * (2 << 20)),
        headers={"Content-Type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")


def test_internal_errors_hide_the_traceback(api, monkeypatch, capfd):
    from common import authz

    def broken(email):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(authz, "user_record", broken)
    r = api.get("/roles", user=OWNER)
    body = assert_error(r, 500, "internal")
    assert "secret detail" not in r.get_data(as_text=True)
    assert body["request_id"] in capfd.readouterr().err  # the log line carries the same id


def test_openapi_documents_bulk_and_optional_bodies(api):
    doc = api.get("/annotations/_openapi.json").get_json()
    body = doc["paths"]["/annotations/v2/{name}"]["post"]["requestBody"]
    assert body["required"] is True and "AnnotationIn" in doc["components"]["schemas"]
    verify = api.get("/atlas/_openapi.json").get_json()["paths"]["/atlas/verify/{entry}"]["post"]
    assert verify["requestBody"]["required"] is False
    assert verify["x-gatehouse-role"] == "write_others on the entry's dataset"
