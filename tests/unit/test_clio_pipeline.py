"""How the request pipeline treats clio's /v2 routes (common.web.clio) beside a function's own,
on an App with a stand-in authentication step: the routes through real functions are in
tests/integration/test_clio_*.py."""

from __future__ import annotations

import datetime
import json
from types import SimpleNamespace
from typing import Annotated

import pytest
from pydantic import Field
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from common.models import Lenient, Query, Strict, Truncated
from common.web import clio, http


class Point(Strict):
    pos: list[int]


class ClioPoint(Lenient):
    pos: Annotated[list[Truncated], Field(min_length=3, max_length=3)]


class Groups(Query):
    groups: str | None = None


def _app() -> http.App:
    app = http.App("annotations", authenticate=lambda request: SimpleNamespace(email="a@example.com"))
    anyone = http.Check("anyone", lambda req, params: None)

    @app.post("/annotations/v2/<ds>", check=anyone, body=Point, query=Groups)
    def own(req, ds):
        return {"pos": req.body.pos, "groups": req.query.groups}

    @app.post("/v2/annotations/<ds>", check=anyone, body=ClioPoint, query=Groups)
    def theirs(req, ds):
        return {"pos": req.body.pos, "groups": req.query.groups, "ds": ds}

    return app


def _call(app: http.App, method: str, path: str, body=None, **kw):
    builder = EnvironBuilder(method=method, path=path, json=body, **kw)
    response = app(Request(builder.get_environ()))
    return response.status_code, json.loads(response.get_data())


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gatehouse-test")
    return _app()


def test_a_clio_route_ignores_unknown_query_parameters_and_keeps_known_ones(app):
    status, body = _call(
        app, "POST", "/v2/annotations/mb", {"pos": [1, 2, 3]}, query_string="app=natverse&groups=g"
    )
    assert status == 200 and body == {"pos": [1, 2, 3], "groups": "g", "ds": "mb"}
    status, body = _call(app, "POST", "/annotations/v2/mb", {"pos": [1, 2, 3]}, query_string="app=natverse")
    assert status == 400 and body["message"].startswith("unknown query parameter 'app'")
    assert "detail" not in body  # Gatehouse's own routes keep their envelope


def test_a_clio_body_drops_unknown_fields_and_truncates_positions(app):
    status, body = _call(app, "POST", "/v2/annotations/mb", {"pos": [1.7, -2.5, "3"], "verified": True})
    assert status == 200 and body["pos"] == [1, -2, 3]
    status, body = _call(app, "POST", "/annotations/v2/mb", {"pos": [1.7, 2, 3]})
    assert status == 422  # strict on Gatehouse's routes


def test_a_clio_error_also_carries_detail(app):
    status, body = _call(app, "POST", "/v2/annotations/mb", {"pos": [1, 2]})
    assert status == 422 and body["error"] == "validation_error" and body["detail"] == body["message"]
    status, body = _call(app, "GET", "/v2/annotations/mb/x/y")
    assert status == 404 and body["detail"] == "no such route"


def test_a_clio_path_is_routed_as_it_is_and_a_route_outside_both_is_refused(app):
    status, _ = _call(app, "POST", "/v2/annotations/mb/", {"pos": [1, 2, 3]})  # trailing slash: same
    assert status == 200
    with pytest.raises(ValueError, match="outside /annotations"):
        app.get("/v2/atlas/x", public=True)(lambda req: None)  # another function's resource


def test_epoch_reads_datetimes_and_iso_strings():
    moment = datetime.datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=datetime.UTC)
    assert clio.epoch(moment) == moment.timestamp() == clio.epoch("2024-05-01T12:00:00.500000Z")
    assert (
        clio.epoch(datetime.datetime(2024, 5, 1, 12))
        == datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC).timestamp()
    )
    assert clio.epoch("not a time") == "not a time" and clio.epoch(None) is None
    assert clio.with_epochs({"timestamp": moment, "title": "t"}, "timestamp") == {
        "timestamp": moment.timestamp(),
        "title": "t",
    }


def test_every_clio_resource_is_served_by_one_function():
    assert clio.under_root("/v2/annotations/mb") and clio.under_root("/v2") and not clio.under_root("/v2x/a")
    assert set(clio.RESOURCES.values()) >= {"users", "roles", "datasets", "annotations", "atlas"}
