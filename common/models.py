"""Shared pydantic types: names, emails, roles, as SPEC §1-2 define them."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from common import errors, jsonio
from common.config import settings
from common.names import DATASET_NAME, RESERVED_DATASET_NAMES

# Group names may have spaces (`UK Drosophila Connectomics`) and the clio website hides groups
# whose name starts with `.`. A name is a Firestore document id or a field, never a path: `/`
# stays out (dataset names: common.names).
ROLE_NAME = r"^[a-z][a-z0-9_:-]{0,63}$"
GROUP_NAME = r"^[A-Za-z0-9.](?:[A-Za-z0-9_.:@ -]{0,126}[A-Za-z0-9_.:@-])?$"


def _dataset_name(value: str) -> str:
    if value in RESERVED_DATASET_NAMES:
        raise ValueError(f"{value!r} is reserved")
    return value


def normalize_email(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email

    if "/" in value:  # valid in RFC 5322, but an email is a Firestore document id, which cannot hold "/"
        raise ValueError("an email with '/' is not accepted")
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email: {exc}") from None


DatasetName = Annotated[str, StringConstraints(pattern=DATASET_NAME), AfterValidator(_dataset_name)]
Email = Annotated[str, StringConstraints(max_length=254), AfterValidator(normalize_email)]
BUILTIN_ROLES = ("admin", "clio_read", "clio_general", "clio_write", "dataset_admin")


def _known_role(value: str) -> str:
    """A built-in role or one this deployment declares (EXTRA_ROLES): a typo is refused, not stored."""
    known = (*BUILTIN_ROLES, *settings().extra_roles)
    if value not in known:
        raise ValueError(f"unknown role {value!r}; the valid roles are: {', '.join(known)}")
    return value


RoleName = Annotated[str, StringConstraints(pattern=ROLE_NAME), AfterValidator(_known_role)]
COORDINATE_RANGE = (-(1 << 31), 1 << 31)  # SPEC §1: integers in [-2^31, 2^31)
Coordinate = Annotated[int, Field(ge=COORDINATE_RANGE[0], lt=COORDINATE_RANGE[1])]
GroupName = Annotated[str, StringConstraints(pattern=GROUP_NAME)]


# A dataset's `location` is metadata, as clio keeps it: the URL of its image source, with one of
# these schemes (neuroglancer's data source prefixes and the stores they read), the bare
# placeholder `gs://` included. What may be sent to the transfer network is checked by transfer.
LOCATION_SCHEMES = (
    "gs",
    "s3",
    "http",
    "https",
    "dvid",
    "precomputed",
    "n5",
    "zarr",
    "zarr2",
    "zarr3",
    "graphene",
    "brainmaps",
    "boss",
)
MAX_LOCATION = 2048
_LOCATION = r"^(?:" + "|".join(LOCATION_SCHEMES) + r")://[^\x00-\x1f\x7f-\x9f]*$"


def _location(value: str) -> str:
    if len(value) > MAX_LOCATION or not re.fullmatch(_LOCATION, value):
        raise ValueError(
            f"a location is a URL of at most {MAX_LOCATION} characters without control characters, "
            f"whose scheme is one of {', '.join(s + '://' for s in LOCATION_SCHEMES)}"
        )
    return value


Location = Annotated[str, AfterValidator(_location)]


class Strict(BaseModel):
    """A typed body: unknown fields are refused (422)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Public(BaseModel):
    """A route's answer (`@app.get(..., response=XPublic)`; common.web.http applies it): fields it
    does not declare are dropped, so a stored document never goes out as it is.

    Models are named by role: `XCreate` / `XUpdate` for bodies, `XPublic` for answers."""

    model_config = ConfigDict(extra="ignore")


class ProfilePublic(Public):
    """The caller's roles as /roles and /users/me show them."""

    email: str
    name: str
    global_roles: list[str]
    datasets: dict[str, list[str]]
    groups: list[str]


