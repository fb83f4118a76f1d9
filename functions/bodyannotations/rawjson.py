"""The top-level values of a JSON array or object as the bytes they were written in, never
parsed and written again: DVID's body ids exceed 2^53 (a JavaScript client would round them)
and some clients write them as text, so what reaches DVID, and what comes back from it, must be
the very bytes that were sent.

A scan over strings (escape-aware) and brackets (depth-counted); numbers, literals and
whitespace in between are skipped by the regular expression, so it runs at C speed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A string (with its escapes), one structural character, or a quote that opens no whole string;
# everything else is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]|"', re.DOTALL)


class Malformed(ValueError):
    """Not a JSON array or object of well-formed top-level values."""


def values(data: bytes) -> Iterator[bytes]:
    """Each top-level value of the array (or each value of the object) in `data`, verbatim
    (surrounding whitespace stripped). Raises Malformed for anything else."""
    text = data.strip()
    if not text or text[:1] not in (b"[", b"{"):
        raise Malformed("not a JSON array or object")
    is_object = text[:1] == b"{"
    depth, start, closed = 0, 0, False
    for match in _TOKEN.finditer(text):
        token = match.group()
        char = token[:1]
        if closed:
            raise Malformed("text after the closing bracket")
        if token == b'"':
            raise Malformed("an unterminated string")
        if char in (b"[", b"{"):
            depth += 1
            if depth == 1:
                start = match.end()
        elif char in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                last = text[start : match.start()].strip()
                if last:
                    yield last
                elif start != 1 and not is_object:
                    raise Malformed("a trailing comma")
                closed = True
        elif depth == 1 and char == b",":
            item = text[start : match.start()].strip()
            if not item:
                raise Malformed("an empty value")
            yield item
            start = match.end()
        elif depth == 1 and char == b":" and is_object:
            start = match.end()  # the value follows its key
    if not closed or text[-1:] not in (b"]", b"}"):
        raise Malformed("unterminated")


def array(items: Iterator[bytes] | list[bytes]) -> bytes:
    """`[a,b,...]` of values already written as JSON."""
    return b"[" + b",".join(items) + b"]"
