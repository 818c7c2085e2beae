"""The demo end to end on each warehouse: raw tables, dbt staging, `run`, dbt marts, on a
DuckDB file, a DuckLake (PostgreSQL catalog, Parquet files) and a PostgreSQL database, all
real. The same data and seed give the same embeddings and predictions on all three."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline import runner
from pipeline.demo import generate_demo_warehouse
from pipeline.spec import Spec
from pipeline.warehouse.connection import Warehouse, fetch_arrow
from tests.conftest import REPO, dbt_on, demo_spec_dict, write_spec

SCALE = 0.05
UNLABELLED = "update raw.customers set churned = null where customer_id % 25 = 0"


def _demo_run(tmp_path: Path, location: str, options: dict) -> tuple[Spec, pa.Table]:
    """Demo tables -> dbt staging -> run -> dbt marts; returns the spec and what a
    user reads back: embeddings, predictions and the mart, by customer."""
    warehouse = Warehouse(location, options=options)
    generate_demo_warehouse(location, scale=SCALE, seed=0, options=options)
    with warehouse.connect() as con:
        con.execute(UNLABELLED)
    dbt_on(warehouse, "run", "--select", "staging")
    data = demo_spec_dict(location, tmp_path / "artifacts")
    if options:
        data["warehouse_options"] = options
    spec = write_spec(tmp_path / "spaces.yaml", data)
    runner.run(spec, progress=False)
    dbt_on(warehouse, "build", "--select", "marts")
    with warehouse.connect(read_only=True) as con:
        read = fetch_arrow(
            con,
            "select e.customer_id, e.embedding, (p.probabilities::json ->> 'true')::double "
            "as p_true, m.churn_probability, len(m.similar_customers) as similar "
            "from ml.customers_embeddings e "
            "join ml.customers__churned_predictions p using (customer_id) "
            "join marts.customer_churn_risk m using (customer_id) order by e.customer_id",
        )
    again = runner.run(spec, progress=False)
    assert all(s.get("rows_embedded", 0) == 0 for s in again.values() if "rows_embedded" in s)
    return spec, read


def _side_by_side(spec_path: Path, warehouse: Warehouse) -> None:
    """Two processes train (and embed) two spaces at once while this one keeps writing a
    raw table: on a lake nobody waits for a lock and every write lands."""
    runs = "select count(*) from ml.training_runs where space in ('products', 'regions')"
    with warehouse.connect() as con:
        before = con.execute(runs).fetchone()[0]
    command = [sys.executable, "-m", "pipeline", "train", "--spec", str(spec_path)]
    processes = [
        subprocess.Popen([*command, "--space", space], cwd=REPO, stderr=subprocess.PIPE)
        for space in ("products", "regions")
    ]
    outside = 0
    with warehouse.connect() as con:
        while any(p.poll() is None for p in processes):
            con.execute(
                "insert into raw.regions select region_id + 1000 + ?, name, country, timezone "
                "from raw.regions where region_id < 1000 limit 1",
                [outside],
            )
            outside += 1
            time.sleep(0.2)
    for process in processes:
        assert process.wait() == 0, process.stderr.read().decode()[-3000:]
    with warehouse.connect(read_only=True) as con:
        written = con.execute("select count(*) from raw.regions where region_id >= 1000")
        assert written.fetchone()[0] == outside > 0
        assert con.execute(runs).fetchone()[0] == before + 2


@pytest.mark.slow
def test_demo_end_to_end_on_each_warehouse(postgres, tmp_path: Path):
    (tmp_path / "file").mkdir()
    _, on_file = _demo_run(tmp_path / "file", str(tmp_path / "file" / "warehouse.duckdb"), {})
    lake_data = tmp_path / "lake" / "data"
    lake_data.mkdir(parents=True)
    lake = f"ducklake:postgres:{postgres.create_database('demo_lake')}"
    lake_spec, on_lake = _demo_run(tmp_path / "lake", lake, {"data_path": str(lake_data)})
    _side_by_side(tmp_path / "lake" / "spaces.yaml", Warehouse.of(lake_spec))
    (tmp_path / "pg").mkdir()
    _, on_postgres = _demo_run(tmp_path / "pg", f"postgres:{postgres.create_database('demo')}", {})

    assert on_file.num_rows == 100
    assert any(lake_data.rglob("*.parquet"))  # the lake's data are Parquet files
    reference = np.array(on_file.column("embedding").to_pylist(), np.float32)
    for read in (on_lake, on_postgres):
        assert read.column("customer_id").equals(on_file.column("customer_id"))
        embeddings = np.array(read.column("embedding").to_pylist(), np.float32)
        np.testing.assert_allclose(embeddings, reference, atol=1e-6)
        np.testing.assert_allclose(
            read.column("p_true").to_numpy(), on_file.column("p_true").to_numpy(), atol=1e-9
        )
        assert read.column("churn_probability").equals(read.column("p_true"))
        assert set(read.column("similar").to_pylist()) == {5}