class DeletedPublic(Public):
    """What a bulk delete removed."""

    deleted: list[str]


class Query(BaseModel):
    """A route's query parameters (`@app.get(..., query=SomeQuery)`): typed from the query
    string's text, documented in the OpenAPI, and any other parameter is refused (400)."""

    model_config = ConfigDict(extra="forbid")


class Paging(Query):
    """The query of a paged list (SPEC §1 Lists)."""

    limit: int | None = Field(
        None, ge=1, le=10_000, description="page size (1-10000); without it the whole list streams"
    )
    cursor: str | None = Field(None, description="from the Link header of the previous page")


class FreeForm(BaseModel):
    """A body whose named fields are typed and whose other fields are the caller's own."""

    model_config = ConfigDict(extra="allow", strict=True)


_INT64 = (-(1 << 63), (1 << 63) - 1)
_MAX_DEPTH = 20
MAX_FIELD_NAME_BYTES = 1500  # Firestore's limit
MAX_DOCUMENT_BYTES = 1_000_000  # under Firestore's 1 MiB per document, with room for our own fields


def check_document_size(record: dict[str, Any], what: str) -> None:
    """413 before a write Firestore would refuse for its size."""
    size = len(jsonio.dumps(record).encode())
    if size > MAX_DOCUMENT_BYTES:
        raise errors.PayloadTooLarge(
            f"{what} would be {size} bytes stored; the limit is {MAX_DOCUMENT_BYTES}"
        )


def check_storable(value, where: str = "body", depth: int = 0) -> None:
    """Free-form JSON that Firestore can hold: no arrays directly inside arrays, 64-bit
    integers, no reserved `__x__` field names, bounded nesting. Raises ValueError."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{where}: nested more than {_MAX_DEPTH} levels")
    if isinstance(value, bool) or value is None or isinstance(value, (float, str)):
        return
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise ValueError(f"{where}: integer out of the 64-bit range")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not key or (key.startswith("__") and key.endswith("__")):
                raise ValueError(f"{where}: field name {key!r} is not allowed")
            if len(key.encode("utf-8", "surrogatepass")) > MAX_FIELD_NAME_BYTES:
                raise ValueError(f"{where}: a field name is at most {MAX_FIELD_NAME_BYTES} bytes")
            check_storable(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, list):
                raise ValueError(f"{where}[{i}]: arrays directly inside arrays cannot be stored")
            check_storable(item, f"{where}[{i}]", depth + 1)


def _storable_object(value: dict[str, Any]) -> dict[str, Any]:
    check_storable(value)
    return value


# A free-form JSON object the caller owns (annotation payloads, saved searches, `prop`).
Payload = Annotated[dict[str, Any], AfterValidator(_storable_object)]


# clio's /v2 routes (common.web.clio): bodies read as clio's pydantic v1 models read them, and its `User`.
class Lenient(BaseModel):
    """Base of a clio route's body model: unknown fields are dropped, as clio's pydantic v1
    models did (neuroglancer sends `verified` back on entries it decoded with one)."""

    model_config = ConfigDict(extra="ignore")


def _truncate(value: Any) -> Any:
    """A finite float becomes the int toward zero (pydantic v1's `1.7 -> 1`); anything else is
    left for the field's own validation."""
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return value


Truncated = Annotated[int, BeforeValidator(_truncate)]


class ClioUserPublic(BaseModel):
    """A user as clio's `User` model answered it (`GET /v2/roles`, `GET /v2/users`): Gatehouse's
    fields, and clio's that Gatehouse does not keep (`org`, `picture`, terms of service) empty."""

    email: str
    name: str = ""
    org: str = ""
    picture: str = ""
    disabled: bool = False
    global_roles: list[str] = []
    datasets: dict[str, list[str]] = {}
    datasets_ignore_tos: dict[str, Any] = {}
    missing_tos: list[str] = []
    groups: list[str] = []
