"""Predictors: regression targets, targets never used as inputs, scoring after schema drift."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline import runner
from pipeline.errors import DataWarning
from pipeline.space import Space
from tests.conftest import demo_spec_dict, make_demo_warehouse, write_spec


@pytest.fixture(scope="module")
def order_totals(tmp_path_factory):
    """orders.total_amount as a regression target; it is the sum over the order's items.
    Module-scoped: the schema-drift test, last in this file, changes the warehouse."""
    tmp_path = tmp_path_factory.mktemp("order_totals")
    small_demo = make_demo_warehouse(tmp_path, scale=0.05)
    data = demo_spec_dict(
        small_demo, tmp_path / "artifacts", training={"steps": 120, "predictor_epochs": 60}
    )
    orders = data["spaces"]["orders"]
    orders["columns"] = {"total_amount": {"target": True}}
    data["spaces"] = {
        "orders": orders,
        "order_items": {**data["spaces"]["order_items"], "references": []},
    }
    spec = write_spec(tmp_path / "s.yaml", data)
    runner.run(spec, progress=False)
    return spec


def test_regression_predictions_with_intervals(order_totals):
    con = duckdb.connect(str(order_totals.warehouse), read_only=True)
    try:
        n_orders = con.execute("select count(*) from main.stg_orders").fetchone()[0]
        rows = con.execute(
            "select count(*), count(*) filter (where interval_low <= prediction "
            "and prediction <= interval_high and probability is null "
            "and probabilities is null) from ml.orders__total_amount_predictions"
        ).fetchone()
        metrics = con.execute(
            "select metrics from ml.training_runs where target = 'total_amount'"
        ).fetchone()[0]
    finally:
        con.close()
    assert rows == (n_orders, n_orders)
    assert '"rmse"' in metrics and '"r2"' in metrics


def test_target_is_never_an_input(order_totals):
    space = Space.load(Path(order_totals.artifacts) / "orders")
    names = {t.name for t in space.model.tokens}
    assert "total_amount" not in names and "total_amount" not in space.codecs
    assert "order_items" in names


def test_missing_column_at_prediction_time_warns_and_still_predicts(order_totals):
    con = duckdb.connect(str(order_totals.warehouse))
    try:
        con.execute(
            "create or replace view main.stg_orders as select * exclude (channel) from raw.orders"
        )
    finally:
        con.close()
    runner.embed(order_totals, "order_items")
    with pytest.warns(DataWarning, match="column channel is missing from main.stg_orders"):
        runner.embed(order_totals, "orders")
    with pytest.warns(DataWarning, match="column channel is missing from main.stg_orders"):
        assert runner.predict(order_totals, "orders", "total_amount") > 0
    con = duckdb.connect(str(order_totals.warehouse), read_only=True)
    try:
        warned = con.execute(
            "select count(*) from ml.orders__total_amount_predictions "
            "where list_contains(warnings, 'column channel is missing from main.stg_orders; "
            "read as NULL until it is back or the space is retrained')"
        ).fetchone()[0]
        total = con.execute("select count(*) from raw.orders").fetchone()[0]
    finally:
        con.close()
    assert warned == total
