"""The command line, as a user runs it: exit codes and messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import build_staging, demo_spec_dict, write_spec


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, check=False
    )


def test_demo_then_validate_then_bad_spec(tmp_path: Path):
    warehouse = tmp_path / "warehouse.duckdb"
    made = cli("demo", "--warehouse", str(warehouse), "--scale", "0.05", "--seed", "3")
    assert made.returncode == 0, made.stderr
    assert "raw.customers" in made.stdout
    build_staging(warehouse)
    spec = tmp_path / "spaces.yaml"
    write_spec(spec, demo_spec_dict(warehouse, tmp_path / "artifacts"))
    checked = cli("validate", "--spec", str(spec))
    assert checked.returncode == 0, checked.stderr
    assert "customers <- orders [ok]" in checked.stdout
    data = demo_spec_dict(warehouse, tmp_path / "artifacts")
    data["spaces"]["orders"]["key"] = "customer_id"
    spec.write_text(yaml.safe_dump(data))
    failed = cli("validate", "--spec", str(spec))
    assert failed.returncode == 2
    assert "spaces.orders.key: 'customer_id' is not unique" in failed.stderr
