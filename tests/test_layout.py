"""The package's layout rules that can be checked by reading the code."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WAREHOUSE_MODULE = REPO / "pipeline" / "warehouse" / "connection.py"

LAYERS = [
    {"pipeline.errors", "pipeline.encoders", "pipeline.spec"},
    {"pipeline.warehouse", "pipeline.store"},
    {"pipeline.understanding"},
    {"pipeline.spaces"},
    {"pipeline.predictors"},
]
"""Lowest first: a module imports only from its own layer and the layers before it; the
runner, the command line and the rest of the top level may import any of them."""


def _modules() -> list[Path]:
    return sorted([*(REPO / "pipeline").rglob("*.py"), *(REPO / "assets").rglob("*.py")])


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            if node.module == "pipeline":  # from pipeline import runner
                names |= {f"pipeline.{alias.name}" for alias in node.names}
    return names


def _layer(module: str) -> int:
    """The module's layer; len(LAYERS) for the top level (the package itself included)."""
    for rank, layer in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return rank
    return len(LAYERS)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_only_the_warehouse_module_talks_to_the_database_driver():
    importers = [
        p.relative_to(REPO)
        for p in _modules()
        if "duckdb" in {m.split(".")[0] for m in _imported_modules(p)}
    ]
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


def test_no_module_imports_upward():
    upward = []
    for path in (REPO / "pipeline").rglob("*.py"):
        module = _module_name(path)
        for imported in _imported_modules(path):
            if imported.startswith("pipeline.") and _layer(imported) > _layer(module):
                upward.append(f"{module} imports {imported}")
    assert not upward, upward


def test_the_layer_rule_catches_an_upward_import():
    assert _layer("pipeline.spaces.model") > _layer("pipeline.warehouse.connection")
    assert _layer("pipeline.runner") == len(LAYERS)
    assert _layer("pipeline.spaces_extra") == len(LAYERS)  # a prefix is not a package


def test_the_model_and_its_inputs_load_without_the_database_driver():
    """The neural model, its training and the plain input types never pull warehouse I/O."""
    code = (
        "import sys\n"
        "import pipeline.spaces.model, pipeline.spaces.training, pipeline.spaces.inputs\n"
        "import pipeline.encoders.text_vectors, pipeline.predictors.mlp\n"
        "loaded = [m for m in sys.modules if m == 'duckdb' or m.startswith('pipeline.warehouse')]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""
