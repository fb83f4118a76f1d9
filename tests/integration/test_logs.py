"""One structured log line per request, in the shape Cloud Logging reads (common/logs.py)."""

from __future__ import annotations

import json

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from tests.conftest import OWNER, PROJECT


def request_lines(captured: str) -> list[dict]:
    """The request lines among what was written to stderr (every line must be JSON)."""
    entries = [json.loads(line) for line in captured.splitlines() if line.strip()]
    return [e for e in entries if "httpRequest" in e]


def test_one_line_per_request_with_the_fields_cloud_logging_reads(api, capsys):
    api.add_dataset("logged")
    capsys.readouterr()
    trace = "105445aa7843bc8bf206b12000100000"
    r = api.get(
        "/annotations/v2/logged?limit=5",
        user=OWNER,
        headers={"X-Cloud-Trace-Context": f"{trace}/1;o=1", "User-Agent": "curl/8"},
    )
    assert r.status_code == 200
    [line] = request_lines(capsys.readouterr().err)
    assert line["severity"] == "INFO"
    assert line["message"].startswith("GET /annotations/v2/<name> 200 ")
    assert line["request_id"] == r.headers["X-Request-Id"]
    assert line["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{trace}"
    assert line["logging.googleapis.com/spanId"] == "0000000000000001"
    assert line["logging.googleapis.com/trace_sampled"] is True
    assert (line["function"], line["method"], line["route"], line["status"]) == (
        "annotations",
        "GET",
        "/annotations/v2/<name>",
        200,
    )
    assert line["caller"] == OWNER and line["latency_ms"] > 0
    http = line["httpRequest"]
    assert http["requestMethod"] == "GET" and http["status"] == 200
    assert http["requestUrl"] == "/annotations/v2/logged"  # the path only, never the query string
    assert http["latency"].endswith("s") and float(http["latency"][:-1]) > 0
    assert http["userAgent"] == "curl/8" and int(http["responseSize"]) == len(r.get_data())


def test_w3c_traceparent_and_refusals(api, capsys):
    capsys.readouterr()
    trace, span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    r = api.get(
        "/datasets/missing", user="stranger@example.com", headers={"traceparent": f"00-{trace}-{span}-01"}
    )
    assert r.status_code == 404
    api.get("/datasets", headers={"X-Cloud-Trace-Context": "not-a-trace/injected"})  # no token: 401
    first, second = request_lines(capsys.readouterr().err)
    assert first["severity"] == "WARNING" and first["status"] == 404
    assert first["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{trace}"
    assert first["logging.googleapis.com/spanId"] == span
    assert first["caller"] == "stranger@example.com"
    assert second["status"] == 401 and second["caller"] is None
    assert not any(k.startswith("logging.googleapis.com/") for k in second)  # a bad header is ignored
    assert "injected" not in json.dumps(second)


def test_remote_ip_is_the_hop_the_platform_appended_not_the_callers(api, capsys):
    """X-Forwarded-For's first hops are whatever the caller sent; the platform's front end appends
    the address it saw last."""
    capsys.readouterr()
    api.get("/roles", user=OWNER, headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"})
    api.get("/roles", user=OWNER)
    forwarded, direct = request_lines(capsys.readouterr().err)
    assert forwarded["httpRequest"]["remoteIp"] == "10.1.2.3"
    assert direct["httpRequest"]["remoteIp"] == "127.0.0.1"


def test_a_fault_of_ours_keeps_its_stack_trace_in_the_log_only(test_env, capsys):
    from common.web.http import App

    app = App("logtest")

    @app.get("/logtest/boom", public=True)
    def boom(req):
        raise RuntimeError("something broke inside")

    capsys.readouterr()
    response = app(Request(EnvironBuilder(path="/logtest/boom").get_environ()))
    assert response.status_code == 500
    assert "something broke" not in response.get_data(as_text=True)
    [line] = request_lines(capsys.readouterr().err)
    assert line["severity"] == "ERROR" and line["route"] == "/logtest/boom"
    assert "RuntimeError: something broke inside" in line["stack_trace"]
    assert "Traceback" in line["stack_trace"]


def test_unrouted_requests_are_logged_without_a_route(api, capsys):
    capsys.readouterr()
    assert api.get("/datasets/a/b/c/d", user=OWNER).status_code == 404
    [line] = request_lines(capsys.readouterr().err)
    assert line["route"] == "(no route)" and line["caller"] is None
