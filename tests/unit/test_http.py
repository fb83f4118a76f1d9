"""common.web.http without a request: streamed answers that fail at once or midway, and route
declarations that are refused as they are made. Requests through the functions:
tests/integration/test_http.py and test_hardening.py."""

from __future__ import annotations

import json

import pytest


def test_a_stream_whose_query_fails_at_once_is_an_error_answer():
    from common import errors, jsonio
    from common.web import http

    def failing():
        raise errors.Unavailable("the data store is unreachable", retry_after=2)
        yield  # pragma: no cover

    with pytest.raises(errors.Unavailable):
        http.streamed(jsonio.stream_array(failing()))


def test_a_stream_that_fails_midway_is_cut_short_not_closed():
    from common import jsonio
    from common.web import http

    def items():
        for i in range(300):
            if i == 290:
                raise RuntimeError("the query broke")
            yield {"i": i}

    response = http.streamed(jsonio.stream_array(items(), batch=100))
    body = b""
    with pytest.raises(RuntimeError):
        for chunk in response.response:
            body += chunk
    assert body.startswith(b"[") and not body.endswith(b"]")
    with pytest.raises(ValueError):
        json.loads(body)


def test_a_misspelt_role_fails_when_the_route_is_declared_not_on_a_request():
    from common.identity import authz

    with pytest.raises(AttributeError):
        authz.on_dataset(authz.WRITE_OWNN)  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):  # a string is not a Need: refused as the route is declared
        authz.on_dataset("write_own")  # type: ignore[arg-type]


def test_a_checked_route_needs_an_authentication_step():
    from common.identity import authz
    from common.web import http

    probe = http.App("probe")
    with pytest.raises(ValueError, match="no authenticate step"):
        probe.get("/probe/x", check=authz.AUTHENTICATED)(lambda req: None)
    router = http.Router()
    router.get("/x", check=authz.AUTHENTICATED)(lambda req: None)
    with pytest.raises(ValueError, match="no authenticate step"):
        probe.include_router(router, prefix="/probe")


def test_a_check_hands_the_handler_what_it_loaded():
    from types import SimpleNamespace

    from werkzeug.test import EnvironBuilder
    from werkzeug.wrappers import Request

    from common.web import http

    probe = http.App("probe", authenticate=lambda request: SimpleNamespace(email="a@example.com"))
    owner = http.Check("the thing's owner", lambda req, params: {"thing": {"of": params["name"]}})

    @probe.get("/probe/<name>", check=owner)
    def get_thing(req, name, thing):
        return {"name": name, "thing": thing}

    response = probe(Request(EnvironBuilder(path="/probe/x").get_environ()))
    assert json.loads(response.get_data()) == {"name": "x", "thing": {"of": "x"}}


def test_a_trusted_answer_keeps_its_declared_fields_and_skips_validation():
    """http.trusted: a document this code wrote in the model's shape goes out as it is, without
    a pydantic round trip; only fields the model does not declare are left out."""
    from pydantic import Field

    from common.models import Public
    from common.web import http

    class ItemPublic(Public):
        name: str
        size: int | None = None
        kind: str = Field(alias="type")

    route = http.Route("GET", "/x/items", lambda req: None, None, declared_response=list[ItemPublic])
    item = http.trusted(ItemPublic, {"type": "t", "internal": 1, "name": "a"})
    assert list(item.items()) == [("name", "a"), ("type", "t")]  # in the model's order, as validated
    assert isinstance(item, http.Trusted)
    assert route.public(item, route.item_adapter) is item
    answer = [item, http.trusted(ItemPublic, {"name": "b", "type": "u", "size": 2})]
    assert route.public(answer) is answer
    # An untrusted answer (or a list with one untrusted item) is validated as before.
    assert route.public([{"name": "c", "type": "v", "internal": 1}]) == [{"name": "c", "type": "v"}]
    with pytest.raises(ValueError):
        route.public([item, {"name": "d"}])
