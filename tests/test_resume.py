"""A `run` killed with SIGKILL and started again keeps what it had finished (models made
current, rows written) and ends where an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline import runner
from tests.conftest import FAST_TRAINING, REPO, demo_spec_dict, write_spec

TABLES = {
    "products_embeddings": "product_id",
    "orders_embeddings": "order_id",
    "customers_embeddings": "customer_id",
    "customers__churned_predictions": "customer_id",
}


def _read(warehouse: Path, schema: str) -> dict[str, tuple[list, np.ndarray, list]]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        out = {}
        for table, key in TABLES.items():
            value = "embedding" if "embeddings" in table else "probability"
            rows = con.execute(
                f"select {key}, {value}, row_fingerprint from {schema}.{table} order by {key}"
            ).fetchall()
            out[table] = (
                [r[0] for r in rows],
                np.array([r[1] for r in rows]),
                [r[2] for r in rows],
            )
        return out
    finally:
        con.close()


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(small_demo: Path, tmp_path):
    def spec_for(schema: str):
        data = demo_spec_dict(
            small_demo, tmp_path / schema, output_schema=schema, training=FAST_TRAINING
        )
        return write_spec(tmp_path / f"{schema}.yaml", data)

    whole, resumed = spec_for("ml_whole"), spec_for("ml_resumed")
    runner.run(whole, progress=False)

    command = [sys.executable, "-m", "pipeline", "run", "--spec", str(tmp_path / "ml_resumed.yaml")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    made_current = tmp_path / "ml_resumed" / "orders" / "CURRENT"
    deadline = time.monotonic() + 600
    while not made_current.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "ml_resumed" / "customers" / "CURRENT").exists()

    summary = runner.run(resumed, progress=False)
    kept = {name for name, s in summary.items() if s["trained"] is None}
    assert {"products", "order_items", "orders"} <= kept  # made current before the kill
    assert summary["customers"]["trained"] == "it has no model yet"

    expected, found = _read(small_demo, "ml_whole"), _read(small_demo, "ml_resumed")
    for table in TABLES:
        keys, values, fingerprints = found[table]
        assert keys == expected[table][0] and fingerprints == expected[table][2], table
        np.testing.assert_allclose(values, expected[table][1], atol=1e-5, err_msg=table)
