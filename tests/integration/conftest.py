"""The integration tier: the emulator stack, with functions called in-process, the background
workers behind Pub/Sub and the sandbox's real workers. Every test starts from a clean stack."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def clean_state(clean_state):
    """tests/conftest.py's clean_state, before each test of this tier."""
    return clean_state
