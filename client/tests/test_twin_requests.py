"""Code requests and asynchronous jobs through the client, PySyft style: a researcher submits a
function over the private sides of endpoints, an owner approves or denies it, the researcher
runs it; any call can be a job. Against the real local stack (the twins function's job worker
behind its push subscription on the Pub/Sub emulator)."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from conftest import MANAGER, RESEARCHER
from gatehouse import BadRequest, Conflict, Forbidden, NotFound, ValidationError

SQL = "SELECT region, avg(synapses) FROM cells GROUP BY region"


def regional_means(query):
    answer = query(sql="SELECT region, avg(synapses) FROM cells GROUP BY region")
    return {region: round(mean, 1) for region, mean in answer["rows"]}


def test_submit_approve_and_run(connect, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    request = researcher.twins.submit(
        regional_means, endpoints={"query": researcher.twins.warehouse.query}, reason="figure 2"
    )
    assert request.status == "pending" and request.record["endpoints"] == {"query": "warehouse.query"}
    assert request.record["code"].startswith("def regional_means(query):\n")  # the source, as written
    assert [r.id for r in researcher.twins.requests] == [request.id]

    pending = manager.twins.requests.list(status="pending").to_list()
    assert [r.id for r in pending] == [request.id] and "avg(synapses)" in pending[0].record["code"]
    with pytest.raises(Conflict):
        request.run()  # not approved yet
    with pytest.raises(Forbidden):
        researcher.twins.requests.get(request.id).approve()  # only owners decide
    assert manager.twins.requests[request.id].approve("aggregates only").status == "approved"

    private = manager.twins.warehouse.query.private(sql=SQL)
    expected = {region: round(mean, 1) for region, mean in private["rows"]}
    assert request.run() == expected
    assert request.run() == expected  # it ran once; the same answer again
    assert request.refresh().status == "done"


def test_a_denied_request_never_runs(connect, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    request = researcher.twins.submit(regional_means, endpoints={"query": "warehouse.query"})
    assert manager.twins.requests.get(request.id).deny("not now").status == "denied"
    with pytest.raises(Conflict):
        request.run()
    assert researcher.twins.requests.get(request.id).status == "denied"


def test_submitting_is_checked(connect, warehouse):
    outsider = connect("outsider@example.com")
    with pytest.raises(ValidationError):  # an endpoint the caller cannot see
        outsider.twins.submit(regional_means, endpoints={"query": "warehouse.query"})
    with pytest.raises(ValidationError):  # the code must take exactly the endpoints named
        connect(RESEARCHER).twins.submit(
            "def f(other):\n    return 1\n", endpoints={"query": "warehouse.query"}
        )
    with pytest.raises(NotFound):
        outsider.twins.requests.get("nosuchrequest")


def test_calls_as_jobs(connect, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    job = researcher.twins.warehouse.query.call_async(sql=SQL)
    assert job.id and job.record["status"] in ("pending", "running", "done")
    assert job.wait(timeout=60) == researcher.twins.warehouse.query(sql=SQL)  # the mock side
    assert researcher.twins.job(job.id).record["status"] == "done"

    private = manager.twins.warehouse.query.private.call_async(sql=SQL).wait(timeout=60)
    assert private == manager.twins.warehouse.query.private(sql=SQL)

    failing = researcher.twins.warehouse.query.call_async(sql="DROP TABLE cells")
    with pytest.raises(BadRequest, match="only a single read-only SELECT"):  # the endpoint's PublicError
        failing.wait(timeout=60)
    with pytest.raises(ValidationError):  # arguments are checked before the job is made
        researcher.twins.warehouse.query.call_async(sql=SQL, limit="ten")


def test_a_request_run_as_a_job(connect, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    request = researcher.twins.submit(regional_means, endpoints={"query": researcher.twins.warehouse.query})
    manager.twins.requests.get(request.id).approve()
    result = request.run_async().wait(timeout=60)
    assert result == request.run() and set(result) >= {"MB", "LH"}


def test_an_owner_reviews_tries_and_decides_with_reasons(connect, warehouse, capsys):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    submitted = researcher.twins.submit(
        regional_means, endpoints={"query": researcher.twins.warehouse.query}, reason="figure 2"
    )
    [request] = manager.twins.requests.list(status="pending")
    assert request.code == submitted.code and request.code.startswith("def regional_means(query):\n")
    assert (request.requester, request.reason, request.endpoints) == (
        RESEARCHER,
        "figure 2",
        {"query": "warehouse.query"},
    )
    assert isinstance(request.created_at, datetime.datetime) and request.created_at.tzinfo is not None
    assert repr(request) == (
        f"Request({request.id!r}, status='pending', requester={RESEARCHER!r}, "
        "endpoints={'query': 'warehouse.query'})"
    )

    request.show()
    shown = capsys.readouterr().out
    print(shown)  # what an owner sees (pytest -s shows it)
    assert shown.startswith(f"Request {request.id} (pending), from {RESEARCHER}, ")
    assert "Reason: figure 2\n" in shown
    assert "  query -> warehouse.query (dataset manc): One read-only SELECT over the table cells" in shown
    assert "  1 | def regional_means(query):\n" in shown and "  3 |     return {region:" in shown
    assert f"SHA-256 {hashlib.sha256(request.code.encode()).hexdigest()[:16]}" in shown
    assert "Approving binds this code exactly" in shown and "request.try_on_mock()" in shown
    page = request._repr_html_()
    assert "<pre>" in page and "&quot;SELECT region, avg(synapses)" in page and "<td>manc</td>" in page

    tried = request.try_on_mock()  # on the server's sandbox, every endpoint on its mock side
    mock = researcher.twins.warehouse.query.mock(sql=SQL)
    assert tried == {region: round(mean, 1) for region, mean in mock["rows"]}
    assert request.tried["calls"] and request.refresh().status == "pending"
    with pytest.raises(Forbidden):
        researcher.twins.requests.get(request.id).try_on_mock()  # owners only

    assert request.approve("aggregates only").decision_reason == "aggregates only"
    request.show()
    assert f"Decided: approved by {MANAGER}: aggregates only" in capsys.readouterr().out
    private = manager.twins.warehouse.query.private(sql=SQL)
    assert submitted.run() == {region: round(mean, 1) for region, mean in private["rows"]} != tried
    assert manager.twins.requests.get(request.id).result == submitted.run()


def test_submitting_from_a_plain_repl_or_as_a_string(connect, warehouse):
    researcher = connect(RESEARCHER)
    source = "def count_cells(query):\n    return query(sql='SELECT count(*) FROM cells')['rows'][0][0]\n"
    typed = {}
    exec(compile(source, "<stdin>", "exec"), typed)  # what `>>> def ...` leaves: no source to read
    with pytest.raises(ValueError) as caught:
        researcher.twins.submit(typed["count_cells"], endpoints={"query": "warehouse.query"})
    text = str(caught.value)
    assert "the source of count_cells cannot be found" in text and "typed at the >>> prompt" in text
    assert "define it in a file or a notebook cell" in text and "code='def count_cells(...)" in text

    by_keyword = researcher.twins.submit(code=source, endpoints={"query": "warehouse.query"}, reason="size")
    positional = researcher.twins.submit(source, {"query": researcher.twins.warehouse.query})
    assert by_keyword.code == positional.code == source and by_keyword.reason == "size"
    with pytest.raises(TypeError, match="needs the code"):
        researcher.twins.submit(endpoints={"query": "warehouse.query"})
    with pytest.raises(TypeError, match="needs endpoints"):
        researcher.twins.submit(code=source)


def test_a_request_result_table_converts_to_a_data_frame(connect, warehouse):
    researcher, manager = connect(RESEARCHER), connect(MANAGER)
    code = "def by_region(query):\n    return query(sql='SELECT region, count(*) AS n FROM cells GROUP BY region ORDER BY region')\n"
    request = researcher.twins.submit(code=code, endpoints={"query": "warehouse.query"})
    manager.twins.requests[request.id].approve()
    frame = request.run().to_dataframe()
    assert list(frame.columns) == ["region", "n"] and frame["n"].sum() > 0
