"""The error envelope's exceptions: raise one anywhere, common.web.http turns it into a response."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal"
    default_message = "internal error"

    def __init__(
        self, message: str | None = None, *, details: Any = None, headers: dict[str, str] | None = None
    ):
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}


def _error(name: str, status: int, code: str, message: str) -> type[ApiError]:
    return type(name, (ApiError,), {"status": status, "code": code, "default_message": message})


BadRequest = _error("BadRequest", 400, "bad_request", "bad request")
NotFound = _error("NotFound", 404, "not_found", "not found")
MethodNotAllowed = _error("MethodNotAllowed", 405, "method_not_allowed", "method not allowed")
Conflict = _error("Conflict", 409, "conflict", "conflict")
PayloadTooLarge = _error("PayloadTooLarge", 413, "payload_too_large", "request body too large")
UnsupportedMediaType = _error("UnsupportedMediaType", 415, "unsupported_media_type", "unsupported media type")
ValidationFailed = _error("ValidationFailed", 422, "validation_error", "request is not valid")
BadGateway = _error("BadGateway", 502, "bad_gateway", "upstream service failed")
Timeout = _error("Timeout", 504, "timeout", "timed out")


class Unauthenticated(ApiError):
    status, code, default_message = 401, "unauthenticated", "a valid bearer token is required"

    def __init__(self, message: str | None = None, *, token_present: bool = True):
        # RFC 6750: error="invalid_token" only when a token was sent.
        value = 'Bearer error="invalid_token"' if token_present else "Bearer"
        super().__init__(message, headers={"WWW-Authenticate": value})


class Forbidden(ApiError):
    status, code, default_message = 403, "forbidden", "you do not have the role this needs"


class _RetryAfter(ApiError):
    def __init__(self, message: str | None = None, *, retry_after: int = 1, details: Any = None):
        super().__init__(message, details=details, headers={"Retry-After": str(max(1, int(retry_after)))})


class RateLimited(_RetryAfter):
    status, code, default_message = 429, "rate_limited", "too many requests"


class Unavailable(_RetryAfter):
    status, code, default_message = 503, "unavailable", "service unavailable"
