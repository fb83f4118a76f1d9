"""docs/api.md is the contract users read: it names every route the functions serve, and no other;
the OpenAPI documents are complete; the docs pages are served (tests/system/test_docs_browser.py opens
them in a browser)."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import ROOT
from tests.utils import app_functions

DOC = os.path.join(ROOT, "docs", "api.md")
_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")
_PARAM = re.compile(r"\{[^}]*\}")
_META = ("/_health", "/_openapi.json")


def _served(api) -> set[tuple[str, str]]:
    served = set()
    for function in app_functions():
        document = api.get(f"/{function}/_openapi.json").get_json()
        for path, operations in document["paths"].items():
            if path.endswith(_META):
                continue
            served.update((method.upper(), _PARAM.sub("{}", path)) for method in operations)
    return served


def _documented() -> set[tuple[str, str]]:
    with open(DOC) as f:
        return {
            (method, _PARAM.sub("{}", path.rstrip("/")))
            for method, path in _ROUTE.findall(f.read())
            if not path.startswith("/<function>")
        }


def test_every_served_route_is_documented_and_every_documented_route_served(api):
    served, documented = _served(api), _documented()
    assert not served - documented, f"routes missing from docs/api.md: {sorted(served - documented)}"
    assert not documented - served, f"docs/api.md names routes nobody serves: {sorted(documented - served)}"


# -- the OpenAPI documents and the browsable pages ---------------------------------------------


def test_every_operation_is_documented_completely(api):
    """A schema for every success, only the table's errors (each by reference, with an example),
    parameters with schemas, a server, and a summary that is a whole sentence."""
    from common.web import clio
    from common.web.openapi import ERRORS

    for function in app_functions():
        document = api.get(f"/{function}/_openapi.json").get_json()
        assert document["servers"] and document["servers"][0]["url"]
        responses = document["components"]["responses"]
        for code, _ in ERRORS.values():
            assert responses[code]["content"]["application/json"]["example"]["error"] == code
        for path, operations in document["paths"].items():
            for method, op in operations.items():
                where = f"{method.upper()} {path}"
                assert re.fullmatch(r"[A-Z`(\"].*[.!?]", op["summary"]), (where, op["summary"])
                clio_route = path.startswith(clio.ROOT + "/")
                assert op["tags"] == ([function, clio.TAG] if clio_route else [function]), where
                for status, response in op["responses"].items():
                    if status.startswith("2") and status != "204":
                        assert "schema" in response["content"]["application/json"], where
                    elif not status.startswith("2"):
                        assert int(status) in ERRORS, where
                        assert response["$ref"].endswith("/" + ERRORS[int(status)][0]), where
                for param in op.get("parameters", []):
                    assert param["schema"] is not None, (where, param["name"])
                if op["security"]:  # a role-checked route answers 401, 403 (and 503 for its store)
                    assert {"401", "403", "503"} <= set(op["responses"]), where
                else:
                    assert not {"401", "403"} & set(op["responses"]), where


def test_declared_errors_reach_the_document(api):
    paths = api.get("/datasets/_openapi.json").get_json()["paths"]
    assert "409" in paths["/datasets/{name}/finalize"]["post"]["responses"]
    assert "409" not in paths["/datasets/{name}"]["get"]["responses"]
    twins = api.get("/twins/_openapi.json").get_json()["paths"]
    assert {"429", "500", "504"} <= set(twins["/twins/{path}/mock"]["post"]["responses"])


def test_every_document_is_valid_openapi(api, gateway):
    """Every function's document and the bundle's (the local stack's root, `make package`'s
    dist/openapi.json) pass openapi-spec-validator: e.g. no default of another type than its
    schema's."""
    import requests
    from openapi_spec_validator import validate

    for function in app_functions():
        validate(api.get(f"/{function}/_openapi.json").get_json())
    validate(requests.get(gateway + "/_openapi.json", timeout=10).json())


