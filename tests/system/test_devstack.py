"""`make dev` keeps its data across restarts (FRESH=1 starts empty), and a start that fails
stops what it started and names the one command that installs the missing part."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import ROOT
from tools import emulators as emulators_module
from tools.emulators import Emulators, MissingComponent, free_port

# The session's settings must not reach `make dev` (it sets its own).
_SESSION_ONLY = (
    "FIRESTORE_EMULATOR_HOST",
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "GOOGLE_CLOUD_PROJECT",
    "OWNER",
    "GATEHOUSE_DEV_MODE",
    "GATEHOUSE_DEV_KEY_FILE",
    "GOOGLE_CERTS_URL",
    "ALLOWED_AUDIENCES",
    "ALLOWED_ORIGINS",
    "ATTACHMENTS_BUCKET",
    "SIG_BUCKET",
    "TRANSFER_FUNC",
    "TRANSFER_DEST",
    "SIGNER_KEY_FILE",
    "NEUPRINT_TOKEN",
    "NEUPRINT_TIMEOUT_SECONDS",
)


def _dev_env(dev_dir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SESSION_ONLY}
    return {**env, "GATEHOUSE_DEV_DIR": dev_dir, "PYTHONPATH": ROOT, "LOG_FORMAT": "json", **extra}


def _orphans(marker: str) -> list[str]:
    """Command lines of running processes that mention `marker` (a directory of this test)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(f"{pid}: {cmdline[:200]}")
    return found


