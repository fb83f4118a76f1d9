"""The test session, in three tiers (a directory and a marker each, set here):

- tests/unit: no emulators, seconds (`make test-unit`): the code itself, its sources, documents;
- tests/integration: the emulator stack, functions called in-process through functions-framework's
  `create_app(...).test_client()`, the sandbox's real workers;
- tests/system: whole processes: over HTTP, the browser, faults, deploy, the dev stack.

The stack (real emulators, real token verification) is made of the session fixtures here; they
start on first use, once per session whichever tiers run, and each test of the integration and
system tiers (and client/tests) starts from a clean stack (`clean_state`, autouse in their
conftests). A unit test cannot ask for the stack (tests/unit/conftest.py).

Nothing here can reach a real project: the emulators are started by the session and the
session refuses to run if the environment does not point at them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.utils import Api, CertsServer, Keys  # noqa: E402
from tools.dvid_standin import DvidService  # noqa: E402
from tools.emulators import Emulators, MissingComponent, S3Server  # noqa: E402
from tools.neuprint_standin import NeuprintService  # noqa: E402
from tools.transfer_standin import TransferService  # noqa: E402

PROJECT = "gatehouse-test"
OWNER = "owner@example.com"
BUCKETS = (
    "gatehouse-attachments-test",
    "gatehouse-signatures-test",
    "gatehouse-transfer-test",
    "gatehouse-twin-results-test",
)
TEST_AUDIENCE = "gatehouse-test-audience"
ORIGIN = "https://viewer.example.org"
TIERS = ("unit", "integration", "system")  # tests/<tier>/, and the marker of each test there


def pytest_collection_modifyitems(config, items):
    """Each test of tests/ carries its tier's marker (`-m unit`, `-m "not system"`...); a test
    outside the tiers is refused, so that none runs without the state its tier gives it."""
    tests = Path(__file__).parent
    outside = set()
    for item in items:
        try:
            tier = item.path.relative_to(tests).parts[0]
        except ValueError:
            continue  # client/tests use these fixtures, not the tiers
        if tier in TIERS:
            item.add_marker(tier)
        else:
            outside.add(os.path.relpath(item.path, ROOT))
    if outside:
        raise pytest.UsageError(
            f"tests outside tests/{{{','.join(TIERS)}}}: {sorted(outside)}; move each to its tier "
            "(unit: no emulators; integration: the emulator stack; system: whole processes)"
        )


@pytest.fixture(scope="session")
def workdir():
    with tempfile.TemporaryDirectory(prefix="gatehouse-tests-") as d:
        yield d


@pytest.fixture(scope="session")
def keys(workdir):
    return Keys.generate(workdir)


@pytest.fixture(scope="session")
def certs_server(keys):
    server = CertsServer({keys.google_kid: keys.google_cert_pem}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def transfer_service():
    service = TransferService().start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def dvid_service():
    """A DVID stand-in (tools/dvid_standin.py): a dataset names it in its metadata `dvid`."""
    service = DvidService().start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def neuprint_service():
    """The neuPrint stand-in: a dataset whose `neuprintHTTP.server` is `neuprint_service.server`
    is queried there, with NEUPRINT_TOKEN = `neuprint_service.token`."""
    service = NeuprintService().start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def emulators(workdir):
    try:
        emu = Emulators(project=PROJECT, log_dir=os.path.join(workdir, "logs")).start()
    except MissingComponent as exc:  # what did start is stopped; say what to install
        pytest.exit(f"make test: {exc}", returncode=4)
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def s3_server(workdir):
    """moto's S3 server: the private data platform of the twins example (started when used)."""
    server = S3Server(os.path.join(workdir, "logs")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def test_env(emulators, keys, certs_server, transfer_service, neuprint_service):
    """The environment every function under test runs with (in-process and in subprocesses)."""
    env = {
        **emulators.env,
        "OWNER": OWNER,
        "GATEHOUSE_DEV_MODE": "1",
        "GATEHOUSE_DEV_KEY_FILE": keys.dev_key_file,
        "GOOGLE_CERTS_URL": certs_server.url,
        "ALLOWED_AUDIENCES": TEST_AUDIENCE,
        "ALLOWED_ORIGINS": ORIGIN,
        "ATTACHMENTS_BUCKET": BUCKETS[0],
        "SIG_BUCKET": BUCKETS[1],
        "TRANSFER_FUNC": transfer_service.url,
        "TRANSFER_DEST": f"gs://{BUCKETS[2]}/volumes",
        "TWIN_RESULTS_BUCKET": BUCKETS[3],
        "TRANSFER_TIMEOUT_SECONDS": "1",
        "TRANSFER_ATTEMPTS": "3",
        "DVID_TIMEOUT_SECONDS": "1",
        "NEUPRINT_TOKEN": neuprint_service.token,
        "NEUPRINT_TIMEOUT_SECONDS": "5",
        "SIGNER_KEY_FILE": keys.signer_file,
        "GATEHOUSE_VERSION": "test",
    }
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "K_SERVICE"):
        os.environ.pop(name, None)
    os.environ.update(env)
    assert os.environ["FIRESTORE_EMULATOR_HOST"].startswith("127.0.0.1:"), "tests run on emulators only"
    assert os.environ["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:"), "tests run on emulators only"
    from common import config

    config.settings.cache_clear()
    return env


@pytest.fixture(scope="session")
def workers(emulators, test_env):
    """The background workers (tools/workers.py) behind push subscriptions on the Pub/Sub
    emulator, with short backoffs so retries stay quick."""
    from tools import workers

    running = workers.serve_all(
        emulators,
        min_backoff="0.1s",
        max_backoff="0.2s",
        max_delivery_attempts=5,
        ack_deadline_seconds=10,
        record=True,  # tests wait until a message has been answered (Running.answered)
    )
    yield {r.worker.function: r for r in running}
    for r in running:
        r.stop()


@pytest.fixture
def clean_state(emulators, test_env, transfer_service, dvid_service, neuprint_service, workers):
    """Empty emulators, cold per-instance caches, workers with no deliveries answered yet, a
    transfer service that answers every part, an empty DVID stand-in and a neuPrint stand-in that
    has received nothing: where each test of the integration and system tiers starts (autouse in
    their conftests, and in client/tests)."""
    from functions.twins import calls

    calls.flush_records()  # the last test's call records are written before the wipe
    for running in workers.values():
        running.in_flight.wait_idle(15)  # the last test's deliveries end before the wipe
    emulators.wipe(*BUCKETS)
    for running in workers.values():
        running.answered.clear()
    transfer_service.calls.clear()
    transfer_service.refused.clear()
    transfer_service.script = lambda offset, attempt: "ok"
    dvid_service.reset()
    neuprint_service.reset()
    from common import cache

    cache.clear_all()
    yield


@pytest.fixture(scope="session")
def api(test_env, keys):
    return Api(keys, ROOT)


@pytest.fixture(scope="session")
def gateway(test_env, workdir):
    """The local stack `make dev` serves (tools/gateway.py) over HTTP, on the session's
    emulators: its base URL."""
    from tests.utils import server_env, start_server
    from tools.emulators import free_port

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start_server(
        [sys.executable, "-m", "tools.gateway", "--port", str(port)],
        server_env(test_env),
        f"{base}/roles/_health",
        os.path.join(workdir, "gateway.log"),
    )
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def setting(monkeypatch):
    """`setting(NAME, value)`: an environment setting for this test only (common.config reads
    the environment once; the cache is cleared as it is set and again after the test)."""
    from common import config

    def set_(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        config.settings.cache_clear()

    yield set_
    monkeypatch.undo()
    config.settings.cache_clear()
