"""Code requests and asynchronous jobs through the client, PySyft style: a researcher submits a
function over the private sides of endpoints, an owner approves or denies it, the researcher
runs it; any call can be a job. Against the real local stack (the twins function's job worker
behind its push subscription on the Pub/Sub emulator)."""

from __future__ import annotations

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
