"""The import graph of ``src/pyxos``: no cycles, and dependencies point down the layers.

Every ``import`` in every module counts, wherever it is written: at the top, inside a
function, or under ``if TYPE_CHECKING:`` (a cycle closed only for the type checker is still
two modules that cannot be understood one without the other).

The layers, lowest first; a package may import its own modules and any package on a lower
layer, never one on its own layer or above:

0. ``core`` (the pure protocol), ``resp`` (the RESP codec), ``check`` (histories and the
   linearizability checker), ``session_table`` (exactly-once sessions, shared by ``kv`` and
   ``runtime``): they import no other part of pyxos;
1. ``storage``, ``transport``, ``kv``, and ``faults`` (the registry of named bugs, which
   sits on ``core``'s bug hooks so that the simulator and the runtime share it);
2. ``runtime`` (one node: core + storage + transport), ``sim`` (the deterministic
   simulator: core + storage + faults, no asyncio);
3. ``server`` (the client and admin ports of a node), ``client``, ``replicated`` (library
   mode), ``certs`` (certificates for the TLS that ``transport`` speaks);
4. ``launch`` (node processes and local clusters), ``benchmark``, and the package's public
   API (``pyxos/__init__.py``);
5. ``chaos`` (fault injection on real clusters, checked with ``check``);
6. ``cli``, and ``__main__`` above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyxos

SRC = Path(pyxos.__file__).parent.parent

LAYERS: dict[str, int] = {
    "core": 0,
    "resp": 0,
    "check": 0,
    "session_table": 0,
    "storage": 1,
    "transport": 1,
    "kv": 1,
    "faults": 1,
    "runtime": 2,
    "sim": 2,
    "server": 3,
    "client": 3,
    "replicated": 3,
    "certs": 3,
    "launch": 4,
    "benchmark": 4,
    "": 4,  # pyxos/__init__.py, the public API
    "chaos": 5,
    "cli": 6,
    "__main__": 7,
}

KNOWN_CYCLES: list[frozenset[str]] = []
"""Import cycles allowed for now: none. A cycle closed only under TYPE_CHECKING (a module
of a split class naming the class it was split from) gives way to a protocol of what it
uses, as ClientPort did for INFO and CONFIG, ServerPort for the connection's mixins and
ClusterView for the simulator's workloads. Should one ever be listed here, the test fails
once it is gone, so that it leaves the list."""


Graph = dict[str, dict[str, bool]]
"""Module -> each pyxos module it imports -> whether only under ``if TYPE_CHECKING:``."""


def _module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for inner in node.body:
                    guarded.update(id(n) for n in ast.walk(inner))
    return guarded


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement may refer to (module or module.attribute)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".")[: None if is_package else -1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    return [f"{source}.{a.name}" for a in node.names]


def import_graph(root: Path, top: str = "pyxos") -> Graph:
    """The import graph of the package ``top`` found under ``root``."""
    files = {_module_name(p, root): p for p in sorted((root / top).rglob("*.py"))}
    modules = {name for name, _ in files}

    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    graph: Graph = {}
    for (module, is_package), path in files.items():
        tree = ast.parse(path.read_text())
        guarded = _type_checking_nodes(tree)
        targets = graph.setdefault(module, {})
        for node in ast.walk(tree):
            for name in _imported(node, module, is_package):
                target = owner(name)
                if target.startswith(top) and target != module:
                    targets[target] = targets.get(target, True) and id(node) in guarded
    return graph


def runtime_edges(graph: Graph) -> dict[str, set[str]]:
    """The edges that exist when the program runs (not only for the type checker)."""
    return {m: {t for t, typing_only in ts.items() if not typing_only} for m, ts in graph.items()}


def all_edges(graph: Graph) -> dict[str, set[str]]:
    return {m: set(ts) for m, ts in graph.items()}


def cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> tuple[str, int]:
    parts = module.split(".")
    package = parts[1] if len(parts) > 1 else ""
    return package, LAYERS[package]


def upward_imports(edges: dict[str, set[str]]) -> list[str]:
    """Imports between packages that do not point to a lower layer."""
    wrong = []
    for module, targets in sorted(edges.items()):
        package, layer = layer_of(module)
        for target in sorted(targets):
            target_package, target_layer = layer_of(target)
            if target_package != package and target_layer >= layer:
                wrong.append(f"{module} (layer {layer}) imports {target} (layer {target_layer})")
    return wrong


def test_every_package_has_a_layer() -> None:
    graph = import_graph(SRC)
    packages = {layer_of(m)[0] for m in all_edges(graph)}
    assert packages <= set(LAYERS)
    on_disk = {p.stem for p in (SRC / "pyxos").iterdir() if p.suffix == ".py" or p.is_dir()}
    assert on_disk - {"__init__", "__pycache__"} <= set(LAYERS)


def test_no_import_cycles_when_the_program_runs() -> None:
    assert cycles(runtime_edges(import_graph(SRC))) == []


def test_no_import_cycles_beyond_the_known_type_checking_ones() -> None:
    found = set(cycles(all_edges(import_graph(SRC))))
    assert found - set(KNOWN_CYCLES) == set(), "new import cycle"
    assert set(KNOWN_CYCLES) - found == set(), "a known cycle is gone: remove it from the list"


def test_dependencies_point_down_the_layers() -> None:
    assert upward_imports(all_edges(import_graph(SRC))) == []


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pyxos" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/a.py": "from pyxos.core.b import x\n",
            "core/b.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from pyxos.core import a\n"
                "def f():\n"
                "    from pyxos.runtime.node import Node\n"
            ),
            "runtime/__init__.py": "",
            "runtime/node.py": "from . import shell\n",
            "runtime/shell.py": "from .node import Node\n",
        },
    )
    graph = import_graph(root)
    assert set(cycles(all_edges(graph))) == {
        frozenset({"pyxos.core.a", "pyxos.core.b"}),
        frozenset({"pyxos.runtime.node", "pyxos.runtime.shell"}),
    }
    assert cycles(runtime_edges(graph)) == [
        frozenset({"pyxos.runtime.node", "pyxos.runtime.shell"})
    ]
    assert upward_imports(all_edges(graph)) == [
        "pyxos.core.b (layer 0) imports pyxos.runtime.node (layer 2)"
    ]
