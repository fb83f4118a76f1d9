"""The system tier: whole processes: functions and the gateway over HTTP, the browser, faults of
the emulators, the deploy artefacts, the dev stack. Every test starts from a clean stack."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def clean_state(clean_state):
    """tests/conftest.py's clean_state, before each test of this tier."""
    return clean_state
