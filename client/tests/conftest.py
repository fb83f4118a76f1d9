"""The client's tests run against the real local stack: the test session's emulators (the
fixtures of tests/conftest.py) and every function served over HTTP by functions-framework behind
the local gateway (tools/gateway.py), as `make dev` serves them. Nothing is mocked."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tests.conftest import *  # noqa: E402, F403 (the emulators, keys, workers, gateway and clean state)
from tests.conftest import OWNER  # noqa: E402

RESEARCHER = "researcher@example.com"
MANAGER = "manager@example.com"  # dataset_admin on manc in the warehouse fixture


@pytest.fixture(autouse=True)
def clean_stack(clean_state):
    """Every client test starts from a clean stack (tests/conftest.py's clean_state)."""
    return clean_state


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    """No credentials of the machine's leak in: no saved keys, no gcloud, no metadata server."""
    for name in (
        "GATEHOUSE_TOKEN",
        "GATEHOUSE_API_KEY",
        "GATEHOUSE_AUDIENCE",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GATEHOUSE_KEY_FILE", str(tmp_path / "keys.json"))
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")  # refused at once
    monkeypatch.setenv("GATEHOUSE_GCLOUD", "")  # never this machine's gcloud


@pytest.fixture
def connect(gateway, api):
    """connect(email) -> a Gatehouse client of the local stack with that user's dev token."""
    from gatehouse import Gatehouse

    def make(email: str = OWNER, **kw):
        return Gatehouse(gateway, token=api.token(email), progress=False, **kw)

    return make


@pytest.fixture
def gh(connect):
    """The owner's client (admin)."""
    return connect()


@pytest.fixture
def warehouse(gh, s3_server):
    """The twins example (examples/warehouse) on a private dataset manc: RESEARCHER reads it,
    MANAGER manages it."""
    from examples import warehouse

    s3_server.reset()
    warehouse.upload_table(s3_server.credentials)
    gh.datasets.create("manc", "private")
    gh.users.update(RESEARCHER, datasets={"manc": ["clio_read"]})
    gh.users.update(MANAGER, datasets={"manc": ["dataset_admin"]})
    for body in warehouse.definitions(s3_server.credentials, dataset="manc"):
        gh.twins.define(body)
    return warehouse
