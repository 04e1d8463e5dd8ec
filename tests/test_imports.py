"""The package's modules import each other without cycles (a cycle forces a hidden import inside a function),
and only down the house: each module imports its own floor or those below (docs/architecture.md, "The floors")."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import segbench
import segbench.datasets
import segbench.methods

ROOTS = {"segbench": Path(segbench.__file__).parent, "segbench.methods": Path(segbench.methods.__file__).parent,
         "segbench.datasets": Path(segbench.datasets.__file__).parent}


def _modules() -> dict[str, Path]:
    """Every module of the installed package, by dotted name (``segbench.methods`` lives in another folder)."""
    found = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found.setdefault(name, path)
    return found


def import_graph() -> nx.DiGraph:
    """Edges ``a -> b`` for every import of module ``b`` by module ``a``, at any depth of ``a``'s code."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule sub; `from mod import name` imports mod.
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            graph.add_edges_from((name, t) for t in targets if t in modules and t != name)
    return graph


def test_import_graph_sees_the_package():
    graph = import_graph()
    assert graph.has_edge("segbench.datasets.io", "segbench.datasets.cache")  # the graph is not empty by mistake
    assert len(graph) > 40


def test_no_import_cycles():
    # Packages import their submodules to fill the registries, and submodules import siblings through the
    # package path, so edges into a package's own __init__ are not cycles that matter: drop them.
    graph = import_graph()
    graph.remove_edges_from([(a, b) for a, b in graph.edges if a.startswith(b + ".")])
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles}"


#: The floors of the house, bottom first: a module may import its own floor and those below, never above.
FLOORS = [
    ("ground", ("segbench", "segbench.options", "segbench.registry", "segbench.files")),
    ("measure", ("segbench.measure",)),
    ("datasets", ("segbench.datasets",)),
    ("methods", ("segbench.methods",)),
    ("run", ("segbench.run",)),
    ("report", ("segbench.report",)),
    ("cli", ("segbench.cli",)),
]


def floor_of(module: str) -> int:
    """The floor of a module: the one whose longest listed prefix names it (``segbench`` alone: the package)."""
    best = max(((len(p), i) for i, (_, prefixes) in enumerate(FLOORS) for p in prefixes
                if module == p or (p != "segbench" and module.startswith(p + "."))), default=None)
    if best is None:
        raise LookupError(f"{module} is on no floor: add it to FLOORS in tests/test_imports.py and docs/architecture.md")
    return best[1]


def upward_imports(graph: nx.DiGraph) -> list[str]:
    return [f"{a} ({FLOORS[floor_of(a)][0]}) imports {b} ({FLOORS[floor_of(b)][0]})"
            for a, b in graph.edges if floor_of(b) > floor_of(a)]


def test_every_module_is_on_a_floor():
    for module in import_graph():
        floor_of(module)  # raises for a module no floor lists


def test_imports_run_only_down_the_house():
    assert not upward_imports(import_graph())


def test_measure_imports_nothing_of_run_report_datasets_or_methods():
    graph = import_graph()
    measure = [m for m in graph if m.startswith("segbench.measure")]
    assert "segbench.measure.latency" in measure and "segbench.measure.metrics" in measure
    above = ("segbench.run", "segbench.report", "segbench.datasets", "segbench.methods", "segbench.cli")
    assert not [(a, b) for a in measure for b in graph.successors(a) if b.startswith(above)]


def test_the_floor_check_fails_on_an_upward_import():
    graph = import_graph()
    graph.add_edge("segbench.measure.metrics", "segbench.run.records")  # as if metrics imported the runner
    graph.add_edge("segbench.datasets.io", "segbench.methods.base")
    assert sorted(upward_imports(graph)) == [
        "segbench.datasets.io (datasets) imports segbench.methods.base (methods)",
        "segbench.measure.metrics (measure) imports segbench.run.records (run)",
    ]
