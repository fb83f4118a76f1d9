"""The one place backend failures become answers (common/backend.py): each failure of Firestore,
Cloud Storage, Pub/Sub or Google's auth has one answer. The budget and deadlines against the
emulators are in tests/integration/test_backend.py, real dead and hung emulators in
tests/system/test_faults.py."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc

from common import backend, deadlines, errors


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
