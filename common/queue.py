"""Pub/Sub for background work: publish JSON messages to a topic; read them back in a worker.

A worker is a CloudEvent function (`@functions_framework.cloud_event`) behind a push
subscription with a retry policy and a dead-letter topic: raising makes Pub/Sub deliver the
message again later; returning acknowledges it. Delivery is at least once, so a worker must be
idempotent (keep the state of each piece of work in Firestore and skip what is finished).

Publishing uses Pub/Sub's REST API (one HTTPS call for a batch of messages) through the
instance's default credentials, or the emulator (`PUBSUB_EMULATOR_HOST`) without any.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from typing import Any

from common import errors, jsonio
from common.config import settings
from common.logs import log

PUBLISH_TIMEOUT_SECONDS = 10


def _emulator() -> str:
    return os.environ.get("PUBSUB_EMULATOR_HOST", "")


@functools.cache
def _session():
    """One HTTP session per instance: plain against the emulator, authorised in the cloud."""
    if _emulator():
        import requests

        return requests.Session()
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/pubsub"])
    return AuthorizedSession(credentials)


def topic_path(topic: str, project: str | None = None) -> str:
    return f"projects/{project or settings().project}/topics/{topic}"


def _api(path: str) -> str:
    base = f"http://{_emulator()}" if _emulator() else "https://pubsub.googleapis.com"
    return f"{base}/v1/{path}"


def publish_many(
    topic: str, payloads: list[dict[str, Any]], attributes: dict[str, str] | None = None
) -> list[str]:
    """Publish one message per payload (JSON) in one call; the message ids. Raises
    errors.Unavailable (503) when Pub/Sub does not take them."""
    import requests

    messages = [
        {"data": base64.b64encode(jsonio.dumps(p).encode()).decode(), "attributes": attributes or {}}
        for p in payloads
    ]
    try:
        response = _session().post(
            _api(f"{topic_path(topic)}:publish"), json={"messages": messages}, timeout=PUBLISH_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        raise errors.Unavailable(
            f"the job queue is unreachable ({type(exc).__name__})", retry_after=30
        ) from None
    if not response.ok:
        raise errors.Unavailable(
            f"the job queue refused the work (HTTP {response.status_code})", retry_after=30
        )
    return response.json()["messageIds"]


def publish(topic: str, payload: dict[str, Any], attributes: dict[str, str] | None = None) -> str:
    """Publish one JSON message; its id."""
    return publish_many(topic, [payload], attributes)[0]


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


def named_id(cloud_event, field: str, pattern, worker: str) -> str | None:
    """The id a worker's message names in `field`, when it matches `pattern`; None for a message
    that names none (logged: it is acknowledged, since no redelivery can fix it)."""
    try:
        value = str(payload_of(cloud_event)[0][field])
    except (ValueError, KeyError) as exc:
        log("ERROR", f"{worker}: dropped a message that names no {field} ({exc})")
        return None
    return value if pattern.fullmatch(value) else None
