"""Imports run one way: functions -> common, and inside common from the request pipeline down to
the stores. Read from the source (ast), so an import hidden in a function body counts too. And an
import inside a function earns its place: it says why (or is of a HEAVY package) and defers
something a function would otherwise load at start-up."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

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
                    elif child.module in known:  # from common.web.http import App
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


# Packages imported inside the functions that use them, never at start-up: each takes tens to
# hundreds of milliseconds to import on top of what every function loads anyway, and only some
# routes (or the first call) need it, so a function's cold start (the import of its main.py)
# does not pay for it. Their imports need no comment each; any other function-level import says
# why in a LAZY_REASON comment on its line or the line above, and every one of them must defer
# something (test_no_function_level_import_defers_what_is_loaded_anyway).
HEAVY = {
    "google": "the Google Cloud clients: Firestore, Cloud Storage, google-auth, with grpc and protobuf",
    "requests": "HTTP to Google's certificates, Pub/Sub and the transfer service, at first use",
    "cachecontrol": "the cache of Google's certificates, at the first Google token",
    "cryptography": "only the dev-mode token issuer",
    "email_validator": "only where an email is normalized",
    "numpy": "only the signatures routes",
}


def _reason(lines: list[str], line: int) -> str:
    here, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
    reason = here.partition(LAZY_REASON)[2] or (
        above.partition(LAZY_REASON)[2] if above.startswith("#") else ""
    )
    return reason.strip()


def function_level_imports(path: str) -> list[tuple[int, str, tuple[str, ...], str]]:
    """(line, module, names imported from it, reason) of each import inside a function body of
    `path` (`import a.b`: ("a.b", ()); `from a import b, c`: ("a", ("b", "c")))."""
    with open(path) as f:
        source = f.read()
    lines = source.splitlines()
    found = []

    def walk(node: ast.AST, top: bool):
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                continue
            if not top and isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((child.lineno, alias.name, (), _reason(lines, child.lineno)))
            elif not top and isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = tuple(a.name for a in child.names)
                found.append((child.lineno, child.module, names, _reason(lines, child.lineno)))
            else:
                nested = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                walk(child, top and not nested)

    walk(ast.parse(source, path), True)
    return found


def all_function_level_imports() -> list[tuple[str, str, int, str, tuple[str, ...], str]]:
    """(module, file, line, imported module, names, reason) across common/ and functions/."""
    return [
        (module, os.path.relpath(path, ROOT), *found)
        for module, path in sorted(_modules().items())
        for found in function_level_imports(path)
    ]


def cold_start_core() -> list[str]:
    """The local modules every function imports at start-up: its main.py's imports at module
    level, theirs, and so on (functions-framework imports main.py, so it is loaded too)."""
    known = _modules()
    top = {m: {t for t, _, at_top in _imports(p, known) if at_top and t != m} for m, p in known.items()}

    def closure(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            if (m := todo.pop()) not in seen:
                seen.add(m)
                todo.extend(top.get(m, ()))
        return seen

    mains = [m for m in known if m.startswith("functions.") and m.endswith(".main")]
    return sorted(set.intersection(*(closure(m) for m in mains)) - set(mains))


_LOADED_ANYWAY = """
import importlib.util, json, sys
loaded = set(sys.modules)
def submodule(parent, name):
    try:
        return importlib.util.find_spec(parent + "." + name) is not None
    except (ImportError, ValueError):
        return False
print(json.dumps([
    [module, list(names)] for module, names in CANDIDATES
    if module in loaded and all(module + "." + n in loaded or not submodule(module, n) for n in names)
]))
"""


def loaded_anyway(argv: list[str], start: str, candidates: list[tuple[str, tuple[str, ...]]]) -> set:
    """Which (module, names) of `candidates` a fresh `argv` process has loaded once `start` (its
    start-up: Python source) has run: importing them there again would load nothing new."""
    script = start + "\nCANDIDATES = " + repr(candidates) + _LOADED_ANYWAY
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": ROOT}
    done = subprocess.run(
        [*argv, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return {(module, tuple(names)) for module, names in json.loads(done.stdout)}


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


def test_every_function_level_import_says_why():
    """A function-level import is of a HEAVY package, or says why in a LAZY_REASON comment; the
    standard library and pydantic never count as heavy (a function-level import of pydantic says why:
    roles, for one, loads none before its first answer)."""
    assert not {"pydantic", *sys.stdlib_module_names} & set(HEAVY)
    unexplained = [
        f"{path}:{line} {imported}"
        for _, path, line, imported, _, reason in all_function_level_imports()
        if imported.split(".")[0] not in HEAVY and not reason
    ]
    assert not unexplained, (
        f"an import inside a function is of a package in HEAVY or has a '{LAZY_REASON} <reason>' "
        f"comment (or is a plain import at the top of the module): {unexplained}"
    )
    used = {imported.split(".")[0] for *_, imported, _, _ in all_function_level_imports()}
    assert set(HEAVY) <= used, f"HEAVY names packages no function-level import needs: {set(HEAVY) - used}"


def test_no_function_level_import_defers_what_is_loaded_anyway():
    """A function-level import that defers nothing buys nothing: in a fresh process that has
    imported what every function imports at start-up (or, for the sandbox worker, run the
    worker's own source as `python -I -S -c` does), the module it names is loaded already."""
    imports = all_function_level_imports()
    entries = {
        "function": (
            [sys.executable],
            "import functions_framework\n" + "".join(f"import {m}\n" for m in cold_start_core()),
            [i for i in imports if i[0] != "functions.twins.sandbox_worker"],
        ),
        "sandbox worker": (
            [sys.executable, "-I", "-S"],
            f"exec(compile(open({os.path.join(ROOT, 'functions', 'twins', 'sandbox_worker.py')!r}).read(), 'worker', 'exec'))",
            [i for i in imports if i[0] == "functions.twins.sandbox_worker"],
        ),
    }
    pointless = []
    for entry, (argv, start, found) in entries.items():
        if found:
            anyway = loaded_anyway(argv, start, sorted({(i[3], i[4]) for i in found}))
            pointless += [
                f"{path}:{line} {imported} (a {entry} has it loaded)"
                for _, path, line, imported, names, _ in found
                if (imported, names) in anyway
            ]
    assert not pointless, f"make these plain imports at the top of their modules: {pointless}"


def test_the_deferral_check_sees_what_a_start_up_loads(tmp_path):
    """The check itself: json after `import json`, not csv; a name from a loaded module is
    loaded, a submodule not yet imported is not."""
    anyway = loaded_anyway(
        [sys.executable],
        "import json, email",
        [("json", ()), ("csv", ()), ("json", ("loads",)), ("email", ("mime",))],
    )
    assert anyway == {("json", ()), ("json", ("loads",))}
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    # lazy: why\n    from a.b import c, d\n    import e.f\n")
    assert function_level_imports(str(source)) == [(5, "a.b", ("c", "d"), "why"), (6, "e.f", (), "")]


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
