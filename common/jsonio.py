"""JSON out: one encoder for Firestore values, plus streaming of large lists and maps."""
from __future__ import annotations

import datetime
import json
from typing import Any, Iterable, Iterator


def _default(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


_encoder = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    return _encoder.encode(value)


def _joined(parts: Iterable[str], opening: str, closing: str, batch: int) -> Iterator[bytes]:
    yield opening.encode()
    chunk: list[str] = []
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
