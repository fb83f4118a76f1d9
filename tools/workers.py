"""Background workers served locally the way the cloud runs them (terraform/pubsub.tf): each is
a CloudEvent entry point of a function's source, served over HTTP by functions-framework,
behind a Pub/Sub push subscription (retry policy, dead-letter topic) on the emulator.

Used by the test session and by `make dev`. A new kind of background job adds one `Worker`.
"""

from __future__ import annotations

import base64
import io
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from tools.emulators import Emulators, free_port
from tools.gateway import FUNCTIONS_DIR


@dataclass(frozen=True)
class Worker:
    function: str  # functions/<function>/main.py holds the entry point
    target: str  # the CloudEvent entry point (declared with @workers.worker)
    topic_setting: str  # the common.config.Settings field naming the topic it reads

    @property
    def topic(self) -> str:
        from common import config

        return getattr(config.load(), self.topic_setting)


WORKERS = [
    Worker("transfer", "work", "transfer_topic"),
    Worker("datasets", "purge_work", "purge_topic"),
    Worker("twins", "job_work", "twin_jobs_topic"),
]


@dataclass(frozen=True)
class Delivery:
    """One push delivery the worker answered: Pub/Sub acknowledges a 2xx, redelivers anything else."""

    message_id: str | None
    payload: Any  # the message's JSON data (None when it is not JSON)
    status: int


class InFlight:
    """How many deliveries the worker is handling now: the tests wait until it handles none
    before they wipe the emulators, so that no delivery of one test works on into the next."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        with self._changed:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count == 0, timeout)


@dataclass
class Running:
    worker: Worker
    url: str
    server: object
    answered: list[Delivery] = field(default_factory=list)  # in order, when served with record=True
    in_flight: InFlight = field(default_factory=InFlight)  # counted when served with record=True

    def stop(self) -> None:
        self.server.shutdown()


def _recording(app: Any, answered: list[Delivery], in_flight: InFlight) -> Any:
    """`app`, keeping each delivery it answers (once its handler has run) in `answered`, and
    counting those it is handling in `in_flight`."""

    def recorded(environ: dict[str, Any], start_response: Any) -> Any:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        message_id, payload = None, None
        try:
            message = json.loads(body)["message"]
            message_id = message.get("messageId")
            payload = json.loads(base64.b64decode(message["data"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass

        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            answered.append(Delivery(message_id, payload, int(status.split()[0])))
            return start_response(status, headers, exc_info)

        with in_flight:
            return app(environ, start)

    return recorded


def serve(
    worker: Worker,
    emulators: Emulators,
    *,
    min_backoff: str = "10s",
    max_backoff: str = "600s",
    max_delivery_attempts: int = 10,
    ack_deadline_seconds: int = 300,
    record: bool = False,
) -> Running:
    """Serve the worker on a free port (a thread of this process) and point a push
    subscription of its topic at it. The environment must already point at the emulators.
    With `record`, the deliveries it answers are kept in `Running.answered` (the tests wait on
    them)."""
    from functions_framework import create_app
    from werkzeug.serving import make_server

    before = os.environ.get("FUNCTION_SIGNATURE_TYPE")
    app = create_app(
        worker.target, os.path.join(FUNCTIONS_DIR, worker.function, "main.py"), signature_type="cloudevent"
    )
    # create_app leaves its signature type in the environment, where later HTTP apps would read it.
    if before is None:
        os.environ.pop("FUNCTION_SIGNATURE_TYPE", None)
    else:
        os.environ["FUNCTION_SIGNATURE_TYPE"] = before
    answered: list[Delivery] = []
    in_flight = InFlight()
    server = make_server(
        "127.0.0.1", free_port(), _recording(app, answered, in_flight) if record else app, threaded=True
    )
    threading.Thread(target=server.serve_forever, daemon=True, name=f"worker-{worker.topic}").start()
    url = f"http://127.0.0.1:{server.server_port}/"
    emulators.create_push_subscription(
        worker.topic,
        worker.topic,
        url,
        dead_letter_topic=f"{worker.topic}-dead-letter",
        max_delivery_attempts=max_delivery_attempts,
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        ack_deadline_seconds=ack_deadline_seconds,
    )
    return Running(worker, url, server, answered, in_flight)


def serve_all(emulators: Emulators, **policy) -> list[Running]:
    return [serve(worker, emulators, **policy) for worker in WORKERS]
