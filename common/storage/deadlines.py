"""How long the request being served may still wait on Firestore and Cloud Storage.

Every request may spend at most BACKEND_DEADLINE_SECONDS (default 30, well under the function's
300 s timeout) waiting on the backends, retries included: common.web.http.App sets the budget,
common.storage.clients cuts every call's deadline to what is left of it. Work outside a request
(background threads) gets the same length per call. Time spent running twin code is not
waiting on a backend: `paused` keeps it out of the budget (the code has its own time limit).
Light on purpose: it runs on every request.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator

from common.config import settings

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("backend_deadline", default=None)


@contextlib.contextmanager
def request_budget(seconds: float | None = None) -> Iterator[None]:
    """The backend budget of the request being served."""
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


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Time spent inside does not count against the request's budget: what was left when it
    started is left when it ends (twin code runs for up to its `timeout_s`, which may be longer
    than the whole budget, and the request must still store what it did). Backend calls made
    inside (the code's state and endpoint calls) each get one call's length, as work outside a
    request does."""
    deadline = _deadline.get()
    if deadline is None:  # outside a request, or already paused
        yield
        return
    left = deadline - time.monotonic()
    token = _deadline.set(None)
    try:
        yield
    finally:
        _deadline.reset(token)
        _deadline.set(time.monotonic() + left)
