"""Imports run one way: functions -> common, and inside common from the request pipeline down to
the stores. Read from the source (ast), so an import hidden in a function body counts too."""

from __future__ import annotations

import ast
import os

from tests.conftest import ROOT

LAZY_REASON = "# lazy:"


def _modules() -> dict[str, str]:
    """Module name -> file, for every module of common/ and functions/."""
    found = {}
    for base in ("common", "functions"):
        for directory, _, files in os.walk(os.path.join(ROOT, base)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[module.removesuffix(".__init__")] = path
    return found


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def _imports(path: str, known: dict[str, str]):
    """(imported local module, line, at module level?) for each import that runs."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)

    def walk(node: ast.AST, top: bool):
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue  # never runs: a type-only import cannot make a cycle
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name in known:
                        yield alias.name, child.lineno, top
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    name = f"{child.module}.{alias.name}"
                    if name in known:  # from common import authz
                        yield name, child.lineno, top
                    elif child.module in known:  # from common.http import App
                        yield child.module, child.lineno, top
            else:
                nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                yield from walk(child, top and not nested)

    yield from walk(tree, True)


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    return {
        module: {target for target, _, _ in _imports(path, known) if target not in (module, "common")}
        for module, path in known.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def lazy_imports() -> list[tuple[str, int, str]]:
    """(file, line, reason) of every local import inside a function body."""
    known = _modules()
    found = []
    for path in known.values():
        with open(path) as f:
            lines = f.read().splitlines()
        for _, line, top in _imports(path, known):
            if top:
                continue
            here, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
            reason = here.partition(LAZY_REASON)[2] or (
                above.partition(LAZY_REASON)[2] if above.startswith("#") else ""
            )
            found.append((os.path.relpath(path, ROOT), line, reason.strip()))
    return sorted(set(found))


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert "common.http" in graph and "functions.datasets.main" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_common_never_imports_a_function():
    graph = import_graph()
    wrong = {
        m: sorted(t for t in ts if t.startswith("functions."))
        for m, ts in graph.items()
        if m.startswith("common")
    }
    assert not any(wrong.values()), wrong


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    # The finder itself, on a graph with a cycle three long, and on one without.
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    # A function-level import is an edge like any other.
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from common import http\n")
    assert list(_imports(str(source), {"common.http": ""})) == [("common.http", 2, False)]


def test_every_lazy_local_import_says_why():
    unexplained = [f"{path}:{line}" for path, line, reason in lazy_imports() if not reason]
    assert not unexplained, (
        f"a local import inside a function needs a '{LAZY_REASON} <reason>' comment: {unexplained}"
    )
