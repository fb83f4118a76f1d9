"""The layers of the server, lowest first: the kernel (common/'s top-level modules: config,
errors, logs, version, jsonio, names, models, cache) <- storage (common/storage/, the dataset catalog
included: authz checks roles against its records, so it cannot sit with catalog/) <- web and identity
(common/web/, common/identity/) <- catalog and audit (common/catalog/, common/audit.py) <- the
functions (functions/<name>/). A module imports only from its own layer or lower ones, web never
from identity (`http` knows nothing of tokens or roles), and nothing makes an import cycle.
Read from the source, as tests/unit/test_imports.py reads it (an import inside a function counts)."""

from __future__ import annotations

import os

from tests.conftest import ROOT
from tests.unit.test_imports import import_graph

LAYERS = ["kernel", "storage", "web/identity", "catalog/audit", "functions"]
KERNEL = {"config", "errors", "logs", "version", "jsonio", "names", "models", "cache"}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "functions":
        return "functions"
    if module == "common.audit" or parts[1] == "catalog":
        return "catalog/audit"
    if parts[1] in ("web", "identity"):
        return "web/identity"
    if parts[1] == "storage":
        return "storage"
    assert len(parts) == 2 and parts[1] in KERNEL, f"{module} is in no layer: give it a wing or a layer here"
    return "kernel"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of `graph`: its strongly connected components of more than one module
    (Tarjan's algorithm), each sorted; a module importing itself is not an edge here."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _modules(graph: dict[str, set[str]]) -> list[str]:
    """Every module but the packages themselves (common, common.web, ...: docstrings only)."""
    return sorted(m for m in graph if not os.path.isdir(os.path.join(ROOT, *m.split("."))))


def test_every_layer_imports_only_its_own_layer_or_lower_ones():
    graph = import_graph()
    rank = {layer: n for n, layer in enumerate(LAYERS)}
    upward = sorted(
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
        for module in _modules(graph)
        for target in graph[module]
        if target in graph and rank[layer_of(target)] > rank[layer_of(module)]
    )
    assert not upward, upward
    assert {layer_of(m) for m in _modules(graph)} == set(LAYERS)


def test_web_knows_nothing_of_identity():
    graph = import_graph()
    wrong = sorted(
        f"{m} imports {t}"
        for m in graph
        if m.startswith("common.web.")
        for t in graph[m]
        if t.startswith("common.identity.")
    )
    assert not wrong, wrong


def test_there_are_no_import_cycles():
    found = cycles(import_graph())
    assert len(found) == 0, found


def test_the_cycle_counter_counts_cycles():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c", "e"}, "e": set()}) == [
        ["a", "b"],
        ["c", "d"],
    ]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
