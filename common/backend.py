"""Firestore and Cloud Storage failures in one place: how long a request may wait on them, and
the answer each kind of failure gets (docs/api.md, "Backend failures").

Every request may spend at most BACKEND_DEADLINE_SECONDS (default 30, well under the function's
300 s timeout) waiting on the backends, retries included: each backend call's deadline is what is
left of that budget (common.deadlines puts it on every gRPC and HTTP call), and once it is spent
the next call fails at once with `OutOfTime`, which the clients' retry loops do not retry. Work
outside a request (background threads) gets the same length per call.

Light on purpose (no Google import): it runs on every request; the mapping imports the Google
exception types only when something failed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from common import errors
from common.config import settings

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("backend_deadline", default=None)

# The Retry-After of each answer: a dead backend takes a while to come back; contention clears fast.
RETRY_UNAVAILABLE = 2
RETRY_DEADLINE = 5
RETRY_CONTENTION = 1


@contextlib.contextmanager
def request_budget(seconds: float | None = None) -> Iterator[None]:
    """The backend budget of the request being served (set by common.http.App)."""
    token = _deadline.set(time.monotonic() + (seconds or settings().backend_deadline_seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float:
    """Seconds left for backend calls: of the request's budget, or one call's length outside a
    request. Zero or less means the next call must not start."""
    deadline = _deadline.get()
    if deadline is None:
        return settings().backend_deadline_seconds
    return deadline - time.monotonic()


def answer(exc: BaseException) -> errors.ApiError | None:
    """The answer for a backend failure, in our words (never the backend's): unreachable,
    unavailable or out of time -> 503 with Retry-After; contention -> 503 with a short Retry-After;
    a value the backend refuses -> 422. None for anything else (a bug of ours: 500).

    An error raised while a backend failure was being handled is that failure (e.g. Firestore's
    transaction helper fails its rollback with a ValueError when `begin` never reached the
    server): the chain of contexts is searched."""
    seen = 0
    while exc is not None and seen < 5:
        found = _answer_one(exc)
        if found is not None:
            return found
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def _answer_one(exc: BaseException) -> errors.ApiError | None:
    try:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
    except ImportError:  # a function that loads no Google client
        return None
    from common.deadlines import OutOfTime

    if isinstance(exc, OutOfTime | gexc.DeadlineExceeded | gexc.GatewayTimeout | requests.Timeout):
        return errors.Unavailable(
            "the data store did not answer in time; try again shortly",
            retry_after=RETRY_DEADLINE,
            details={"reason": "deadline"},
        )
    if isinstance(exc, gexc.Aborted):
        return contention()
    if isinstance(
        exc,
        gexc.ServiceUnavailable
        | gexc.InternalServerError
        | gexc.Unknown
        | gexc.TooManyRequests
        | gexc.BadGateway
        | gexc.RetryError
        | requests.ConnectionError
        | auth_exc.TransportError
        | ConnectionError,
    ):
        return errors.Unavailable(
            "the data store is unavailable; try again shortly",
            retry_after=RETRY_UNAVAILABLE,
            details={"reason": "unavailable"},
        )
    if isinstance(exc, gexc.InvalidArgument):
        return errors.ValidationFailed(
            "the data store cannot hold this value (a field name, size or "
            "nesting limit); see the documented limits"
        )
    return None


def contention() -> errors.ApiError:
    """Too many concurrent changes to the same documents (a transaction kept aborting)."""
    return errors.Unavailable(
        "too many concurrent changes to the same data; try again",
        retry_after=RETRY_CONTENTION,
        details={"reason": "contention"},
    )
