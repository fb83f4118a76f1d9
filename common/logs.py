"""Structured log lines on stderr, in the shape Cloud Logging reads from a function's output:
`severity`, `message`, `logging.googleapis.com/trace` (which ties the lines of one request
together in the console) and `httpRequest` (shown as the request's own entry).

Every request gets exactly one line (common.web.http.App): who called what route, how it ended and
how long it took; so does every delivery of a Pub/Sub message to a worker (common.web.workers):
which message, which attempt, its outcome and how long it took. A failure of ours keeps its
stack trace in that line (`stack_trace`, read by Error Reporting), never in the answer. Never logged: tokens, API keys, twin settings, request
or response bodies, query strings.

`LOG_FORMAT=text` (set by `make dev`) prints the same lines for a person to read.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
import traceback
from typing import Any

# One encoder for every line (json.dumps with `default` builds a new one per call).
_ENCODER = json.JSONEncoder(default=str)
_TEXT = os.environ.get("LOG_FORMAT", "").lower() == "text"  # read once per instance, as every setting
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def log(severity: str, message: str, *, exc: BaseException | None = None, **fields: Any) -> None:
    entry = {"severity": severity, "message": message, **fields}
    if exc is not None:
        entry["stack_trace"] = "".join(traceback.format_exception(exc))
    sys.stderr.write((_text(entry) if _TEXT else _ENCODER.encode(entry)) + "\n")


def trace_fields(headers: Any, project: str) -> dict[str, Any]:
    """The trace fields of a request from `traceparent` (W3C) or `X-Cloud-Trace-Context`
    (TRACE/SPAN;o=1), so its line joins the platform's own entries of the same request."""
    return _trace(headers.get("traceparent", ""), headers.get("X-Cloud-Trace-Context", ""), project)


def _trace(traceparent: str, cloud_trace: str, project: str) -> dict[str, Any]:
    if not traceparent and not cloud_trace:
        return {}
    match = _TRACEPARENT.match(traceparent.strip())
    if match and match[1] != "0" * 32:
        trace, span, sampled = match[1], match[2], int(match[3], 16) & 1 == 1
    else:
        match = _CLOUD_TRACE.match(cloud_trace.strip())
        if not match:
            return {}
        trace, span, sampled = match[1].lower(), match[2], match[3] == "1"
        if span is not None:
            span = f"{int(span):016x}"[-16:]  # Cloud Logging wants the span id as 16 hex digits
    fields: dict[str, Any] = {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace}",
        "logging.googleapis.com/trace_sampled": sampled,
    }
    if span is not None:
        fields["logging.googleapis.com/spanId"] = span
    return fields


def severity_of(status: int) -> str:
    return "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"


def request_line(
    *,
    request: Any,
    response: Any,
    project: str,
    function: str,
    route: str | None,
    caller: str | None,
    request_id: str,
    seconds: float,
    exc: BaseException | None = None,
) -> None:
    """The one line of a finished request (`request`, `response`: werkzeug's). Its headers are
    read from the WSGI environ, as werkzeug's `request.headers` would, without its parsing."""
    environ = request.environ
    status = response.status_code
    method = request.method
    path = request.script_root + request.path  # never the query string
    route_name = route or "(no route)"
    fields: dict[str, Any] = {
        **_trace(environ.get("HTTP_TRACEPARENT", ""), environ.get("HTTP_X_CLOUD_TRACE_CONTEXT", ""), project),
        "request_id": request_id,
        "function": function,
        "method": method,
        "route": route_name,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
        "caller": caller,
        "httpRequest": {
            "requestMethod": method,
            "requestUrl": path,
            "status": status,
            "responseSize": str(response.calculate_content_length() or 0),
            "userAgent": environ.get("HTTP_USER_AGENT", "")[:256],
            "remoteIp": remote_ip(request),
            "latency": f"{seconds:.6f}s",
            "protocol": environ.get("SERVER_PROTOCOL", ""),
        },
    }
    message = f"{method} {route_name} {status} {seconds * 1000:.0f} ms"
    log(severity_of(status), message, exc=exc, **fields)


# What a worker's delivery came to: acknowledged (done, gone, dropped) or delivered again (retry, failed).
DELIVERY_SEVERITY = {
    "done": "INFO",
    "gone": "INFO",
    "retry": "WARNING",
    "dropped": "ERROR",
    "failed": "ERROR",
}


def delivery_line(
    *,
    headers: Any,
    project: str,
    function: str,
    worker: str,
    message_id: str | None,
    attempt: int | None,
    outcome: str,
    status: int,
    request_id: str,
    seconds: float,
    reason: str | None = None,
    exc: BaseException | None = None,
) -> None:
    """The one line of one delivery of a Pub/Sub message to a worker (`headers`: the push
    request's, plus the CloudEvent's `traceparent`). `reason` says why it was not simply done."""
    fields: dict[str, Any] = {
        **trace_fields(headers, project),
        "request_id": request_id,
        "function": function,
        "worker": worker,
        "message_id": message_id,
        "attempt": attempt,
        "outcome": outcome,
        "status": status,
        "latency_ms": round(seconds * 1000, 3),
    }
    if reason:
        fields["reason"] = reason
    message = f"{function}.{worker} {outcome} {seconds * 1000:.0f} ms"
    log(DELIVERY_SEVERITY[outcome], message, exc=exc, **fields)


def remote_ip(request: Any) -> str:
    """Who connected: the last hop of X-Forwarded-For, the one the platform's front end appended
    (the hops before it are whatever the caller sent); the socket's peer without the header."""
    environ = request.environ
    forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
    return forwarded.rsplit(",", 1)[-1].strip() or environ.get("REMOTE_ADDR") or ""


def _text(entry: dict[str, Any]) -> str:
    """One entry for a person: time, severity, message, then who and which request."""
    now = datetime.datetime.now().strftime("%H:%M:%S")
    parts = [f"{now} {entry['severity']:<7} {entry['message']}"]
    for name in ("caller", "request_id", "logging.googleapis.com/trace"):
        if entry.get(name):
            parts.append(f"{name.rsplit('/', 1)[-1]}={entry[name]}")
    extra = {
        k: v
        for k, v in entry.items()
        if k not in ("severity", "message", "caller", "request_id", "stack_trace", "httpRequest")
        and not k.startswith("logging.googleapis.com/")
        and k not in ("function", "method", "route", "status", "latency_ms", "worker", "outcome")
    }
    parts += [f"{k}={v}" for k, v in extra.items() if v is not None]
    line = "  ".join(parts)
    if entry.get("stack_trace"):
        line += "\n    " + entry["stack_trace"].rstrip().replace("\n", "\n    ")
    return line
