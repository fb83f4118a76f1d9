"""The client's own parsing: Retry-After, release series and error bodies that are not the
envelope (a proxy's page in front of the gateway, say)."""

from __future__ import annotations

import email.utils
import time

import requests
from gatehouse import BadGateway, EndpointError, GatehouseError, NotFound
from gatehouse._http import retry_after as _retry_after
from gatehouse.client import _series
from gatehouse.errors import from_envelope


def _response(status: int, headers: dict[str, str], body: bytes = b"") -> requests.Response:
    response = requests.Response()
    response.status_code, response._content = status, body
    response.headers.update(headers)
    return response


def test_retry_after_in_seconds_or_as_a_date():
    assert _retry_after(_response(429, {"Retry-After": "3"})) == 3.0
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    assert 15 < _retry_after(_response(503, {"Retry-After": when})) <= 20
    assert _retry_after(_response(503, {})) is None
    assert _retry_after(_response(503, {"Retry-After": "soon"})) is None


def test_release_series():
    assert _series("0.1.0") == _series("0.1.7+abc") == (0, 1)
    assert _series("0.2.0") != _series("0.1.0")
    assert _series("1.4.0") == _series("1.0.0-rc1") == (1,)
    assert _series("dev") is None and _series("test") is None


def test_errors_from_bodies():
    err = from_envelope(404, {"error": "not_found", "message": "no dataset", "request_id": "r1"})
    assert isinstance(err, NotFound) and (err.status, err.message, err.request_id) == (
        404,
        "no dataset",
        "r1",
    )
    assert isinstance(from_envelope(500, {"error": "endpoint_error", "message": "x"}), EndpointError)
    page = _response(502, {"X-Request-Id": "r2"}, b"<html>Bad Gateway</html>")
    err = from_envelope(502, page.text, page)
    assert isinstance(err, BadGateway) and err.error == "http_error" and err.request_id == "r2"
    assert "Bad Gateway" in err.message
    assert type(from_envelope(418, {"error": "teapot", "message": "short"})) is GatehouseError
