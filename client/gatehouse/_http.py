"""What every resource module shares, below the client: path segments, Retry-After, paging and
the `Resource` base. Nothing here imports `gatehouse.client`, so `client.py` imports the
resource modules at its top (no import cycle, no lazy import)."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlparse

import requests

if TYPE_CHECKING:
    from gatehouse.client import Gatehouse

RETRY_STATUSES = (429, 503)


def segment(value: str) -> str:
    """One path segment, escaped (names never contain "/", but an email may hold "+")."""
    return quote(str(value), safe="@")


def retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (delta or HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def next_cursor(response: requests.Response) -> str | None:
    """The cursor of `Link: <...?cursor=...>; rel="next"` (taken alone, so the next request goes
    to this client's URL whatever host the server saw)."""
    link = response.links.get("next")
    if not link:
        return None
    cursor = parse_qs(urlparse(link["url"]).query).get("cursor")
    return cursor[0] if cursor else None


def pages(
    request: Callable[..., Any], path: str, params: dict[str, Any] | None = None, page_size: int = 1000
) -> Iterator[Any]:
    """Every item of a paged list, fetched a page at a time by following its cursors
    (`request` is the client's `request`)."""
    params = dict(params or {}, limit=page_size)
    while True:
        response = request("GET", path, params=params, raw=True)
        yield from response.json()
        cursor = next_cursor(response)
        if not cursor:
            return
        params["cursor"] = cursor


class Resource:
    """One resource of a client (`client.datasets`, ...): its methods are the resource's routes."""

    def __init__(self, client: Gatehouse):
        self._client = client

    def __repr__(self) -> str:
        methods = [
            name
            for name in dir(type(self))
            if not name.startswith("_") and callable(getattr(type(self), name, None))
        ]
        doc = (type(self).__doc__ or "").strip().splitlines()
        first = f" {doc[0]}" if doc else ""
        return f"<gatehouse {type(self).__name__.lower()}:{first} methods: {', '.join(methods)}>"
