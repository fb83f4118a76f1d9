"""The unit tier: no emulators, no servers of the stack; the whole tier runs in seconds
(`make test-unit`). A test here that asks for the stack fails at once and says where it belongs."""

from __future__ import annotations

import pytest


def _no_stack(what: str):
    pytest.fail(f"tests/unit runs without {what}: a test that needs it belongs in tests/integration")


@pytest.fixture(scope="session")
def emulators():
    _no_stack("the emulators")


@pytest.fixture(scope="session")
def s3_server():
    _no_stack("the S3 server")
