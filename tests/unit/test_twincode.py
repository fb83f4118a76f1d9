"""functions.twins.source: what an endpoint's source must look like, its parameters as JSON schema,
allowed imports, and arguments checked strictly before anything runs."""

from __future__ import annotations

import pytest

from functions.twins.source import (
    CodeError,
    Definition,
    allowed_modules_for_endpoints,
    analyse,
    check_arguments,
    same_parameters,
)

ALLOWED = frozenset({"boto3"})


def schema(code: str) -> dict:
    return analyse(code, [], ALLOWED).parameters


def test_one_function_with_keyword_parameters_becomes_a_schema():
    d = analyse(
        '"""doc"""\nimport json\n\ndef query(context, sql: str, limit: int = 10, *, verbose: bool = False):\n'
        "    return json.dumps(sql)\n",
        [],
        ALLOWED,
    )
    assert d.name == "query"
    assert d.parameters == {
        "type": "object",
        "additionalProperties": False,
        "required": ["sql"],
        "properties": {
            "sql": {"type": "string"},
            "limit": {"type": "integer", "default": 10},
            "verbose": {"type": "boolean", "default": False},
        },
    }


@pytest.mark.parametrize(
    "annotation, expected",
    [
        ("float", {"type": "number"}),
        ("list", {"type": "array"}),
        ("dict", {"type": "object"}),
        ("list[str]", {"type": "array", "items": {"type": "string"}}),
        ("dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        ("int | None", {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        ("Optional[str]", {"anyOf": [{"type": "string"}, {"type": "null"}]}),
        ("typing.Any", {}),
        ("'int'", {"type": "integer"}),
    ],
)
def test_simple_annotations(annotation, expected):
    assert schema(f"def f(context, x: {annotation}):\n    pass\n")["properties"]["x"] == expected


def test_an_unannotated_parameter_takes_any_json_value():
    assert schema("def f(context, x):\n    pass\n")["properties"]["x"] == {}


@pytest.mark.parametrize(
    "code, line, words",
    [
        ("def f(context:\n", 1, "never closed"),
        ("x = 1\ndef f(context):\n    pass\n", 1, "not a Assign"),
        ("def f(context):\n    pass\ndef g(context):\n    pass\n", 3, "exactly one function"),
        ("import os\n", None, "exactly one function, not 0"),
        ("class F:\n    pass\n", 1, "ClassDef"),
        ("async def f(context):\n    pass\n", 1, "AsyncFunctionDef"),
        ("def f(sql):\n    pass\n", 1, "must be `context`"),
        ("def f(context, *args):\n    pass\n", 1, "*args"),
        ("def f(context, **kw):\n    pass\n", 1, "**kwargs"),
        ("def f(context, /, x):\n    pass\n", 1, "positional-only"),
        ("def f(context, x: set):\n    pass\n", 1, "annotation 'set'"),
        ("def f(context, x=len):\n    pass\n", 1, "literal"),
        ("def f(context, x: int = 'a'):\n    pass\n", 1, "is not an integer"),
    ],
)
def test_source_that_is_not_one_endpoint_function_is_refused_with_its_line(code, line, words):
    with pytest.raises(CodeError) as err:
        analyse(code, [], ALLOWED)
    assert err.value.line == line
    assert words in err.value.message
    if line:
        assert str(err.value).startswith(f"line {line}: ")


@pytest.mark.parametrize(
    "code, line",
    [
        ("import socket\nimport google.cloud.firestore\ndef f(context):\n    pass\n", 2),
        ("def f(context):\n    import numpy as np\n", 2),
        ("def f(context):\n    from google.cloud import storage\n", 2),
        ("def f(context):\n    return __import__('subprocess2')\n", 2),
        ("def f(context):\n    import importlib\n    return importlib.import_module('requests')\n", 3),
        ("def f(context, name):\n    return __import__(name)\n", 2),
        ("def f(context):\n    from . import secrets\n", 2),
    ],
)
def test_imports_outside_the_standard_library_and_the_declared_list_are_refused(code, line):
    with pytest.raises(CodeError) as err:
        analyse(code, [], ALLOWED)
    assert err.value.line == line
    assert "import" in err.value.message


def test_standard_library_and_declared_imports_are_allowed_at_any_depth():
    analyse(
        "import json, sqlite3\nfrom collections import Counter\n\ndef f(context):\n"
        "    import boto3\n    import botocore  # noqa\n    return __import__('csv')\n",
        [],
        frozenset({"boto3", "botocore"}),
    )


def test_helpers_are_one_function_each_and_checked_like_the_code():
    analyse(
        "def f(context):\n    return context.code.twice(2)\n", ["def twice(x):\n    return 2 * x\n"], ALLOWED
    )
    with pytest.raises(CodeError, match="helper 1: import of 'requests'"):
        analyse("def f(context):\n    pass\n", ["import requests\ndef h():\n    pass\n"], ALLOWED)
    with pytest.raises(CodeError, match="helper 2 may hold one function definition"):
        analyse("def f(context):\n    pass\n", ["def h():\n    pass\n", "x = 1\n"], ALLOWED)
    with pytest.raises(CodeError, match="defined twice"):
        analyse("def f(context):\n    pass\n", ["def f():\n    pass\n"], ALLOWED)


def test_mock_and_private_must_declare_the_same_parameters():
    mock = analyse("def q(context, sql: str, limit: int = 5):\n    pass\n", [], ALLOWED)
    private = analyse("def query(context, sql: str, limit: int = 5):\n    return 1\n", [], ALLOWED)
    other = analyse("def q(context, sql: str, limit: int = 50):\n    pass\n", [], ALLOWED)
    assert same_parameters(mock, private)
    assert not same_parameters(mock, other)


def test_arguments_are_checked_strictly():
    d = analyse(
        "def f(context, n: int, x: float = 1.0, tags: list[str] = [], flag: bool = False, "
        "opt: str | None = None):\n    pass\n",
        [],
        ALLOWED,
    )
    assert check_arguments(d, {"n": 1}) == []
    assert check_arguments(d, {"n": 1, "x": 2, "tags": ["a"], "flag": True, "opt": None}) == []
    problems = check_arguments(d, {"n": 1.0, "x": True, "tags": ["a", 1], "flag": 1, "opt": 3, "zzz": 1})
    assert {(p["loc"][0], p["type"]) for p in problems} == {
        ("n", "wrong_type"),
        ("x", "wrong_type"),
        ("tags", "wrong_type"),
        ("flag", "wrong_type"),
        ("opt", "wrong_type"),
        ("zzz", "extra_forbidden"),
    }
    assert check_arguments(d, {}) == [{"loc": ["n"], "message": "missing argument", "type": "missing"}]
    assert check_arguments(Definition("f", d.parameters), {"n": True})[0]["message"] == "expected an integer"


def test_the_declared_libraries_are_read_from_the_twins_function():
    assert "boto3" in allowed_modules_for_endpoints()
