"""The one place backend failures become answers (common/storage/failures.py): each failure of Firestore,
Cloud Storage, Pub/Sub or Google's auth has one answer. The budget and deadlines against the
emulators are in tests/integration/test_backend.py, real dead and hung emulators in
tests/system/test_faults.py."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from common import errors
from common.storage import clients, failures


@pytest.mark.parametrize(
    "exc,reason,retry_after",
    [
        (clients.OutOfTime("spent"), "deadline", failures.RETRY_DEADLINE),
        (gexc.DeadlineExceeded("slow"), "deadline", failures.RETRY_DEADLINE),
        (requests.Timeout(), "deadline", failures.RETRY_DEADLINE),
        (gexc.ServiceUnavailable("down"), "unavailable", failures.RETRY_UNAVAILABLE),
        (gexc.InternalServerError("oops"), "unavailable", failures.RETRY_UNAVAILABLE),
        (gexc.RetryError("gave up", cause=None), "unavailable", failures.RETRY_UNAVAILABLE),
        (requests.ConnectionError(), "unavailable", failures.RETRY_UNAVAILABLE),
        (auth_exc.TransportError("metadata server"), "unavailable", failures.RETRY_UNAVAILABLE),
        (gexc.Aborted("contention"), "contention", failures.RETRY_CONTENTION),
    ],
)
def test_each_backend_failure_has_one_answer(exc, reason, retry_after):
    answer = failures.answer(exc)
    assert isinstance(answer, errors.Unavailable) and answer.status == 503
    assert answer.details == {"reason": reason}
    assert answer.headers["Retry-After"] == str(retry_after)
    assert "google" not in answer.message.lower()  # our words, never the backend's


def test_a_refused_value_is_422_and_anything_else_is_ours():
    assert failures.answer(gexc.InvalidArgument("too deep")).status == 422
    assert failures.answer(RuntimeError("a bug")) is None
    assert failures.answer(gexc.NotFound("gone")) is None


def test_an_error_raised_while_handling_a_backend_failure_is_that_failure():
    """Firestore's transaction helper fails its rollback (ValueError) after `begin` failed."""
    try:
        try:
            raise clients.OutOfTime("spent")
        except clients.OutOfTime:
            raise ValueError("Transaction not in progress, cannot be rolled back.")  # noqa: B904
    except ValueError as exc:
        assert failures.answer(exc).details == {"reason": "deadline"}
