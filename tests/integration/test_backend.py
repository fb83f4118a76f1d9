"""The request's budget (common/storage/deadlines.py) and the deadline put on each call (common/storage/clients.py),
against the emulators. How each backend failure is answered (common/storage/failures.py):
tests/unit/test_backend.py; real dead and hung emulators: tests/system/test_faults.py."""

from __future__ import annotations

import time

import pytest

from common import errors
from common.storage import clients, deadlines


def test_the_budget_cuts_each_call_and_refuses_one_when_spent(test_env):
    assert clients.call_timeout(None) == deadlines.remaining()  # outside a request: one call's length
    with deadlines.request_budget(0.2):
        assert 0 < clients.call_timeout(60) <= 0.2
        assert clients.call_timeout(0.05) == 0.05  # a shorter deadline of its own is kept
        time.sleep(0.25)
        with pytest.raises(clients.OutOfTime):
            clients.call_timeout(60)
    assert deadlines.remaining() > 1  # the request's budget ends with it


def test_storage_calls_get_the_budget_and_none_starts_once_it_is_spent(test_env, emulators):
    from google.auth.credentials import AnonymousCredentials

    session = clients.BoundedSession(AnonymousCredentials())
    url = f"{emulators.storage_host}/storage/v1/b?project={emulators.project}"
    with deadlines.request_budget(5):
        assert session.request("GET", url, timeout=(60, 60)).status_code == 200
    with deadlines.request_budget(0.01):
        time.sleep(0.02)
        with pytest.raises(clients.OutOfTime):
            session.request("GET", url, timeout=60)


def test_a_hung_firestore_call_gives_up_within_the_budget(test_env):
    """OutOfTime is a GoogleAPIError the client's retry does not retry: once the budget is spent
    the client stops at once, whatever its own 60-300 s defaults."""
    from common.storage import store

    with deadlines.request_budget(0.3):
        time.sleep(0.31)
        started = time.monotonic()
        with pytest.raises(clients.OutOfTime):
            store.collection("datasets").document("any").get()
    assert time.monotonic() - started < 1


def test_time_inside_paused_is_not_counted_and_calls_inside_get_one_calls_length(test_env):
    with deadlines.request_budget(0.5):
        with deadlines.paused():
            assert deadlines.remaining() == deadlines.settings().backend_deadline_seconds
            time.sleep(0.6)  # longer than the whole budget
        assert 0.3 < deadlines.remaining() <= 0.5  # what was left before is left after
        with deadlines.paused(), deadlines.paused():  # nested (a request's endpoint calls): the same
            pass
        assert 0.3 < deadlines.remaining() <= 0.5


def test_a_contended_transaction_gives_up_in_seconds_not_the_whole_budget(test_env):
    """Eight writers of one document in transactions at once: in the emulator each round holds a
    lock for about 2 s and lets one through. Each writer answers within a few seconds (they used
    to retry for 20 attempts, far past the 30 s budget), as done or as contention."""
    from concurrent.futures import ThreadPoolExecutor

    from common.storage import store

    ref = store.collection("contention").document("hot")
    ref.set({"n": 0})

    def bump(transaction) -> None:
        transaction.update(ref, {"n": ref.get(transaction=transaction).get("n") + 1})

    def writer(_):
        started = time.monotonic()
        try:
            store.transactional(bump)
            outcome = "done"
        except errors.Unavailable as exc:
            assert exc.details == {"reason": "contention"} and exc.headers["Retry-After"] == "1"
            outcome = "contention"
        return outcome, time.monotonic() - started

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(writer, range(8)))
    assert max(seconds for _, seconds in results) < 8, results
    done = sum(outcome == "done" for outcome, _ in results)
    assert done >= 1 and ref.get().get("n") == done, results
