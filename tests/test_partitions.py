"""Embeddings and predictions as Dagster partitions (a hash of the key): two partitions
materialized at once, by two `dagster asset materialize` processes, into a DuckLake on a
real PostgreSQL server, give the tables one unpartitioned run gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest

from pipeline import runner
from pipeline.demo import generate_demo_warehouse
from pipeline.errors import SpecError
from pipeline.spaces.upkeep import partition_of
from pipeline.warehouse.connection import Warehouse, fetch_arrow
from tests.conftest import REPO, TWO_SPACES, dbt_on, demo_spec_dict, write_spec

DAGSTER = str(Path(sys.executable).parent / "dagster")


def test_a_partition_the_spec_does_not_have_is_named(tmp_path: Path):
    spec = write_spec(tmp_path / "spaces.yaml", {**TWO_SPACES, "partitions": 4})
    assert partition_of(spec, None) is None
    assert partition_of(spec, 3).where("t", ["id"]) == 'hash(t."id") % 4 = 3'
    with pytest.raises(SpecError, match="partitions.*partition 4 does not exist"):
        partition_of(spec, 4)


def _tables(warehouse: Warehouse) -> dict[str, pa.Table]:
    with warehouse.connect(read_only=True) as con:
        return {
            "embeddings": fetch_arrow(
                con,
                "select customer_id, embedding, row_fingerprint, space_version "
                "from ml.customers_embeddings order by customer_id",
            ),
            "predictions": fetch_arrow(
                con,
                "select customer_id, prediction, probability, split, row_fingerprint "
                "from ml.customers__churned_predictions order by customer_id",
            ),
        }


def _materialize_both(spec_path: Path, asset: str, home: Path) -> None:
    """The two partitions of `asset`, each by its own `dagster asset materialize`, at once."""
    env = {**os.environ, "SPACES_SPEC": str(spec_path), "DAGSTER_HOME": str(home)}
    command = [DAGSTER, "asset", "materialize", "-m", "assets.definitions", "--select", asset]
    processes = [
        subprocess.Popen(
            [*command, "--partition", str(p)], cwd=REPO, env=env, stderr=subprocess.PIPE
        )
        for p in (0, 1)
    ]
    for process in processes:
        assert process.wait() == 0, process.stderr.read().decode()[-4000:]


@pytest.mark.slow
def test_two_partitions_at_once_equal_one_run(postgres, tmp_path: Path):
    lake_data = tmp_path / "lake"
    lake_data.mkdir()
    options = {"data_path": str(lake_data)}
    location = f"ducklake:postgres:{postgres.create_database('partitions')}"
    warehouse = Warehouse(location, options=options)
    generate_demo_warehouse(location, scale=0.05, seed=0, options=options)
    dbt_on(warehouse, "run", "--select", "staging")
    data = {**demo_spec_dict(location, tmp_path / "artifacts"), "warehouse_options": options}
    runner.run(write_spec(tmp_path / "spaces.yaml", data), progress=False)
    whole = _tables(warehouse)

    with warehouse.connect() as con:  # the root's tables, to be written again by partition
        con.execute("drop table ml.customers_embeddings")
        con.execute("drop table ml.customers__churned_predictions")
    spec_path = tmp_path / "partitioned.yaml"
    write_spec(spec_path, {**data, "partitions": 2})  # the models stay current
    home = tmp_path / "dagster_home"
    home.mkdir()
    # the instance's storage is made once first: two processes creating a fresh instance's
    # SQLite tables at once collide ("table runs already exists"), as seen once in CI-like runs
    dg.DagsterInstance.from_config(str(home)).dispose()
    _materialize_both(spec_path, "ml/customers_embeddings", home)
    _materialize_both(spec_path, "ml/customers__churned_predictions", home)
    sliced = _tables(warehouse)

    for name in ("embeddings", "predictions"):
        assert sliced[name].num_rows == whole[name].num_rows == 100
        assert sliced[name].column("customer_id").equals(whole[name].column("customer_id"))
    assert sliced["embeddings"].drop(["embedding"]).equals(whole["embeddings"].drop(["embedding"]))
    np.testing.assert_allclose(
        np.array(sliced["embeddings"].column("embedding").to_pylist()),
        np.array(whole["embeddings"].column("embedding").to_pylist()),
        atol=1e-6,
    )
    assert (
        sliced["predictions"]
        .select(["prediction", "split", "row_fingerprint"])
        .equals(whole["predictions"].select(["prediction", "split", "row_fingerprint"]))
    )
    np.testing.assert_allclose(
        sliced["predictions"].column("probability").to_numpy(),
        whole["predictions"].column("probability").to_numpy(),
        atol=1e-6,
    )
