"""The package's modules import each other without cycles (a cycle forces a hidden import inside a function)."""

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
