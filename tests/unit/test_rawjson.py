"""functions.bodyannotations.rawjson: the top-level values of a JSON array or object as the
bytes they were written in (body ids above 2^53, strings with brackets, commas and escapes)."""

from __future__ import annotations

import json

import pytest

from functions.bodyannotations import rawjson

BIG = (1 << 60) + 7


@pytest.mark.parametrize(
    "data,expected",
    [
        (b"[]", []),
        (b" [ ] ", []),
        (b"{}", []),
        (b"[1]", [b"1"]),
        (f"[{BIG}, 2.50, -0]".encode(), [str(BIG).encode(), b"2.50", b"-0"]),
        (
            b'[{"a": [1, {"b": "]},["}]}, "x,y", null, true]',
            [b'{"a": [1, {"b": "]},["}]}', b'"x,y"', b"null", b"true"],
        ),
        (b'["a\\"],", "\\\\"]', [b'"a\\"],"', b'"\\\\"']),
        (b'{"1": {"bodyid": 1}, "2": {"k": "v:,}"}}', [b'{"bodyid": 1}', b'{"k": "v:,}"}']),
        ('["é", "\\u00e9"]'.encode(), ['"é"'.encode(), b'"\\u00e9"']),
        (b'[\n  {"bodyid": 1} ,\n  {"bodyid": 2}\n]', [b'{"bodyid": 1}', b'{"bodyid": 2}']),
    ],
)
def test_values_are_the_bytes_as_written(data, expected):
    assert list(rawjson.values(data)) == expected
    assert [json.loads(v) for v in rawjson.values(data)] == (
        list(json.loads(data).values()) if data.strip().startswith(b"{") else json.loads(data)
    )


@pytest.mark.parametrize(
    "data", [b"", b"3", b'"s"', b"[1,", b"[1,,2]", b"[1,]", b"[1] [2]", b"[1]]", b'["open]']
)
def test_what_is_not_an_array_or_object_is_refused(data):
    with pytest.raises(rawjson.Malformed):
        list(rawjson.values(data))


def test_array_joins_values_as_they_are():
    assert rawjson.array([b'{"a": 1}', str(BIG).encode()]) == f'[{{"a": 1}},{BIG}]'.encode()
