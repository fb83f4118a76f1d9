"""Pub/Sub for background work: publish JSON messages to a topic (a worker receives them,
common.web.workers).

Publishing uses Pub/Sub's REST API (one HTTPS call for a batch of messages) through the
instance's default credentials, or the emulator (`PUBSUB_EMULATOR_HOST`) without any.
"""

from __future__ import annotations

import base64
import functools
import os
from typing import Any

from common import errors, jsonio
from common.config import settings

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
