"""Imports run one way: functions -> common, and inside common from the request pipeline down to
the stores. Read from the source (ast), so an import hidden in a function body counts too."""

from __future__ import annotations

import ast
import os

from tests.conftest import ROOT

LAZY_REASON = "# lazy:"


def _modules(bases: tuple[str, ...] = ("common", "functions")) -> dict[str, str]:
    """Module name -> file, for every module of common/ and functions/ (or of `bases`)."""
    found = {}
    for base in bases:
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


def import_graph(bases: tuple[str, ...] = ("common", "functions")) -> dict[str, set[str]]:
    known = _modules(bases)
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
    assert "common.web.http" in graph and "functions.datasets.main" in graph
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


def _reached(graph: dict[str, set[str]], starts: list[str]) -> set[str]:
    seen, todo = set(), list(starts)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += graph.get(module, ())
    return seen


def _function_of(module: str) -> str | None:
    """`twins` for functions.twins.calls (and for functions.twins.main)."""
    parts = module.split(".")
    return parts[1] if parts[0] == "functions" and len(parts) > 2 else None


def common_users() -> dict[str, set[str]]:
    """Each module of common/ -> the functions (`functions/<name>`, any of its modules) and the
    tools modules whose imports reach it, directly or through other modules."""
    bases = ("common", "functions", "tools")
    graph = import_graph(bases)
    users: dict[str, set[str]] = {
        m: set()
        for m, path in _modules(bases).items()
        if m.startswith("common.") and not path.endswith("__init__.py")
    }
    starts: dict[str, list[str]] = {}
    for module in graph:
        if (name := _function_of(module)) is not None:
            starts.setdefault(f"functions/{name}", []).append(module)
        elif module.startswith("tools."):
            starts[module] = [module]
    for user, modules in starts.items():
        for reached in _reached(graph, modules):
            if reached in users:
                users[reached].add(user)
    return users


def test_common_holds_only_what_two_or_more_functions_or_tools_use():
    """common/ is the shared layer: a module only one function uses lives in that function's
    folder (functions/<name>/x.py, packaged with it by tools/package.py)."""
    users = common_users()
    assert "common.web.http" in users and "common.catalog.sigindex" in users
    lonely = {module: sorted(who) for module, who in users.items() if len(who) < 2}
    assert not lonely, f"used by fewer than two functions and tools, move them to their function: {lonely}"


def test_no_function_imports_another_function():
    graph = import_graph()
    wrong = {
        module: sorted(t for t in targets if _function_of(t) not in (None, _function_of(module)))
        for module, targets in graph.items()
        if _function_of(module)
    }
    assert not any(wrong.values()), {m: t for m, t in wrong.items() if t}
    assert "functions.twins.calls" in graph["functions.twins.main"]  # a function's own modules are seen
