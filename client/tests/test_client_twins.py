"""Twin endpoints through the client, PySyft style, against the real local stack and the
examples/warehouse endpoints (their private side reads moto's S3 server)."""

from __future__ import annotations

import pytest
from conftest import MANAGER, OWNER, RESEARCHER
from gatehouse import BadRequest, EndpointError, Forbidden, NotFound, Timeout, ValidationError

SQL = "SELECT cell_id, cell_type FROM cells ORDER BY cell_id"


def test_endpoints_read_as_attributes(connect, gh, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    mock = researcher.twins.warehouse.query(sql=SQL, limit=3)  # a reader's default: the mock side
    assert mock["columns"] == ["cell_id", "cell_type"] and all(row[0] >= 900000 for row in mock["rows"])
    private = manager.twins.warehouse.query(sql=SQL, limit=3)  # an owner's default: the private side
    assert private["columns"] == mock["columns"] and private["rows"] != mock["rows"]
    assert manager.twins.warehouse.query.private(sql=SQL, limit=3) == private
    assert manager.twins.warehouse.query.mock(sql=SQL, limit=3) == mock
    assert gh.twins["warehouse.query"].mock(sql=SQL, limit=3) == mock  # item access, same endpoint
    assert "cells" in researcher.twins.warehouse.schema()["tables"]
    with pytest.raises(Forbidden):
        researcher.twins.warehouse.query.private(sql=SQL)
    assert repr(researcher.twins.warehouse.query) == "<twin endpoint warehouse.query>"


def test_endpoint_views_and_listing(connect, gh, warehouse):
    researcher = connect(RESEARCHER)
    assert {e["path"] for e in researcher.twins.list()} == {"warehouse.query", "warehouse.schema"}
    info = researcher.twins.warehouse.query.info()
    assert info["kind"] == "twin" and "sql" in info["parameters"]["properties"]
    assert "settings" not in str(info)
    full = gh.twins.warehouse.query.info(full=True)
    assert full["sides"]["private"]["settings"]["bucket"] == warehouse.BUCKET
    gh.twins.warehouse.query(sql=SQL, limit=1)
    assert [c["side"] for c in gh.twins.warehouse.query.calls()] == ["private"]


def test_endpoint_errors_are_typed(connect, gh, warehouse):
    researcher = connect(RESEARCHER)
    with pytest.raises(BadRequest, match="only a single read-only SELECT"):  # the endpoint's PublicError
        researcher.twins.warehouse.query(sql="DROP TABLE cells")
    with pytest.raises(ValidationError):
        researcher.twins.warehouse.query(sql=SQL, limit="ten")
    with pytest.raises(NotFound):
        researcher.twins.warehouse.nothere()
    gh.twins.define(
        path="lab.broken",
        description="fails",
        dataset="manc",
        timeout_s=1,
        mock={
            "code": "def broken(context, slow: bool = False):\n    import time\n    if slow:\n        time.sleep(5)\n    return 1 / 0"
        },
        private={"code": "def broken(context, slow: bool = False):\n    return 1"},
    )
    with pytest.raises(EndpointError) as caught:
        researcher.twins.lab.broken()
    assert caught.value.status == 500 and caught.value.details["reference"]
    assert "ZeroDivisionError" not in caught.value.message  # a non-owner never reads the exception
    with pytest.raises(Timeout):
        researcher.twins.lab.broken(slow=True)


def test_definitions_update_and_removal(gh):
    view = gh.twins.define(
        path="demo.greet",
        description="Greets someone",
        public={"code": "def greet(context, name: str):\n    return 'hello ' + name"},
    )
    assert view["path"] == "demo.greet" and view["kind"] == "public"
    assert gh.twins.demo.greet(name="Ada") == "hello Ada"
    assert gh.twins.update("demo.greet", description="Says hello")["description"] == "Says hello"
    gh.twins.remove("demo.greet")
    with pytest.raises(NotFound):
        gh.twins.demo.greet(name="Ada")
    assert gh.whoami()["email"] == OWNER
