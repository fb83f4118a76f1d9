"""Twin endpoints through the client, PySyft style, against the real local stack and the
examples/warehouse endpoints (their private side reads moto's S3 server)."""

from __future__ import annotations

import inspect
import pydoc

import pytest
from conftest import MANAGER, OWNER, RESEARCHER
from gatehouse import (
    BadRequest,
    EndpointError,
    Forbidden,
    Gatehouse,
    NotFound,
    Table,
    Timeout,
    ValidationError,
)
from gatehouse.twins import Endpoint

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
    assert repr(researcher.twins.warehouse.query) == (
        "<twin endpoint warehouse.query(*, sql: str, limit: int = 100) on manc: "
        "One read-only SELECT over the table cells (at most 1000 rows).>"
    )


def test_twins_are_discoverable(connect, gh, warehouse):
    """`gh.twins.<TAB>` (dir) lists the endpoints; an endpoint's repr, help() and signature come
    from the JSON schema the server returns; help(Gatehouse) lists the resources."""
    researcher = connect(RESEARCHER)
    assert {"warehouse", "submit", "requests", "list"} <= set(dir(researcher.twins))
    assert {"query", "schema", "mock", "private", "call_async"} <= set(dir(researcher.twins.warehouse))
    assert "warehouse.query" in repr(researcher.twins) and "warehouse.schema" in repr(researcher.twins)
    assert repr(researcher.twins.warehouse) == "<twin endpoints under warehouse: query, schema>"
    assert str(inspect.signature(researcher.twins.warehouse.query)) == "(*, sql: str, limit: int = 100)"
    shown = pydoc.render_doc(researcher.twins.warehouse.query, renderer=pydoc.plaintext)
    assert "warehouse.query(*, sql: str, limit: int = 100)" in shown
    assert "One read-only SELECT over the table cells" in shown and "on dataset manc" in shown
    assert "sql: a string (required)" in shown and "limit: an integer (default 100)" in shown
    assert "The mock side's source:" in shown  # a reader sees the mock's code, never the private one
    assert "query_private" not in shown and "bucket" not in shown
    assert "Twin endpoints under warehouse: warehouse.query, warehouse.schema" in pydoc.render_doc(
        researcher.twins.warehouse, renderer=pydoc.plaintext
    )
    assert "Call it with keyword arguments" in (Endpoint.__doc__ or "")  # the class keeps its own doc
    with pytest.raises(TypeError, match="keyword arguments only"):
        researcher.twins.warehouse.query(SQL)

    helped = pydoc.render_doc(Gatehouse, renderer=pydoc.plaintext)
    for resource in ("datasets", "annotations", "savedsearches", "atlas", "signatures", "transfer", "twins"):
        assert f"- `{resource}`" in helped
    assert repr(gh.datasets).startswith("<gatehouse datasets: `/datasets`: metadata") and "list" in repr(
        gh.datasets
    )
    assert repr(gh.auth) == "<gatehouse auth: token from the token= argument>"


def test_wrong_arguments_fail_before_the_request_as_the_server_says(connect, warehouse):
    researcher = connect(RESEARCHER)
    with pytest.raises(ValidationError) as server:  # the server's own answer, through the raw route
        researcher.post("/twins/warehouse.query", json={"sql": SQL, "limit": "ten", "rows": 1})
    assert server.value.request_id
    sent = []  # what this client sends from now on (a requests hook, the server is real)
    researcher._session.hooks["response"].append(lambda r, *args, **kw: sent.append(r.request.method))
    with pytest.raises(ValidationError) as local:
        researcher.twins.warehouse.query(sql=SQL, limit="ten", rows=1)
    assert "POST" not in sent and set(sent) == {"GET"}  # the endpoint's view was read, nothing called
    assert (local.value.status, local.value.error, local.value.message, local.value.details) == (
        server.value.status,
        server.value.error,
        server.value.message,
        server.value.details,
    )
    assert local.value.request_id is None
    assert str(local.value) == (
        "422 validation_error: the arguments do not match the endpoint's parameters\n"
        "  limit: expected an integer\n  rows: unknown argument"
    )
    with pytest.raises(ValidationError, match="sql: missing argument"):
        researcher.twins.warehouse.query.mock(limit=1)


def test_table_results_convert_to_data_frames(connect, warehouse):
    researcher = connect(RESEARCHER)
    result = researcher.twins.warehouse.query(sql=SQL, limit=3)
    assert isinstance(result, Table) and result["columns"] == result.columns == ["cell_id", "cell_type"]
    frame = result.to_dataframe()
    assert list(frame.columns) == ["cell_id", "cell_type"] and len(frame) == 3
    assert frame.iloc[0]["cell_id"] == result["rows"][0][0]
    assert result.records()[0] == {"cell_id": result["rows"][0][0], "cell_type": result["rows"][0][1]}
    job = researcher.twins.warehouse.query.call_async(sql=SQL, limit=2)
    assert len(job.wait(timeout=60).to_dataframe()) == 2
    assert not isinstance(researcher.twins.warehouse.schema(), Table)  # only the {"columns", "rows"} shape


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
