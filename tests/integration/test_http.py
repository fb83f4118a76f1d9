"""common.web.http: meta routes, the error envelope, request ids, CORS, body rules."""

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
    """The served document has exactly the app's routes, each with its role, its path parameters
    and its declared query parameters (types and required flags from the query model)."""
    import re

    from common.web import openapi
    from tests.utils import load_function

    app = load_function(function).app
    doc = api.get(f"/{function}/_openapi.json").get_json()
    assert doc["openapi"] == "3.1.0"
    served = {(path, method): op for path, item in doc["paths"].items() for method, op in item.items()}
    expected = {  # the docs page and its files are not API operations
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.path), r.method.lower()): r
        for r in app.routes
        if "/_docs" not in r.path
    }
    assert set(served) == set(expected)
    assert (f"/{function}/_health", "get") in served
    for key, route in expected.items():
        op = served[key]
        first_sentence = openapi.sentences(route.doc or route.handler.__doc__ or route.handler.__name__)[0]
        assert op["summary"] == first_sentence and op["operationId"].startswith(route.name)
        if route.check is None:
            assert op["security"] == [] and "x-gatehouse-role" not in op, key
        else:
            assert op["x-gatehouse-role"] == route.check.describe
            assert op["security"] == [{"bearer": []}]
        params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
        assert {n for kind, n in params if kind == "path"} == set(re.findall(r"<(?:\w+:)?(\w+)>", route.path))
        fields = route.query.model_fields if route.query is not None else {}
        assert {n for kind, n in params if kind == "query"} == {i.alias or n for n, i in fields.items()}, key
        for name, info in fields.items():
            assert params["query", info.alias or name]["required"] is info.is_required(), (key, name)
        if route.response is not None:  # a declared response model is documented, not free-form
            success = op["responses"][str(route.status)]["content"]["application/json"]["schema"]
            assert success != openapi.FREE_FORM, key


def test_openapi_gives_query_parameters_their_types(api):
    doc = api.get("/annotations/_openapi.json").get_json()
    put = {p["name"]: p for p in doc["paths"]["/annotations/{name}"]["post"]["parameters"]}
    assert all(put[axis]["required"] and put[axis]["schema"]["type"] == "integer" for axis in "xyz")
    listing = {p["name"]: p for p in doc["paths"]["/annotations/v2/{name}"]["get"]["parameters"]}
    assert listing["limit"]["required"] is False
    assert {"type": "integer", "minimum": 1, "maximum": 10000}.items() <= listing["limit"]["schema"]["anyOf"][
        0
    ].items()
    assert listing["kind"]["schema"]["anyOf"][0]["enum"] == ["point", "lineseg", "sphere"]


def test_a_query_value_of_the_wrong_type_is_400_naming_it(api):
    api.add_dataset("mb20")
    r = api.get("/annotations/v2/mb20?limit=many", user=OWNER)
    body = assert_error(r, 400, "bad_request")
    assert "'limit'" in body["message"] and body["details"][0]["loc"] == ["limit"]
    body = assert_error(api.post("/annotations/mb20?x=1&y=2", user=OWNER, json={}), 400, "bad_request")
    assert "'z'" in body["message"]


def test_openapi_documents_request_models(api):
    doc = api.get("/users/_openapi.json").get_json()
    body = doc["paths"]["/users/me/keys"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("KeyCreate")
    schema = doc["components"]["schemas"]["KeyCreate"]
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert "{email}" in "".join(doc["paths"])


def _success_schema(doc, path, method, status="200"):
    """The success schema of an operation, its $ref followed into components."""
    schema = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    if "$ref" in schema:
        return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_openapi_documents_response_models(api):
    """Routes with a fixed shape document it (XPublic models); the key secret only on create."""
    users = api.get("/users/_openapi.json").get_json()
    created = _success_schema(users, "/users/me/keys", "post", "201")
    assert "key" in created["required"] and "created_at" in created["required"]
    listed = _success_schema(users, "/users/me/keys", "get")
    assert listed["type"] == "array" and listed["items"]["$ref"].endswith("/KeyPublic")
    assert "key" not in users["components"]["schemas"]["KeyPublic"]["properties"]
    roles = api.get("/roles/_openapi.json").get_json()
    assert set(_success_schema(roles, "/roles", "get")["required"]) >= {"email", "global_roles", "datasets"}
    transfer = api.get("/transfer/_openapi.json").get_json()
    job = _success_schema(transfer, "/transfer/{job_id}", "get")
    assert "parts" in job["required"] and job["properties"]["created_at"]["format"] == "date-time"


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

    from common import config
    from common.web import http

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
    form = {"Content-Type": "application/x-www-form-urlencoded"}  # what `curl -d` sends
    r = api.post("/datasets", user=OWNER, data='{"mb20": {"description": "x"}}', headers=form)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["mb20"]["name"] == "mb20" and r.get_json()["mb20"]["description"] == "x"
    assert api.get("/datasets/mb20", user=OWNER).get_json()["description"] == "x"  # written
    # Read as JSON, never as a form: a form body is malformed JSON, in the error envelope.
    body = assert_error(api.post("/datasets", user=OWNER, data="mb20=x", headers=form), 400, "bad_request")
    assert body["message"].startswith("malformed JSON")


def test_other_media_types_are_415(api):
    r = api.post("/datasets", user=OWNER, data="<mb20/>", headers={"Content-Type": "application/xml"})
    assert_error(r, 415, "unsupported_media_type")


def test_oversize_body_is_413_and_nothing_written(api):
    big = {"mb20": {"description": "x", "blob": "a" * (1 << 20)}}
    assert_error(api.post("/datasets", user=OWNER, json=big), 413, "payload_too_large")
    assert api.get("/datasets/mb20", user=OWNER).status_code == 404


def _chunked(api, body: bytes):
    """POST /datasets as a chunked upload: no Content-Length, the stream ends the body (as
    gunicorn passes it on). werkzeug's test client would add a Content-Length, so the environ is built here."""
    import io

    from werkzeug.test import EnvironBuilder, run_wsgi_app
    from werkzeug.wrappers import Response

    environ = EnvironBuilder(
        path="/datasets",
        method="POST",
        headers={
            "Authorization": f"Bearer {api.token(OWNER)}",
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
        },
        input_stream=io.BytesIO(body),
    ).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input_terminated"] = True
    # Straight to the WSGI app: the test client's open() would build the environ again.
    body, status, headers = run_wsgi_app(api.client("datasets").application, environ, buffered=True)
    return Response(body, status, headers)


def test_oversize_body_without_length_is_413(api):
    # The same request under the limit is read and written: the chunked path really runs.
    assert _chunked(api, b'{"small": {"description": "x"}}').status_code == 200
    big = b'{"big": {"description": "' + b"x" * (2 << 20) + b'"}}'
    assert_error(_chunked(api, big), 413, "payload_too_large")
    assert api.get("/datasets/big", user=OWNER).status_code == 404


def test_internal_errors_hide_the_traceback(api, monkeypatch, capfd):
    from common.identity import authz

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
    assert body["required"] is True and "AnnotationCreate" in doc["components"]["schemas"]
    verify = api.get("/atlas/_openapi.json").get_json()["paths"]["/atlas/verify/{entry}"]["post"]
    assert verify["requestBody"]["required"] is False
    assert verify["x-gatehouse-role"] == "write_others on the entry's dataset"
