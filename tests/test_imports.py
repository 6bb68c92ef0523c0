"""The import graph of nnlab, read from the source with ``ast``: no cycles, no upward imports.

Every ``import`` in ``src/nnlab`` counts, at module level or inside a function
(a lazy import is still a dependency), except those under ``if TYPE_CHECKING:``
(annotations only, never run). The layers, lowest first, are ARCHITECTURE.md's
data flow; a module may import its own layer and the layers below it:

    errors -> config -> runs -> reporting -> data, models, numpy_mlp -> engine
    -> experiments -> api -> cli

Besides: ``reporting`` never imports ``engine`` or ``experiments`` (it reads run
folders through ``runs.py``), and ``models`` never import the config (model
classes take plain keyword arguments; only annotations may name ``ModelConfig``).
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A pattern "nnlab.x" covers the module nnlab.x and, for a package, everything
# under it; "nnlab" alone is the package's __init__ (it re-exports the API).
LAYERS: list[tuple[str, list[str]]] = [
    ("errors", ["nnlab.errors", "nnlab.version", "nnlab.extras", "nnlab.code_digest"]),
    ("config", ["nnlab.config"]),
    ("runs", ["nnlab.runs"]),
    ("reporting", ["nnlab.reporting"]),
    ("data, models, numpy_mlp", ["nnlab.data", "nnlab.models", "nnlab.numpy_mlp"]),
    ("engine", ["nnlab.engine"]),
    ("experiments", ["nnlab.experiments"]),
    ("api", ["nnlab.api", "nnlab.results", "nnlab"]),
    ("cli", ["nnlab.cli", "nnlab.__main__"]),
]

# Upward imports that are part of the design, each with its reason; allowed inside
# functions only (a module-level one would load the upper layer with the lower one).
# Config validation reads the registries' name tables (ARCHITECTURE.md: config.py
# "reads the registries' name tables; never imports torch").
ALLOWED_LAZY_UPWARD = {
    ("nnlab.config.check", "nnlab.data"): "dataset names for data.name",
    ("nnlab.config.check", "nnlab.models.registry"): "model names for model.name",
    ("nnlab.config.check", "nnlab.engine.optim"): "optimizer and schedule names",
}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported nnlab module
    path: Path
    line: int
    lazy: bool  # inside a function

    def __str__(self) -> str:
        where = self.path.relative_to(SRC).as_posix()
        return f"{where}:{self.line} {self.source} -> {self.target}" + (
            " (in a function)" if self.lazy else ""
        )


def module_files(root: Path = SRC) -> dict[str, Path]:
    """Module name -> file, for every .py under root/nnlab (packages by their __init__)."""
    found = {}
    for path in sorted((root / "nnlab").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str]):
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.depth = 0  # > 0 inside a function
        self.found: list[tuple[str, int, bool]] = []

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):  # annotations only: never runs
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: from .x import y, from .. import z
            anchor = self.package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(sub if sub in self.modules else base, node.lineno)

    def _add(self, name: str, line: int) -> None:
        if name != "nnlab" and not name.startswith("nnlab."):
            return
        while name not in self.modules and "." in name:  # nnlab.x.Class -> nnlab.x
            name = name.rpartition(".")[0]
        self.found.append((name, line, self.depth > 0))


def import_edges(root: Path = SRC) -> list[Edge]:
    files = module_files(root)
    edges = []
    for module, path in files.items():
        visitor = _ImportVisitor(module, path.name == "__init__.py", set(files))
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        edges += [Edge(module, t, path, line, lazy) for t, line, lazy in visitor.found]
    return list(dict.fromkeys(edges))  # one per line: `from x import a, b` is one edge


def layer_of(module: str) -> int | None:
    for i, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if pattern == "nnlab":
                if module == "nnlab":
                    return i
            elif fnmatch.fnmatchcase(module, pattern) or module.startswith(pattern + "."):
                return i
    return None


def find_cycles(edges: list[Edge]) -> list[list[str]]:
    """The cycles of the graph: its strongly connected components (Tarjan), and in each the
    shortest cycle through every module, as module paths that end where they start."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = set()
    for component in components:  # the shortest cycle through each module of the component
        for start in component:
            cycle = _shortest_cycle(graph, component, start)
            i = cycle.index(min(cycle[:-1]))  # one rotation per cycle: from its smallest module
            cycles.add(tuple(cycle[i:-1] + cycle[: i + 1]))
    return sorted(list(c) for c in cycles)


def _shortest_cycle(graph: dict[str, set[str]], component: set[str], start: str) -> list[str]:
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: a shortest way back to start exists inside the component
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"{start} is in a strongly connected component but on no cycle")


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines)


# --------------------------------------------------------------------------- the tests


def test_every_module_has_a_layer():
    missing = [m for m in module_files() if layer_of(m) is None]
    assert not missing, _report("modules in no layer of LAYERS (add them there)", missing)


def test_no_import_cycles():
    cycles = find_cycles(import_edges())
    # Many cycles often share one upward import (the one to fix): show the shortest of each.
    shortest: dict[tuple, str] = {}
    for cycle in sorted(cycles, key=len):
        steps = list(zip(cycle, cycle[1:], strict=False))
        upward = tuple(f"{a} -> {b}" for a, b in steps if (layer_of(b) or 0) > (layer_of(a) or 0))
        line = " -> ".join(cycle) + (f"  [upward: {', '.join(upward)}]" if upward else "")
        shortest.setdefault(upward or tuple(cycle), line)
    lines = list(shortest.values())
    assert not lines, _report(f"import cycles ({len(cycles)} in all; one per cause)", lines)


def test_imports_point_down_the_layers():
    bad = []
    for e in import_edges():
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is None or dst is None or dst <= src:
            continue
        if e.lazy and (e.source, e.target) in ALLOWED_LAZY_UPWARD:
            continue
        bad.append(f"{e}: {LAYERS[src][0]} imports upward into {LAYERS[dst][0]}")
    assert not bad, _report("upward imports", bad)


def test_reporting_never_imports_engine_or_experiments():
    bad = [
        str(e)
        for e in import_edges()
        if e.source.startswith("nnlab.reporting")
        and e.target.startswith(("nnlab.engine", "nnlab.experiments"))
    ]
    assert not bad, _report("reporting imports the engine or the experiments", bad)


def test_models_never_import_the_config():
    bad = [
        str(e)
        for e in import_edges()
        if e.source.startswith("nnlab.models") and layer_of(e.target) == 1
    ]
    assert not bad, _report("models import the config (only TYPE_CHECKING may)", bad)


def test_the_graph_sees_lazy_relative_and_skips_type_checking(tmp_path):
    # what the tests above rely on, on a made-up package
    pkg = tmp_path / "nnlab"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from nnlab.c import X\n"
        "def f():\n    from nnlab.sub import b\n"
    )
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..c import Y\nimport nnlab.a\n")
    (pkg / "c.py").write_text("")
    edges = {(e.source, e.target, e.lazy) for e in import_edges(tmp_path)}
    assert edges == {
        ("nnlab.a", "nnlab.sub.b", True),
        ("nnlab.sub.b", "nnlab.c", False),
        ("nnlab.sub.b", "nnlab.a", False),
    }
    assert find_cycles(import_edges(tmp_path)) == [["nnlab.a", "nnlab.sub.b", "nnlab.a"]]
