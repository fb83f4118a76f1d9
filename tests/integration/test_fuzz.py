"""Generated hostile input against every route of every function (hypothesis): random and
hostile ids in the path, query strings and JSON bodies, sent as the owner (who gets furthest
into the code). Every answer must be a 4xx with the error envelope, or a success, and its body
valid JSON: never a 500, never a body a client cannot parse."""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import OWNER, ROOT

_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")
HOSTILE_IDS = [
    "__x__",
    "__name__",
    "..",
    ".",
    "a/b",
    "%2e%2e",
    "x" * 1600,
    "\ud800",
    "a\nb",
    "",
    "mb20",
    "Pt1_2_3",
    "0" * 32,
    "all",
    "v2",
    "_deletions",
    "hemibrain",
    "null",
    "-1",
]
HOSTILE_JSON = [
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    "[" * 3000 + "]" * 3000,
    '{"\\ud800": 1}',
    '{"' + "k" * 1600 + '": 1}',
    "{",
    "",
    "null",
    "[]",
    '"text"',
    "1" * 5000,
    '{"kind": "point", "pos": [1.5, 2, 3]}',
    '{"mb20": {"description": 1}}',
    '{"dataset": "__x__", "model_name": "m", "center": [1, 2, 3]}',
    '{"path": "__x__", "description": "d", "public": {"code": "def f(context): pass"}}',
]


def _functions() -> list[str]:
    base = os.path.join(ROOT, "functions")
    return sorted(
        n
        for n in os.listdir(base)
        if os.path.isfile(os.path.join(base, n, "main.py"))
        and "App(" in open(os.path.join(base, n, "main.py")).read()
    )


def _routes(function: str) -> list[tuple[str, str, str]]:
    """The function's route table, from a private copy of its module: collection runs before the
    test environment exists, so nothing loaded here may be shared with the tests
    (tests.utils.load_function caches its modules)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        f"fuzz_{function}", os.path.join(ROOT, "functions", function, "main.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [
        (function, r.method, r.path)
        for r in module.app.routes
        if not r.path.endswith(("/_health", "/_openapi.json", "/_docs", "/_docs/<asset>"))
    ]


ROUTES = [route for function in _functions() for route in _routes(function)]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 70), max_value=1 << 70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
bodies = st.one_of(st.sampled_from(HOSTILE_JSON), json_values.map(json.dumps))
ids = st.one_of(st.sampled_from(HOSTILE_IDS), st.text(max_size=40))
queries = st.dictionaries(
    st.sampled_from(
        [
            "x",
            "y",
            "z",
            "limit",
            "cursor",
            "user",
            "groups",
            "kind",
            "tag",
            "replace",
            "move_key",
            "conditional",
            "full",
            "async",
            "limt",
            "__x__",
        ]
    ),
    st.one_of(
        st.sampled_from(
            ["1", "-1", "1.5", "NaN", "1e400", "", "__x__", "x" * 1600, "true", "99999999999999999999"]
        ),
        st.text(max_size=20),
    ),
    max_size=4,
)


def _path(template: str, values: list[str]) -> str:
    it = iter(values)
    return _PARAM.sub(lambda _: quote(next(it, "x").encode("utf-8", "surrogatepass"), safe=""), template)


@pytest.mark.parametrize("function,method,template", ROUTES, ids=[f"{m} {p}" for _, m, p in ROUTES])
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path_values=st.lists(ids, min_size=2, max_size=2), query=queries, body=bodies)
def test_no_input_gets_a_500_or_an_unparseable_body(
    api, function, method, template, path_values, query, body
):
    path = _path(template, path_values)
    query_string = urlencode(query)
    url = path + ("?" + query_string if query_string else "")
    r = api.call(
        method,
        url,
        user=OWNER,
        data=body.encode("utf-8", "surrogatepass"),
        headers={"Content-Type": "application/json"},
    )
    text = r.get_data()
    assert r.status_code < 500 or r.status_code in (502, 503, 504), (method, url, body[:200], text[:500])
    if r.status_code >= 400:
        envelope = json.loads(text)
        assert (
            envelope["error"] and envelope["message"] and envelope["request_id"] == r.headers["X-Request-Id"]
        )
        if r.status_code >= 500:
            assert r.headers.get("Retry-After") or r.status_code in (502, 504), (method, url, text[:500])
    elif text and r.mimetype == "application/json":
        json.loads(text)
