"""Shared fixtures: real DuckDB warehouses built from the demo generator and real dbt runs."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from pipeline import runner
from pipeline.demo import generate_demo_warehouse
from pipeline.predictors import PredictorFeatures, read_target, train_predictor
from pipeline.spec import Spec, load_spec
from pipeline.warehouse.connection import Warehouse, fetch_arrow
from tests.postgres_server import PostgresServer

REPO = Path(__file__).resolve().parent.parent
DBT = str(Path(sys.executable).parent / "dbt")
QUALITY_SCALE = 0.4


TWO_SPACES = {
    "warehouse": "w.duckdb",
    "spaces": {
        "customers": {
            "table": "main.customers",
            "key": "customer_id",
            "children": [{"space": "orders", "foreign_key": "customer_id"}],
        },
        "orders": {"table": "main.orders", "key": "order_id"},
    },
}
"""The smallest hierarchical spec (customers <- orders), for tests of the spec itself."""


def two_spaces_with(change) -> dict:
    """A copy of TWO_SPACES after `change(data)`."""
    data = copy.deepcopy(TWO_SPACES)
    change(data)
    return data


def dbt(*args: str, warehouse: Path | Warehouse) -> subprocess.CompletedProcess:
    """Run dbt as a subprocess (it must not share our DuckDB connection) against a DuckDB
    file or any `Warehouse` (file, lake, PostgreSQL), with the environment Dagster gives it."""
    if not isinstance(warehouse, Warehouse):
        warehouse = Warehouse(warehouse)
    env = {**os.environ, **warehouse.backend.dbt_environment()}
    sql = str(REPO / "sql")
    return subprocess.run(
        [DBT, *args, "--project-dir", sql, "--profiles-dir", sql],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def dbt_on(warehouse: Warehouse, *args: str) -> None:
    """`dbt` against any warehouse; it must pass."""
    result = dbt(*args, warehouse=warehouse)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def build_staging(warehouse: Path) -> None:
    result = dbt("run", "--select", "staging", warehouse=warehouse)
    assert result.returncode == 0, result.stdout + result.stderr


def demo_spec_dict(warehouse: Path, artifacts: Path, **overrides) -> dict:
    """The repository's spaces.yaml pointed at a test warehouse."""
    data = yaml.safe_load((REPO / "spaces.yaml").read_text())
    data.update(warehouse=str(warehouse), artifacts=str(artifacts), **overrides)
    return data


def parent_only_spec_dict(warehouse: Path, artifacts: Path, output_schema: str) -> dict:
    """The demo's customers space alone: no children, no references."""
    data = demo_spec_dict(warehouse, artifacts, output_schema=output_schema)
    customers = data["spaces"]["customers"]
    customers.pop("children"), customers.pop("references")
    data["spaces"] = {"customers": customers}
    return data


def held_out_churn_auc(spec: Spec, split_seeds: tuple[int, ...]) -> list[float]:
    """Out-of-fold churn AUC of an MLP on the stored embeddings alone, one per fold seed."""
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        table = fetch_arrow(
            con,
            f"select e.customer_id, e.embedding, c.churned "
            f"from {spec.output_schema}.customers_embeddings e "
            "join main.stg_customers c using (customer_id) order by customer_id",
        )
    finally:
        con.close()
    embeddings = np.array(table.column("embedding").to_pylist(), np.float32)
    features = PredictorFeatures(embeddings, np.zeros((len(embeddings), 0)), [], [], [])
    target = read_target("customers", "churned", "boolean", table.column("churned"))
    keys = table.select(["customer_id"])
    return [
        train_predictor(features, target, keys, seed, model="mlp").metrics["auc"]
        for seed in split_seeds
    ]


def write_tables(path: Path, tables: dict) -> None:
    """Create each Arrow table of `tables` (name -> pa.Table) in the DuckDB file `path`."""
    con = duckdb.connect(str(path))
    try:
        for name, table in tables.items():
            con.register("incoming", table)
            con.execute(f"create table {name} as select * from incoming")
            con.unregister("incoming")
    finally:
        con.close()


def write_spec(path: Path, data: dict) -> Spec:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_spec(path)


def make_demo_warehouse(folder: Path, scale: float, seed: int = 0) -> Path:
    warehouse = folder / "warehouse.duckdb"
    generate_demo_warehouse(warehouse, scale=scale, seed=seed)
    con = duckdb.connect(str(warehouse))
    try:  # new customers have no label yet: they must still be scored
        con.execute("update raw.customers set churned = null where customer_id % 25 = 0")
    finally:
        con.close()
    build_staging(warehouse)
    return warehouse


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for this test session (started on first use)."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def quality_warehouse(tmp_path_factory) -> Path:
    return make_demo_warehouse(tmp_path_factory.mktemp("quality"), QUALITY_SCALE)


@pytest.fixture(scope="session")
def hierarchical_run(quality_warehouse: Path) -> Spec:
    """The whole demo spec, zero configuration, run end to end once for the session."""
    folder = quality_warehouse.parent
    spec = write_spec(
        folder / "spaces.yaml", demo_spec_dict(quality_warehouse, folder / "artifacts")
    )
    runner.run(spec, progress=False)
    return spec


@pytest.fixture(scope="session")
def parent_only_run(quality_warehouse: Path, hierarchical_run: Spec) -> Spec:
    """The customers table alone (no children, no references), same warehouse and targets."""
    folder = quality_warehouse.parent
    data = parent_only_spec_dict(quality_warehouse, folder / "artifacts_flat", "ml_flat")
    spec = write_spec(folder / "flat.yaml", data)
    runner.run(spec, progress=False)
    return spec


@pytest.fixture
def small_demo(tmp_path: Path) -> Path:
    """A tiny demo warehouse for fast tests that change data."""
    return make_demo_warehouse(tmp_path, scale=0.05)


FAST_TRAINING = {"steps": 25, "predictor_epochs": 10}
