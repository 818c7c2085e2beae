"""The package's layout rules that can be checked by reading the code."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAREHOUSE_MODULE = REPO / "pipeline" / "warehouse.py"


def _modules() -> list[Path]:
    return sorted([*(REPO / "pipeline").rglob("*.py"), *(REPO / "assets").rglob("*.py")])


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_warehouse_module_talks_to_the_database_driver():
    importers = [p.relative_to(REPO) for p in _modules() if "duckdb" in _imports(p)]
    assert importers == [WAREHOUSE_MODULE.relative_to(REPO)]


def test_connections_are_opened_in_one_place():
    calls = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "connect"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "duckdb"
            ):
                calls.append((path.relative_to(REPO), node.lineno))
    assert len(calls) == 1 and calls[0][0] == WAREHOUSE_MODULE.relative_to(REPO), calls