class DevRun:
    """`make dev` (python -m tools.dev) in a process of its own, in `dev_dir`."""

    def __init__(self, dev_dir: str, *args: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        os.makedirs(dev_dir, exist_ok=True)
        self.out = os.path.join(dev_dir, f"run-{self.port}.out")
        with open(self.out, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.dev", "--port", str(self.port), *args],
                cwd=ROOT,
                env=_dev_env(dev_dir),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 180
        while "Ctrl-C stops everything" not in self.output():
            assert self.process.poll() is None, self.output()[-3000:]
            assert time.monotonic() < deadline, self.output()[-3000:]
            time.sleep(0.2)
        self.token = next(
            line.split("=", 1)[1] for line in self.output().splitlines() if "export TOKEN=" in line
        )

    def output(self) -> str:
        with open(self.out, errors="replace") as f:
            return f.read()

    def call(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(
            method, self.base + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, **kw
        )

    def stop(self) -> None:
        """As Ctrl-C or `kill` would: everything stops, the Firestore data is saved."""
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=120)


def test_make_dev_keeps_its_data_and_fresh_starts_empty(tmp_path):
    dev_dir = str(tmp_path / "dev")
    first = DevRun(dev_dir)
    try:
        assert "Seeded now" in first.output()
        assert first.call("POST", "/datasets", json={"kept": {"description": "made in run 1"}}).ok
        upload = {"attachment": ("notes.txt", b"kept bytes")}
        assert first.call("POST", "/datasets/kept/attachments", files=upload).status_code == 201
    finally:
        first.stop()
    assert _orphans(dev_dir) == []

    second = DevRun(dev_dir)
    try:
        assert "Kept from the last run" in second.output()
        assert second.call("GET", "/datasets/kept").json()["description"] == "made in run 1"
        [attachment] = second.call("GET", "/datasets/kept/attachments").json()
        assert requests.get(attachment["url"], timeout=10).content == b"kept bytes"
        # The twins example still answers: its private side points at this run's S3 server.
        query = {"sql": "SELECT count(*) AS n FROM cells"}
        assert second.call("POST", "/twins/warehouse.query/private", json=query).status_code == 200
        # hemibrain's neuPrint is this run's stand-in: the printed curl line's query answers.
        lines = second.output().splitlines()
        [line] = [line for line in lines if line.strip().startswith("curl") and "/v2/neuprint/" in line]
        body = line.split(" -d '", 1)[1].removesuffix("'")
        r = second.call("POST", "/v2/neuprint/hemibrain", data=body)
        assert r.status_code == 200 and r.json() == {
            "columns": ["id", "type"],
            "data": [[1, "T1"], [2, "T2"]],
        }
    finally:
        second.stop()

    fresh = DevRun(dev_dir, "--fresh")
    try:
        assert "Seeded now" in fresh.output()
        assert fresh.call("GET", "/datasets/kept").status_code == 404
        assert fresh.call("GET", "/datasets/hemibrain").status_code == 200
    finally:
        fresh.stop()
    assert _orphans(dev_dir) == []


@pytest.fixture
def sdk_without_pubsub(tmp_path):
    """A gcloud SDK that has the Firestore emulator but not the Pub/Sub one: the start fails
    at its third emulator, after two have started."""
    real = emulators_module.gcloud_sdk_root()
    root = tmp_path / "sdk"
    (root / "bin").mkdir(parents=True)
    (root / "platform").mkdir()
    os.symlink(
        os.path.join(real, "platform", "cloud-firestore-emulator"),
        root / "platform" / "cloud-firestore-emulator",
    )
    gcloud = root / "bin" / "gcloud"
    gcloud.write_text("#!/bin/sh\nexit 1\n")  # a script, not a link: the SDK root is this one
    gcloud.chmod(0o755)
    return root


def test_a_failed_start_stops_what_it_started_and_says_what_to_install(
    sdk_without_pubsub, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", f"{sdk_without_pubsub / 'bin'}{os.pathsep}{os.environ['PATH']}")
    started: list[subprocess.Popen] = []
    spawn = Emulators._spawn

    def recorded(self, name, port, argv, ready_path):
        spawn(self, name, port, argv, ready_path)
        started.append(self.named[name])

    monkeypatch.setattr(Emulators, "_spawn", recorded)
    emulators = Emulators(project="p", log_dir=str(tmp_path / "logs"))
    with pytest.raises(MissingComponent, match="install it: gcloud components install pubsub-emulator"):
        emulators.start()
    assert len(started) == 2  # Firestore and fake-gcs-server were running
    assert all(p.poll() is not None for p in started) and emulators.named == {}
    assert _orphans(str(sdk_without_pubsub)) == []


def test_make_dev_exits_with_the_install_command_and_no_orphans(sdk_without_pubsub, tmp_path):
    dev_dir = str(tmp_path / "dev")
    env = _dev_env(dev_dir, PATH=f"{sdk_without_pubsub / 'bin'}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(
        [sys.executable, "-m", "tools.dev", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode != 0
    assert "install it: gcloud components install pubsub-emulator" in result.stderr
    assert "Traceback" not in result.stderr
    assert _orphans(str(sdk_without_pubsub)) == [] and _orphans(dev_dir) == []


def _make_token(dev_dir: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "token", *args],
        cwd=ROOT,
        env=_dev_env(dev_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_token_prints_a_token_the_stack_accepts(api, keys, tmp_path):
    """`make -s token EMAIL=x` prints one line, a token for x signed with the dev issuer key of
    the stack in GATEHOUSE_DEV_DIR (here: the key this session's functions trust); a token from
    another dev directory's key is refused."""
    from tools import devkeys

    dev_dir = tmp_path / "dev"
    dev_dir.mkdir()
    (dev_dir / "dev-issuer.pem").write_bytes(keys.dev_key_pem)
    done = _make_token(str(dev_dir), "EMAIL=Reader@Example.com")
    assert done.returncode == 0, done.stderr
    (token,) = done.stdout.splitlines()  # only the token: `export TOKEN=$(make -s token ...)`
    roles = api.client("roles").get("/roles", headers={"Authorization": f"Bearer {token}"})
    assert roles.status_code == 200 and roles.get_json()["email"] == "reader@example.com"

    other = tmp_path / "other"
    devkeys.ensure(str(other))  # a stack of its own: another issuer key
    foreign = _make_token(str(other), "EMAIL=reader@example.com").stdout.strip()
    refused = api.client("roles").get("/roles", headers={"Authorization": f"Bearer {foreign}"})
    assert refused.status_code == 401 and refused.get_json()["error"] == "unauthenticated"


def test_make_token_says_what_is_missing(tmp_path):
    no_email = _make_token(str(tmp_path))
    assert no_email.returncode != 0 and "usage: make token EMAIL=" in no_email.stderr
    assert no_email.stdout == ""
    no_stack = _make_token(str(tmp_path), "EMAIL=someone@example.com")
    assert no_stack.returncode != 0 and "run `make dev` first" in no_stack.stderr
    assert no_stack.stdout == ""


def _readme_line(needle: str) -> str:
    """The path and query of the README's curl line that mentions `needle`."""
    import re

    with open(os.path.join(ROOT, "README.md")) as f:
        [line] = [line for line in f if line.startswith("curl") and needle in line]
    return re.search(r"\$BASE(\S+?)\"?\s", line)[1]


def test_the_readme_likelocation_line_finds_matches_on_a_fresh_stack(tmp_path):
    """The demo's signatures are built after its datasets are seeded: signatures built before
    a dataset was created belong to an older dataset of its name, and are never served. The same
    search at clio's /v2 path, and clio's token, roles and datasets, answer through the local
    gateway at the root of the host, as clio's clients call them."""
    path = _readme_line("/signatures/likelocation/")
    run = DevRun(str(tmp_path / "dev"), "--fresh")
    try:
        found = run.call("GET", path)
        assert found.status_code == 200, found.text
        assert found.json()["matches"], found.json()
        clio = run.call("GET", path.replace("/signatures/", "/v2/signatures/", 1) + "&app=natverse")
        assert clio.status_code == 200 and clio.json()["matches"] == found.json()["matches"], clio.text
        token = run.call("POST", "/v2/server/token")
        assert token.status_code == 200 and token.json().count(".") == 2, token.text
        run.token = token.json()  # clio's clients use only the token they were given from here
        assert run.call("GET", "/v2/roles").json()["email"]
        assert run.call("GET", "/v2/datasets/").status_code == 200
        assert run.call("GET", "/v2/nothing").status_code == 404
    finally:
        run.stop()


def _listening(address: str) -> bool:
    import socket

    host, port = address.removeprefix("http://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def _end_listeners(addresses: list[str]) -> None:
    """Kill what still serves one of `addresses` (an emulator a failed stop left behind)."""
    ports = {address.rsplit(":", 1)[1] for address in addresses}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(f"--port={p}" in argv or ("-port" in argv and p in argv) for p in ports):
            os.kill(int(pid), signal.SIGKILL)


def test_a_second_sigterm_while_stopping_loses_nothing_and_orphans_nothing(tmp_path):
    """`kill %1` on `make dev` signals the process group, and make forwards its own SIGTERM to
    tools.dev: stopping must survive the second one, save the data and stop every emulator."""
    import re

    dev_dir = str(tmp_path / "dev")
    first = DevRun(dev_dir)
    # Firestore, Cloud Storage, Pub/Sub and S3, as the start printed them
    [emulators] = re.findall(r"^Firestore emulator .*$", first.output(), re.M)
    addresses = re.findall(r"(?:http://)?127\.0\.0\.1:\d+", emulators)
    try:
        assert len(addresses) == 4 and all(_listening(a) for a in addresses), emulators
        assert first.call("POST", "/datasets", json={"kept": {"description": "before the kill"}}).ok
    finally:
        os.killpg(first.process.pid, signal.SIGTERM)
        time.sleep(0.05)  # the second one lands while the first is being handled
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.process.pid, signal.SIGTERM)
        first.process.wait(timeout=120)
    left = [a for a in addresses if _listening(a)]
    _end_listeners(left)
    assert left == [] and _orphans(dev_dir) == [], first.output()[-3000:]
    assert "Traceback" not in first.output()

    second = DevRun(dev_dir)
    try:
        assert "Kept from the last run" in second.output()
        assert second.call("GET", "/datasets/kept").json()["description"] == "before the kill"
    finally:
        second.stop()
