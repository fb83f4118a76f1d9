"""The receiving end of Pub/Sub: a worker is a CloudEvent function behind a push subscription
with a retry policy and a dead-letter topic, declared with `@workers.worker(function)` (never
`@functions_framework.cloud_event` alone): returning acknowledges the message; `Gone` (its job or
record vanished: nothing left to do) and `Dropped` (a message that names no work) acknowledge it
too; `Retry` or any other exception answers 500, so Pub/Sub delivers it again later. Each
delivery writes one structured log line (common.logs.delivery_line), an unexpected failure's
stack in it, and never Flask's own error page or traceback. Delivery is at least once, so a
worker must be idempotent (keep the state of each piece of work in Firestore and skip what is
finished). Messages are sent with common.storage.pubsub.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import flask
import functions_framework
from werkzeug.exceptions import abort

from common import errors, logs
from common.config import settings
from common.web.http import error_response


def payload_of(cloud_event) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON payload and attributes of a Pub/Sub message delivered as a CloudEvent
    (`google.cloud.pubsub.topic.v1.messagePublished`: data.message.data is base64)."""
    message = (cloud_event.data or {}).get("message") or {}
    try:
        payload = json.loads(base64.b64decode(message.get("data") or ""))
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        # Redelivery cannot fix it: the worker should log it and acknowledge it.
        raise ValueError("the message is not a JSON object")
    return payload, dict(message.get("attributes") or {})


def named_id(cloud_event, field: str, pattern, worker: str) -> str:
    """The id a worker's message names in `field`; Dropped when it names none that matches
    `pattern` (acknowledged: no redelivery can fix it)."""
    try:
        value = str(payload_of(cloud_event)[0][field])
    except (ValueError, KeyError) as exc:
        raise Dropped(f"{worker}: dropped a message that names no {field} ({exc})") from None
    if not pattern.fullmatch(value):
        raise Dropped(f"{worker}: dropped a message that names no valid {field}")
    return value


# -- workers ----------------------------------------------------------------------------------


class Retry(Exception):
    """Raised by a worker to have the message delivered again later (after the subscription's
    backoff): an expected wait or failure, logged without a stack."""


class Gone(Exception):
    """Raised by a worker when the work's job or record vanished meanwhile (e.g. deleted with
    its dataset): nothing is left to do, so the message is acknowledged."""


class Dropped(Exception):
    """Raised by a worker for a message that names no work: acknowledged, since no redelivery
    can fix it."""


def worker(function: str, *, retry: tuple[type[Exception], ...] = ()):
    """Declare a CloudEvent entry point of `function` as a Pub/Sub worker (see the module's
    docstring): the outcome of each delivery becomes its answer and one log line. `retry`:
    the worker's own exception classes that mean Retry."""

    def wrap(handler: Callable[[Any], None]) -> Callable[[Any], None]:
        @functools.wraps(handler)  # functions-framework finds the entry point by its name
        def deliver(cloud_event) -> None:
            request_id, started = uuid.uuid4().hex, time.perf_counter()
            retried: tuple[type[Exception], ...] = (Retry, *retry)
            outcome, reason, failure = "done", None, None
            try:
                handler(cloud_event)
            except Gone as exc:
                outcome, reason = "gone", str(exc)
            except Dropped as exc:
                outcome, reason = "dropped", str(exc)
            except retried as exc:
                outcome, reason = "retry", str(exc)
            except Exception as exc:
                outcome, failure = "failed", exc
            status = 500 if outcome in ("retry", "failed") else 200
            _log_delivery(
                cloud_event, function, handler.__name__, outcome, status, request_id, started, reason, failure
            )
            if status == 500:
                _redeliver(request_id, outcome, reason)

        return functions_framework.cloud_event(deliver)

    return wrap


def _log_delivery(
    cloud_event,
    function: str,
    worker_name: str,
    outcome: str,
    status: int,
    request_id: str,
    started: float,
    reason: str | None,
    failure: Exception | None,
) -> None:
    headers: dict[str, str] = {}
    body: Any = None
    if flask.has_request_context():  # the push request (always, when functions-framework serves it)
        headers = {k: flask.request.headers.get(k, "") for k in ("traceparent", "X-Cloud-Trace-Context")}
        body = flask.request.get_json(silent=True)
    if cloud_event.get("traceparent"):  # Eventarc passes the trace as a CloudEvent attribute
        headers["traceparent"] = cloud_event.get("traceparent")
    data = cloud_event.data if isinstance(cloud_event.data, dict) else {}
    message = data.get("message")
    message = message if isinstance(message, dict) else {}
    # A push subscription with a dead-letter policy counts the deliveries (not kept in the event).
    attempt = body.get("deliveryAttempt") if isinstance(body, dict) else data.get("deliveryAttempt")
    logs.delivery_line(
        headers=headers,
        project=settings().project,
        function=function,
        worker=worker_name,
        message_id=message.get("messageId") or message.get("message_id") or cloud_event.get("id"),
        attempt=attempt if isinstance(attempt, int) else None,
        outcome=outcome,
        status=status,
        request_id=request_id,
        seconds=time.perf_counter() - started,
        reason=reason,
        exc=failure,
    )


def _redeliver(request_id: str, outcome: str, reason: str | None) -> None:
    """Answer 500 with the error envelope (Pub/Sub delivers the message again), through werkzeug's
    `abort`: a response raised so, not an exception Flask would log with its own traceback."""
    message = reason if outcome == "retry" else None  # a retry says why; a fault of ours is in the log
    abort(error_response(errors.ApiError(message), request_id))
