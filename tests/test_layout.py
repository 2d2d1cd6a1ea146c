"""The tree shows the node/host line: the import graph (every import, function-level ones too) has no cycles, the
node side (swinctl.job, swinctl.models) imports nothing of the submit host's side, and no CLI verb module imports
another's."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "swinctl"
# What the node side may import besides itself: stdlib-only leaves that both sides read (no swinctl imports but
# each other's), checked below.
SHARED_LEAVES = {"swinctl.errors", "swinctl.results", "swinctl.textlog", "swinctl.param_names"}
NODE_SIDE = ("swinctl.job", "swinctl.models")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The swinctl module an import names (`from swinctl.runs import sync` -> swinctl.runs.sync)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] or [base]
        else:
            continue
        for name in names:
            target = _target(name) if name.startswith("swinctl") else None
            if target and target != module:
                out.add(target)
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), and modules that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def test_the_import_graph_has_no_cycles():
    # A package's __init__ that imports its submodules to register them (cli, models) is not a cycle with them
    # unless a submodule imports the package's __init__ back for something it defines.
    graph = {m: {t for t in targets if not (m == _package_of(m) and t.startswith(m + "."))}
             for m, targets in GRAPH.items()}
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_node_side_imports_nothing_of_the_submit_host():
    node = [m for m in MODULES if m.startswith(NODE_SIDE)]
    assert "swinctl.job.task" in node and "swinctl.models.preemption" in node
    outside = {m: sorted(t for t in GRAPH[m] if not t.startswith(NODE_SIDE) and t not in SHARED_LEAVES)
               for m in node}
    assert {m: t for m, t in outside.items() if t} == {}


def test_the_shared_leaves_import_only_each_other():
    for leaf in SHARED_LEAVES:
        assert GRAPH[leaf] <= SHARED_LEAVES, leaf


def test_no_cli_verb_module_imports_another_and_nothing_imports_the_cli():
    shared = ("swinctl.cli.app", "swinctl.cli.__main__")
    verbs = [m for m in MODULES if m.startswith("swinctl.cli.") and m not in shared]
    assert len(verbs) >= 5
    for verb in verbs:
        assert {t for t in GRAPH[verb] if t.startswith("swinctl.cli")} <= {"swinctl.cli.app"}, verb
    users = [m for m, targets in GRAPH.items() if not m.startswith("swinctl.cli") and
             any(t.startswith("swinctl.cli") for t in targets)]
    assert users == []


def test_the_submit_host_lifecycle_does_not_import_the_verbs_that_use_it():
    for module in (m for m in MODULES if m.startswith("swinctl.runs")):
        assert not {t for t in GRAPH[module]
                    if t.startswith(("swinctl.status", "swinctl.report", "swinctl.sweep", "swinctl.cli"))}, module
