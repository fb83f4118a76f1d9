"""The Python client of Gatehouse: governed HTTPS access to research datasets.

    from gatehouse import Gatehouse
    with Gatehouse("http://127.0.0.1:8080") as gh:
        print(gh.datasets.list())

`help(Gatehouse)` lists the resources; `gh.twins.<TAB>` the twin endpoints.
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
    SignInDenied,
    SignInExpired,
    SignInFailed,
    Timeout,
    Unauthenticated,
    Unavailable,
    Unreachable,
    UnsupportedMediaType,
    ValidationError,
    VersionMismatchWarning,
)
from gatehouse.records import Listing, Record, Table

__all__ = [
    "BadGateway",
    "BadRequest",
    "Conflict",
    "EndpointError",
    "Forbidden",
    "Gatehouse",
    "GatehouseError",
    "JobFailed",
    "Listing",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "Record",
    "ServerError",
    "SignInDenied",
    "SignInExpired",
    "SignInFailed",
    "Table",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "Unreachable",
    "UnsupportedMediaType",
    "ValidationError",
    "VersionMismatchWarning",
    "__version__",
]
