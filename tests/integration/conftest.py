"""The integration tier: the emulator stack, with functions called in-process, the background
workers behind Pub/Sub and the sandbox's real workers. Every test starts from a clean stack."""

from __future__ import annotations

import pytest

from common import jsonio
from common.web import http


@pytest.fixture(autouse=True)
def clean_state(clean_state):
    """tests/conftest.py's clean_state, before each test of this tier."""
    return clean_state


_misfits: list[str] = []  # answers that do not fit their route's response model


def _fits(route: http.Route, body: bytes | str) -> None:
    """Whether an answer's JSON is what its response model makes of it: valid, with no field
    the model does not declare."""
    adapter = route.response_adapter
    try:
        sent = jsonio.loads(body)
        shaped = adapter.dump_python(adapter.validate_python(sent), by_alias=True, exclude_unset=True)
    except Exception as exc:  # noqa: BLE001 -- any failure is a misfit, reported at the test's end
        _misfits.append(f"{route.method} {route.path}: {exc}")
        return
    if jsonio.loads(jsonio.dumps(shaped)) != sent:
        _misfits.append(f"{route.method} {route.path}: sent {sent!r}, the model makes {shaped!r}")


def _checked(body, route: http.Route):
    """A streamed body, passed on as it is, checked once it has all been sent."""
    chunks = []
    for chunk in body:
        chunks.append(chunk)
        yield chunk
    _fits(route, b"".join(c if isinstance(c, bytes) else c.encode() for c in chunks))


@pytest.fixture(autouse=True, scope="session")
def answers_fit_their_response_models():
    """Every answer of a route with a response model, in every test of this tier, is checked
    against it: the one test that every route's answers fit their declared shape, those sent
    without validation (http.trusted) included."""
    to_response = http.App._to_response

    def checking(result, route):
        response = to_response(result, route)
        plain = "Content-Encoding" not in response.headers  # a gzip DVID sent is passed on as it is
        if route.response is not None and response.status_code == route.status and response.is_json and plain:
            if response.is_sequence:
                _fits(route, response.get_data())
            else:
                response.response = _checked(response.response, route)
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http.App, "_to_response", staticmethod(checking))
        yield


@pytest.fixture(autouse=True)
def no_misfit_answers():
    _misfits.clear()
    yield
    assert not _misfits, "answers that do not fit their response models:\n" + "\n".join(_misfits)
