"""Background workers served locally the way the cloud runs them (terraform/pubsub.tf): each is
a CloudEvent entry point of a function's source, served over HTTP by functions-framework,
behind a Pub/Sub push subscription (retry policy, dead-letter topic) on the emulator.

Used by the test session and by `make dev`. A new kind of background job adds one `Worker`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from tools.emulators import Emulators, free_port
from tools.gateway import FUNCTIONS_DIR


@dataclass(frozen=True)
class Worker:
    function: str  # functions/<function>/main.py holds the entry point
    target: str  # the CloudEvent entry point (declared with @queue.worker)
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


@dataclass
class Running:
    worker: Worker
    url: str
    server: object

    def stop(self) -> None:
        self.server.shutdown()


def serve(
    worker: Worker,
    emulators: Emulators,
    *,
    min_backoff: str = "10s",
    max_backoff: str = "600s",
    max_delivery_attempts: int = 10,
    ack_deadline_seconds: int = 300,
) -> Running:
    """Serve the worker on a free port (a thread of this process) and point a push
    subscription of its topic at it. The environment must already point at the emulators."""
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
    server = make_server("127.0.0.1", free_port(), app, threaded=True)
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
    return Running(worker, url, server)


def serve_all(emulators: Emulators, **policy) -> list[Running]:
    return [serve(worker, emulators, **policy) for worker in WORKERS]
