"""The one place backend failures become answers (common/backend.py), the request's budget
(common/budget.py) and the deadline put on each call (common/deadlines.py). The behaviour with
real dead and hung emulators is in tests/test_faults.py."""

from __future__ import annotations

import time

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from common import backend, budget, deadlines, errors


@pytest.mark.parametrize(
    "exc,reason,retry_after",
    [
        (deadlines.OutOfTime("spent"), "deadline", backend.RETRY_DEADLINE),
        (gexc.DeadlineExceeded("slow"), "deadline", backend.RETRY_DEADLINE),
        (requests.Timeout(), "deadline", backend.RETRY_DEADLINE),
        (gexc.ServiceUnavailable("down"), "unavailable", backend.RETRY_UNAVAILABLE),
        (gexc.InternalServerError("oops"), "unavailable", backend.RETRY_UNAVAILABLE),
        (gexc.RetryError("gave up", cause=None), "unavailable", backend.RETRY_UNAVAILABLE),
        (requests.ConnectionError(), "unavailable", backend.RETRY_UNAVAILABLE),
        (auth_exc.TransportError("metadata server"), "unavailable", backend.RETRY_UNAVAILABLE),
        (gexc.Aborted("contention"), "contention", backend.RETRY_CONTENTION),
    ],
)
def test_each_backend_failure_has_one_answer(exc, reason, retry_after):
    answer = backend.answer(exc)
    assert isinstance(answer, errors.Unavailable) and answer.status == 503
    assert answer.details == {"reason": reason}
    assert answer.headers["Retry-After"] == str(retry_after)
    assert "google" not in answer.message.lower()  # our words, never the backend's


def test_a_refused_value_is_422_and_anything_else_is_ours():
    assert backend.answer(gexc.InvalidArgument("too deep")).status == 422
    assert backend.answer(RuntimeError("a bug")) is None
    assert backend.answer(gexc.NotFound("gone")) is None


def test_an_error_raised_while_handling_a_backend_failure_is_that_failure():
    """Firestore's transaction helper fails its rollback (ValueError) after `begin` failed."""
    try:
        try:
            raise deadlines.OutOfTime("spent")
        except deadlines.OutOfTime:
            raise ValueError("Transaction not in progress, cannot be rolled back.")  # noqa: B904
    except ValueError as exc:
        assert backend.answer(exc).details == {"reason": "deadline"}


def test_the_budget_cuts_each_call_and_refuses_one_when_spent(test_env):
    assert deadlines.call_timeout(None) == budget.remaining()  # outside a request: one call's length
    with budget.request_budget(0.2):
        assert 0 < deadlines.call_timeout(60) <= 0.2
        assert deadlines.call_timeout(0.05) == 0.05  # a shorter deadline of its own is kept
        time.sleep(0.25)
        with pytest.raises(deadlines.OutOfTime):
            deadlines.call_timeout(60)
    assert budget.remaining() > 1  # the request's budget ends with it


def test_storage_calls_get_the_budget_and_none_starts_once_it_is_spent(test_env, emulators):
    from google.auth.credentials import AnonymousCredentials

    session = deadlines.BoundedSession(AnonymousCredentials())
    url = f"{emulators.storage_host}/storage/v1/b?project={emulators.project}"
    with budget.request_budget(5):
        assert session.request("GET", url, timeout=(60, 60)).status_code == 200
    with budget.request_budget(0.01):
        time.sleep(0.02)
        with pytest.raises(deadlines.OutOfTime):
            session.request("GET", url, timeout=60)


def test_a_hung_firestore_call_gives_up_within_the_budget(test_env):
    """OutOfTime is a GoogleAPIError the client's retry does not retry: once the budget is spent
    the client stops at once, whatever its own 60-300 s defaults."""
    from common import store

    with budget.request_budget(0.3):
        time.sleep(0.31)
        started = time.monotonic()
        with pytest.raises(deadlines.OutOfTime):
            store.collection("datasets").document("any").get()
    assert time.monotonic() - started < 1
