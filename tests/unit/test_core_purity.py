"""The protocol core stays pure: no I/O, clocks, threads or global randomness."""

import ast
from pathlib import Path

import pyxos.core

CORE = Path(pyxos.core.__file__).parent
FORBIDDEN = {"asyncio", "socket", "time", "os", "random", "threading", "selectors", "subprocess"}
UPPER = {
    "runtime",
    "storage",
    "transport",
    "server",
    "client",
    "kv",
    "cli",
    "sim",
    "chaos",
    "check",
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_nothing_impure() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 6
    for f in files:
        for name in imported_modules(f):
            top = name.split(".")[0]
            assert top not in FORBIDDEN, f"{f.name} imports {name}"
            if top == "pyxos":
                assert name.split(".")[1] == "core", f"{f.name} imports upper layer {name}"
                assert not (set(name.split(".")) & UPPER)


def test_purity_check_would_catch_an_impure_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom pyxos.runtime import x\n")
    assert {"time", "pyxos.runtime"} <= imported_modules(bad)
