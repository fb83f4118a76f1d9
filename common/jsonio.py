"""JSON in and out: strict parsing of request bodies, one encoder for Firestore values, and
streaming of large lists and maps."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

from common import errors

MAX_DEPTH = 32  # nesting levels of a request body (Firestore allows 20 inside a stored map)


def loads(data: bytes | str) -> Any:
    """A request body as JSON, refusing what JSON or Firestore cannot hold: NaN, Infinity and
    numbers out of range (1e400), nesting deeper than MAX_DEPTH, strings that are not Unicode
    (lone surrogates). Malformed JSON is 400; the rest is 422."""

    def constant(name: str) -> Any:
        raise errors.ValidationFailed(f"{name} is not a JSON number")

    def finite(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise errors.ValidationFailed(f"the number {text[:40]} is out of range")
        return value

    try:
        value = json.loads(data, parse_constant=constant, parse_float=finite)
    except RecursionError:
        raise errors.ValidationFailed(f"the JSON is nested more than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise errors.BadRequest("malformed JSON: the body is not UTF-8") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more than 4300 digits
        raise errors.BadRequest(f"malformed JSON: {str(exc)[:200]}") from None
    _check_tree(value)
    return value


def _check_tree(value: Any) -> None:
    """Depth and Unicode of every node, without recursion (a hostile body cannot exhaust the stack)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            _unicode(node)
        elif isinstance(node, (dict, list)):
            if depth > MAX_DEPTH:
                raise errors.ValidationFailed(f"the JSON is nested more than {MAX_DEPTH} levels")
            if isinstance(node, dict):
                for key in node:
                    _unicode(key)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def _unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.ValidationFailed("a string is not valid Unicode (a lone surrogate)") from None


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


# allow_nan=False: an answer is always valid JSON (NaN and Infinity are refused on the way in).
_encoder = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps(value: Any) -> str:
    return _encoder.encode(value)


def _joined(parts: Iterable[str], opening: str, closing: str, batch: int) -> Iterator[bytes]:
    # The first part is made before anything is sent: a query that fails at once fails here,
    # while the answer can still be an error (common.web.http.streamed).
    parts = iter(parts)
    first = next(parts, None)
    yield opening.encode()
    chunk: list[str] = [] if first is None else [first]
    separator = ""
    for part in parts:
        chunk.append(part)
        if len(chunk) >= batch:
            yield (separator + ",".join(chunk)).encode()
            separator, chunk = ",", []
    if chunk:
        yield (separator + ",".join(chunk)).encode()
    yield closing.encode()


def stream_array(items: Iterable[Any], batch: int = 256) -> Iterator[bytes]:
    """`[a,b,...]` in chunks of `batch` items, so memory stays flat however long the list."""
    return _joined((dumps(item) for item in items), "[", "]", batch)


def stream_object(pairs: Iterable[tuple[str, Any]], batch: int = 256) -> Iterator[bytes]:
    """`{"k":v,...}` from (key, value) pairs, in chunks."""
    return _joined((dumps(key) + ":" + dumps(value) for key, value in pairs), "{", "}", batch)
