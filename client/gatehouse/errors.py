"""Typed errors: every error answer of Gatehouse is an envelope `{"error", "message",
"request_id", "details"?}`; the client raises it as the matching subclass of GatehouseError."""

from __future__ import annotations

from typing import Any


class GatehouseError(Exception):
    """An error answer: `status` (HTTP), `error` (the envelope's code), `message`, `request_id`
    (quote it when asking the operators), `details` (or None) and the `response`."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        request_id: str | None = None,
        details: Any = None,
        response: Any = None,
    ):
        self.status, self.error, self.message = status, error, message
        self.request_id, self.details, self.response = request_id, details, response
        super().__init__(self._text())

    def _text(self) -> str:
        text = f"{self.status} {self.error}: {self.message}" if self.status else self.message
        problems = problem_lines(self.details)
        if problems:
            text += "\n" + "\n".join(f"  {line}" for line in problems)
        if self.request_id:
            text += ("\n" if problems else " ") + f"(request {self.request_id})"
        return text

    def _reword(self, message: str) -> None:
        """Replaces the message (and so what `print(e)` shows)."""
        self.message = message
        self.args = (self._text(),)


SHOWN_PROBLEMS = 5
# The tag a route's body of "one item or a list" puts first in each problem's place (pydantic's
# tagged union): `one.pos.0` is shown as `pos.0`, `list.3.pos.0` as `3.pos.0`.
BODY_TAGS = ("one", "list")


def problem_lines(details: Any) -> list[str]:
    """The first problems of a `details` list (`[{"loc", "message"}]`, as a 422 gives) as
    `pos.0: Input should be a valid integer` lines; empty when details is not such a list."""
    if not isinstance(details, list):
        return []
    lines = []
    for problem in details:
        if not isinstance(problem, dict) or "message" not in problem:
            continue
        loc = [str(part) for part in problem.get("loc") or []]
        if loc and loc[0] in ("body", "query"):
            loc = loc[1:]
        if loc and loc[0] in BODY_TAGS:
            loc = loc[1:]
        where = ".".join(loc)
        line = f" (line {problem['line']})" if problem.get("line") else ""
        lines.append(f"{where}: {problem['message']}{line}" if where else f"{problem['message']}{line}")
    if len(lines) > SHOWN_PROBLEMS:
        lines = lines[:SHOWN_PROBLEMS] + [f"... and {len(lines) - SHOWN_PROBLEMS} more (see .details)"]
    return lines


class BadRequest(GatehouseError):
    """400: malformed JSON, a bad or unknown query parameter, a bad cursor."""


class Unauthenticated(GatehouseError):
    """401: no usable token."""


class Forbidden(GatehouseError):
    """403: authenticated, but the role is missing."""


class NotFound(GatehouseError):
    """404: no such thing, or one the caller may not know exists."""


class MethodNotAllowed(GatehouseError):
    """405."""


class Conflict(GatehouseError):
    """409: the change clashes with the stored state."""


class PayloadTooLarge(GatehouseError):
    """413."""


class UnsupportedMediaType(GatehouseError):
    """415."""


class ValidationError(GatehouseError):
    """422: well-formed JSON that is not valid for the route; `details` lists the problems."""


class RateLimited(GatehouseError):
    """429: over a rate limit (after the client's own polite retries)."""


class ServerError(GatehouseError):
    """500: a fault of the server's; the request id is in its log."""


class EndpointError(ServerError):
    """500 `endpoint_error`: a twin endpoint's code failed; `details["reference"]` names the call record."""


class BadGateway(GatehouseError):
    """502: an upstream service failed."""


class Unavailable(GatehouseError):
    """503: a backend is unavailable or busy (after the client's own polite retries)."""


class Timeout(GatehouseError):
    """504: the work ran past its time limit and was stopped."""


class JobFailed(GatehouseError):
    """An asynchronous twin job that ended `failed`; `details` holds the job."""


class Unreachable(GatehouseError, ConnectionError):
    """The server could not be reached (refused, no such host, timed out connecting): the
    message names the URL and what to check. `status` is 0: no HTTP answer came."""


class SignInFailed(GatehouseError):
    """`auth.login()`'s browser or device-code sign-in did not complete; `error` is the OAuth
    error (RFC 6749 §5.2, RFC 8628 §3.5), `status` 0 or the token endpoint's."""


class SignInDenied(SignInFailed):
    """The person (or the OAuth provider) refused the sign-in: `access_denied`."""


class SignInExpired(SignInFailed):
    """The device code expired before anyone entered it, or the browser never came back:
    `expired_token`; call `login()` again."""


class VersionMismatchWarning(UserWarning):
    """The server runs another release series than this client."""


_BY_CODE = {
    "endpoint_error": EndpointError,
}
_BY_STATUS = {
    400: BadRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationError,
    429: RateLimited,
    500: ServerError,
    502: BadGateway,
    503: Unavailable,
    504: Timeout,
}


def error_class(status: int, code: str | None) -> type[GatehouseError]:
    return _BY_CODE.get(code or "") or _BY_STATUS.get(status) or GatehouseError


def from_envelope(status: int, body: Any, response: Any = None) -> GatehouseError:
    """The exception for an error answer; a body that is not our envelope (a proxy's page, say)
    still gives a typed error, with the start of the text as its message."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        return error_class(status, code)(
            status,
            code,
            str(body.get("message") or code),
            body.get("request_id"),
            body.get("details"),
            response,
        )
    text = body if isinstance(body, str) else repr(body)
    request_id = response.headers.get("X-Request-Id") if response is not None else None
    return error_class(status, None)(
        status, "http_error", text[:500] or f"HTTP {status}", request_id, None, response
    )
