"""Firestore and Cloud Storage failures in one place: the answer each kind of failure gets
(docs/api.md, "Backend failures").

How long a request may wait is common.storage.deadlines's; common.storage.clients puts what is left of it on
every gRPC and HTTP call, and once it is spent the next call fails at once with `OutOfTime`,
which the clients' retry loops do not retry: the request then answers 503 from here.
"""

from __future__ import annotations

from common import errors

# The Retry-After of each answer: a dead backend takes a while to come back; contention clears fast.
RETRY_UNAVAILABLE = 2
RETRY_DEADLINE = 5
RETRY_CONTENTION = 1


def too_slow(service: str, seconds: float, **details) -> errors.ApiError:
    """A service outside Google's (DVID, neuPrint) silent past its timeout: 503, try again later."""
    return errors.Unavailable(
        f"{service} did not answer within {seconds:g} s; try again shortly",
        retry_after=RETRY_DEADLINE,
        details={"reason": "deadline", **details},
    )


def unreachable(service: str, status: int | None = None, **details) -> errors.ApiError:
    """A service outside Google's unreachable, or answering that it is down (`status`, a 502,
    503 or 504 of its own): 503, try again later."""
    said = f"is unavailable (HTTP {status})" if status else "is unreachable"
    return errors.Unavailable(
        f"{service} {said}; try again shortly",
        retry_after=RETRY_UNAVAILABLE,
        details={"reason": "unavailable", **details},
    )


def answer(exc: BaseException) -> errors.ApiError | None:
    """The answer for a backend failure, in our words (never the backend's): unreachable,
    unavailable or out of time -> 503 with Retry-After; contention -> 503 with a short Retry-After;
    a value the backend refuses -> 422. None for anything else (a bug of ours: 500).

    An error raised while a backend failure was being handled is that failure (e.g. Firestore's
    transaction helper fails its rollback with a ValueError when `begin` never reached the
    server): the chain of contexts is searched."""
    current: BaseException | None = exc
    for _ in range(5):
        if current is None:
            break
        found = _answer_one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _answer_one(exc: BaseException) -> errors.ApiError | None:
    # lazy: the Google exception types cost ~150 ms to import; only a failure needs them
    try:
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc
    except ImportError:  # a function that loads no Google client
        return None
    from common.storage.clients import OutOfTime  # lazy: loads grpc; only a failure needs it

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
