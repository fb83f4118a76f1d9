"""clio-store's own README, replayed against the local stack `make dev` serves (the gateway over
HTTP): its curl lines as written, with only the base URL and the token changed. Each line sends
`Content-Type: application/json`, also on GETs and DELETEs without a body, as the README does.

Lines of that README that address another deployment's URL shape (`.../clio_toplevel/atlas-verify/KEY`)
are not Gatehouse's routes; atlas verification is `POST /atlas/verify/{id}` here (docs/api.md).
"""

from __future__ import annotations

import requests

from tests.conftest import OWNER

JSON = {"Content-Type": "application/json"}


def curl(gateway: str, token: str, method: str, path: str, body: str | None = None) -> requests.Response:
    headers = {**JSON, "Authorization": f"Bearer {token}"}
    return requests.request(method, gateway + path, headers=headers, data=body, timeout=30)


def test_clio_readme_lines_work_as_written(gateway, api):
    token = api.token(OWNER)

    def ok(method: str, path: str, body: str | None = None):
        r = curl(gateway, token, method, path, body)
        assert r.status_code == 200, (method, path, r.status_code, r.text)
        return r.json()

    # datasets: the placeholder location clio's README gives is stored as given
    made = ok("POST", "/datasets", '{"mb20": { "description": "4nm MB", "location": "gs://"}}')
    assert made["mb20"]["location"] == "gs://" and made["mb20"]["description"] == "4nm MB"
    assert "mb20" in ok("GET", "/datasets")
    ok("POST", "/datasets", '{"AbG": { "description": "another", "location": "gs://"}}')

    # annotations (v1) and saved searches: per user, keyed by location
    ok("POST", "/annotations/mb20?x=50&y=30&z=50", '{"foo": "bar"}')
    assert ok("GET", "/annotations/mb20")["50_30_50"]["foo"] == "bar"
    ok("DELETE", "/annotations/mb20?x=50&y=30&z=50")
    assert ok("GET", "/annotations/mb20") == {}
    ok("POST", "/savedsearches/mb20?x=50&y=30&z=50", '{"foo": "bar"}')
    assert ok("GET", "/savedsearches/mb20")["50_30_50"]["foo"] == "bar"
    ok("DELETE", "/savedsearches/mb20?x=50&y=30&z=50")
    assert ok("GET", "/savedsearches/mb20") == {}

    # atlas: the body's "user" never wins over the caller
    entry = ok(
        "POST",
        "/atlas/mb20?x=50&y=30&z=50",
        '{"title": "weird point", "description": "it is raally strange", "user": "foo@bar"}',
    )
    assert entry["title"] == "weird point" and entry["user"] == OWNER
    ok(
        "POST",
        "/atlas/AbG?x=50&y=30&z=50",
        '{"title": "weird point", "description": "it is also strange", "user": "foo@bar"}',
    )
    assert ok("GET", "/atlas/mb20")["50_30_50"]["id"] == entry["id"]
    assert entry["id"] in {e["id"] for e in ok("GET", "/atlas/all")}
    ok("DELETE", "/atlas/mb20?x=50&y=30&z=50")

    # users and roles
    assert isinstance(ok("GET", "/users"), dict)
    assert "global_roles" in ok("GET", "/roles")

    # and the dataset goes
    ok("DELETE", "/datasets", '["mb20"]')
    assert "mb20" not in ok("GET", "/datasets")
