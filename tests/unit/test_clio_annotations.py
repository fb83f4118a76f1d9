"""The adapters the annotations and atlas functions' clio routes use (common.web.clio), and how
a function called at its own URL tells its clio routes from its own `/v2/...` ones."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from common.web import clio, http


def test_locationkey_names_the_location_as_clio_did():
    assert clio.locationkey({"locationref": "1_2_3", "title": "t"}) == "1_2_3"
    assert clio.locationkey({"locationkey": "7_8_9", "location": [7, 8, 9]}) == "7_8_9"
    assert clio.locationkey({"location": [4, -5, 6]}) == "4_-5_6"


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "gatehouse-test")
    app = http.App("annotations", authenticate=lambda request: SimpleNamespace(email="a@example.com"))
    anyone = http.Check("anyone", lambda req, params: None)

    @app.get("/annotations/v2/<ds>", check=anyone)
    def own(req, ds):
        return {"route": "own", "ds": ds}

    @app.get("/v2/annotations/<ds>", check=anyone)
    def theirs(req, ds):
        return {"route": "clio", "ds": ds}

    return app


@pytest.mark.parametrize(
    "path,answer",
    [
        ("/v2/mb20", {"route": "own", "ds": "mb20"}),  # the function's own URL: /annotations/v2/mb20
        ("/annotations/v2/mb20", {"route": "own", "ds": "mb20"}),
        ("/v2/annotations/mb20", {"route": "clio", "ds": "mb20"}),
    ],
)
def test_a_path_at_the_functions_own_url_is_clio_only_under_its_clio_resources(app, path, answer):
    response = app(Request(EnvironBuilder(method="GET", path=path).get_environ()))
    assert response.status_code == 200 and json.loads(response.get_data()) == answer
