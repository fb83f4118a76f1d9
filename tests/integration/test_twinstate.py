"""The twins' Firestore pieces on the emulator: a side's state store and the exact rate limit."""

from __future__ import annotations

import concurrent.futures
import math
import time

import pytest

from common import errors


@pytest.fixture
def state():
    from functions.twins.state import FirestoreState

    return FirestoreState("gen-test")


def test_state_keys_are_independent_documents(state):
    assert state.get("missing") is None and state.get("missing", 7) == 7
    state.set("a", {"x": [1, 2]})
    state.set("b", "text")
    state.set("a/b.c", 1.5)  # any string is a key: keys are hashed into document ids
    assert state.items() == {"a": {"x": [1, 2]}, "b": "text", "a/b.c": 1.5}
    state.delete("b")
    assert state.items() == {"a": {"x": [1, 2]}, "a/b.c": 1.5}


def test_state_refuses_what_firestore_cannot_hold(state):
    with pytest.raises(ValueError):
        state.set("k", [[1, 2]])
    with pytest.raises(TypeError):
        state.set("", 1)
    with pytest.raises(ValueError):
        state.set("k" * 600, 1)
    with pytest.raises(TypeError):
        state.increment("n", True)


def test_increment_is_atomic_under_concurrent_callers(state):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        seen = list(pool.map(lambda _: state.increment("n"), range(40)))
    assert sorted(seen) == list(range(1, 41))  # every caller saw its own new value
    assert state.get("n") == 40
    assert state.increment("n", 2.5) == 42.5


def test_concurrent_sets_of_different_keys_never_clobber(state):
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: state.set(f"k{i}", i), range(40)))
    assert state.items() == {f"k{i}": i for i in range(40)}


def test_a_generation_is_deleted_whole(state):
    from functions.twins.state import FirestoreState, delete_generation

    other = FirestoreState("gen-other")
    for i in range(12):
        state.set(f"k{i}", i)
    other.set("kept", True)
    delete_generation("gen-test")
    assert state.items() == {} and other.items() == {"kept": True}


def test_rate_limit_is_exact_under_concurrency():
    from functions.twins import ratelimit

    def attempt(_):
        try:
            ratelimit.take("twin:t", "a@example.com", 7, 3600)
            return "ok"
        except errors.RateLimited as exc:
            return int(exc.headers["Retry-After"])

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(attempt, range(20)))
    assert results.count("ok") == 7
    refused = [r for r in results if r != "ok"]
    window_left = 3600 - time.time() % 3600
    assert all(1 <= r <= math.ceil(window_left) + 1 for r in refused)
    # Another caller, another scope: their own windows.
    assert ratelimit.take("twin:t", "b@example.com", 7, 3600) == 1
    assert ratelimit.take("twin:u", "a@example.com", 7, 3600) == 1
