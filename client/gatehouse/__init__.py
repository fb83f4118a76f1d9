"""The Python client of Gatehouse: governed HTTPS access to research datasets.

from gatehouse import Gatehouse
gh = Gatehouse("http://127.0.0.1:8080")
gh.datasets.list()
"""

from gatehouse._version import __version__
from gatehouse.client import Gatehouse
from gatehouse.errors import (
    BadGateway,
    BadRequest,
    Conflict,
    EndpointError,
    Forbidden,
    GatehouseError,
    JobFailed,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Timeout,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    ValidationError,
    VersionMismatchWarning,
)

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "EndpointError",
    "Forbidden",
    "Gatehouse",
    "GatehouseError",
    "JobFailed",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "ValidationError",
    "VersionMismatchWarning",
    "__version__",
]
