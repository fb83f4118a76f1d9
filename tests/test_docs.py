"""docs/api.md is the contract users read: it names every route the functions serve, and no other."""

from __future__ import annotations

import os
import re

from tests.conftest import ROOT

DOC = os.path.join(ROOT, "docs", "api.md")
_ROUTE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)")
_PARAM = re.compile(r"\{[^}]*\}")
_META = ("/_health", "/_openapi.json")


def _functions() -> list[str]:
    base = os.path.join(ROOT, "functions")
    return sorted(
        name for name in os.listdir(base) if "App(" in open(os.path.join(base, name, "main.py")).read()
    )


def _served(api) -> set[tuple[str, str]]:
    served = set()
    for function in _functions():
        document = api.get(f"/{function}/_openapi.json").get_json()
        for path, operations in document["paths"].items():
            if path.endswith(_META):
                continue
            served.update((method.upper(), _PARAM.sub("{}", path)) for method in operations)
    return served


def _documented() -> set[tuple[str, str]]:
    with open(DOC) as f:
        return {
            (method, _PARAM.sub("{}", path.rstrip("/")))
            for method, path in _ROUTE.findall(f.read())
            if not path.startswith("/<function>")
        }


def test_every_served_route_is_documented_and_every_documented_route_served(api):
    served, documented = _served(api), _documented()
    assert not served - documented, f"routes missing from docs/api.md: {sorted(served - documented)}"
    assert not documented - served, f"docs/api.md names routes nobody serves: {sorted(documented - served)}"


def test_the_readme_points_at_the_contract_in_the_repository():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert "docs/api.md" in readme
    assert "../shared" not in readme