@pytest.mark.parametrize("function", ["datasets", "roles"])
def test_a_function_serves_its_docs_page_and_files_without_a_token(api, function):
    page = api.get(f"/{function}/_docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '"url": "_openapi.json"' in html and 'src="_docs/swagger-ui-bundle.js"' in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing may come from another host"
    deeper = api.get(f"/{function}/_docs/").get_data(as_text=True)  # one level down: still found
    assert '"url": "../_openapi.json"' in deeper and 'src="swagger-ui-bundle.js"' in deeper
    script = api.get(f"/{function}/_docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    assert len(script.get_data()) > 100_000
    assert api.get(f"/{function}/_docs/swagger-ui.css").mimetype == "text/css"
    missing = api.get(f"/{function}/_docs/..%2Frequirements.txt")
    assert missing.status_code == 404 and missing.get_json()["error"] == "not_found"
    assert "/_docs" not in "".join(api.get(f"/{function}/_openapi.json").get_json()["paths"])


def _policy(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header as {directive: [sources]}."""
    directives = (d.split() for d in header.split(";") if d.strip())
    return {d[0]: d[1:] for d in directives}


def test_the_docs_pages_run_only_their_own_scripts_and_refuse_framing(api, gateway):
    """Each docs page (a function's, one level down, the bundle's) sends a Content-Security-Policy
    that runs only the page's own script files (no inline script, nothing from another host) and
    forbids framing, also as X-Frame-Options; and the page has no inline script to run."""
    import requests

    pages = {
        "/datasets/_docs": api.get("/datasets/_docs"),
        "/datasets/_docs/": api.get("/datasets/_docs/"),
        "/": requests.get(gateway + "/", timeout=10),
    }
    for where, page in pages.items():
        policy = _policy(page.headers.get("Content-Security-Policy", ""))
        assert policy.get("script-src") == ["'self'"], (where, policy)
        assert policy.get("frame-ancestors") == ["'none'"], (where, policy)
        assert policy.get("default-src") == ["'none'"], (where, policy)
        for directive in ("style-src", "img-src", "connect-src"):
            assert policy.get(directive) and "*" not in policy[directive], (where, directive, policy)
        assert policy.get("object-src", policy["default-src"]) == ["'none'"], (where, policy)
        assert page.headers.get("X-Frame-Options") == "DENY", where
        for tag in re.findall(r"<script\b[^>]*>(?:.*?)</script>", page.text, re.S):
            opening = tag.split(">", 1)[0]
            assert "src=" in opening or 'type="application/json"' in opening, (where, tag)
            assert "src=" not in opening or tag.endswith("></script>"), (where, tag)
    # The page's own script is a served file, like Swagger UI's.
    init = api.get("/datasets/_docs/gatehouse-docs.js")
    assert init.status_code == 200 and init.mimetype == "text/javascript"
    assert 'src="_docs/gatehouse-docs.js"' in pages["/datasets/_docs"].text
    assert 'src="_docs/gatehouse-docs.js"' in pages["/"].text
    assert requests.get(gateway + "/_docs/gatehouse-docs.js", timeout=10).status_code == 200


def test_the_authorize_token_is_kept_for_the_tab_only(api):
    """Swagger UI's own persistence (persistAuthorization) writes the token to localStorage,
    which outlives the tab: it is off, and the page's script keeps it in sessionStorage."""
    import json

    page = api.get("/datasets/_docs").get_data(as_text=True)
    config = json.loads(
        re.search(r'<script id="swagger-config" type="application/json">(.*?)</script>', page, re.S)[1]
    )
    assert config["persistAuthorization"] is False
    script = api.get("/datasets/_docs/gatehouse-docs.js").get_data(as_text=True)
    assert "sessionStorage" in script and "localStorage" not in script


def test_the_local_stack_serves_the_bundle_page_and_document(gateway, api):
    import requests

    page = requests.get(gateway + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '"url": "_openapi.json"' in page.text
    assert requests.get(gateway + "/_docs/swagger-ui-bundle.js", timeout=10).status_code == 200
    combined = requests.get(gateway + "/_openapi.json", timeout=10).json()
    assert combined["openapi"] == "3.1.0" and combined["servers"] == [
        {"url": "/", "description": "This deployment."}
    ]
    ids = []
    for function in app_functions():
        own = api.get(f"/{function}/_openapi.json").get_json()
        for path, operations in own["paths"].items():
            assert set(combined["paths"][path]) == set(operations)
            ids += [combined["paths"][path][m]["operationId"] for m in operations]
        assert {"name": function, "description": own["tags"][0]["description"]} in combined["tags"]
    assert len(ids) == len(set(ids)), "operation ids are unique across the bundle"
    assert len(ids) == sum(len(item) for item in combined["paths"].values())
    unknown = requests.get(gateway + "/nothing-here", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
