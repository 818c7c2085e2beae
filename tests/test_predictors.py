"""Predictors: regression targets, targets never used as inputs, scoring in batches, the
predictions table's columns, tree contributions, scoring after schema drift."""

from __future__ import annotations

from pathlib import Path

import duckdb
import lightgbm
import numpy as np
import pyarrow as pa
import pytest
import torch
import torch.nn.functional as F

from pipeline import runner
from pipeline.errors import DataWarning
from pipeline.predictors import Predictor
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.gbdt import path_contributions, summed_paths
from pipeline.predictors.predictions import OOD_WARNING_SIGMA, predictions_table, score_rows
from pipeline.spaces.space import Space
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


def test_scoring_in_batches_gives_the_same_scores(order_totals):
    space = Space.load(runner.space_folder(order_totals, "orders"))
    predictor = Predictor.load(runner.predictor_folder(order_totals, "orders", "total_amount"))
    warehouse = runner.warehouse_of(order_totals)
    with warehouse.connect() as con:
        inputs = space.read_inputs(warehouse, con, order_totals)
    whole = score_rows(space, predictor, inputs, batch_size=inputs.n_rows)
    batched = score_rows(space, predictor, inputs, batch_size=37)
    np.testing.assert_allclose(batched.raw, whole.raw, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(batched.ood, whole.ood, rtol=1e-5, atol=1e-5)
    assert list(batched.farthest) == list(whole.farthest)
    assert list(batched.importance) == list(whole.importance) and whole.importance
    for name, values in whole.importance.items():
        np.testing.assert_allclose(batched.importance[name], values, rtol=1e-4, atol=1e-6)
    # rows whose output is known (the out-of-fold rows) are not scored; the others are
    # scored as before, whatever batch they fall in
    known = np.arange(inputs.n_rows) % 3 == 0
    partly = score_rows(space, predictor, inputs, batch_size=37, known=known)
    assert not partly.raw[known].any()
    np.testing.assert_allclose(partly.raw[~known], whole.raw[~known], rtol=1e-5, atol=1e-6)
    for name, values in whole.importance.items():
        np.testing.assert_allclose(partly.importance[name], values, rtol=1e-4, atol=1e-6)


def _predictor(classes: list, positive: int | None) -> Predictor:
    reference = np.eye(4, dtype=np.float32)
    return Predictor(
        space="s",
        target="t",
        task="classification",
        model="mlp",
        models=[],
        classes=classes,
        positive=positive,
        ood_reference=reference,
        ood_mean=3 * np.sqrt(2) / 4,  # a reference row: 0 to itself, sqrt(2) to the others
        ood_std=0.1,
        input_ranges={"a": [0.0, 1.0, 0.5]},
        target_type="string",
        space_version="s1",
        version="p1",
    )


def test_predictions_table_columns_row_by_row():
    """The MAP and LIST columns, built from whole arrays, hold per row what the contract
    says: the probabilities by class label, the importance shares in input order, the shared
    warnings, then an out-of-distribution one where the row is far out."""
    predictor = _predictor(["no", "maybe", "yes"], None)
    n = 7
    rng = np.random.default_rng(0)
    embeddings = np.tile(np.eye(4, dtype=np.float32), (2, 1))[:n]
    embeddings[[2, 5]] = [[3.0, 3.0, 3.0, 3.0], [9.0, 0, 0, 0]]  # far from every reference row
    table = rng.random((n, 1))
    table[3, 0] = 4.0  # 6 sigmas above the training range of `a`
    features = PredictorFeatures(embeddings, table, ["a"], ["a"], [])
    raw = rng.normal(size=(n, 3))
    importance = {"a": rng.random(n), "orders": rng.random(n), "embedding": np.zeros(n)}
    drift = ["column b is new in main.t since the space was trained; not used until retrained"]
    keys = pa.table({"id": pa.array(np.arange(n))})
    split = np.array(["train", "unlabelled"] * 4, dtype=object)[:n]
    out = predictions_table(predictor, keys, raw, features, split, importance, drift)

    sigma, farthest = predictor.ood_sigma(features)
    assert list(np.flatnonzero(sigma > OOD_WARNING_SIGMA)) == [2, 3, 5]
    assert list(farthest) == [None, None, None, "a", None, None, None]
    expected_warnings = []
    for i in range(n):
        row = list(drift)
        if sigma[i] > OOD_WARNING_SIGMA:
            why = " (a is outside its training range)" if i == 3 else ""
            row.append(f"out of distribution: {sigma[i]:.1f} sigma from the training rows{why}")
        expected_warnings.append(row)
    assert out.column("warnings").to_pylist() == expected_warnings
    probabilities = predictor.probabilities(raw)
    assert out.column("probabilities").to_pylist() == [
        list(zip(["no", "maybe", "yes"], row.tolist(), strict=True)) for row in probabilities
    ]
    shares = np.stack(list(importance.values()), axis=1)
    shares /= shares.sum(axis=1, keepdims=True)
    assert out.column("feature_importance").to_pylist() == [
        list(zip(importance, row.tolist(), strict=True)) for row in shares
    ]
    assert out.column("prediction").to_pylist() == [
        predictor.classes[i] for i in predictor.decide(probabilities)
    ]
    assert out.column("split").to_pylist() == list(split)
    assert set(out.column("predictor_version").to_pylist()) == {"p1"}
    assert out.schema.field("warnings").type == pa.list_(pa.string())
    assert out.schema.field("feature_importance").type == pa.map_(pa.string(), pa.float64())

    # no warnings, no importance, no rows: the same columns and types
    quiet = predictions_table(
        predictor, keys, raw, features, split, {}, [], ood=(np.zeros(n), np.full(n, None))
    )
    assert quiet.column("warnings").to_pylist() == [[]] * n
    assert quiet.column("feature_importance").to_pylist() == [[]] * n
    empty = predictions_table(
        predictor,
        keys.slice(0, 0),
        raw[:0],
        None,
        split[:0],
        {},
        drift,
        ood=(np.zeros(0), np.full(0, None)),
    )
    assert empty.num_rows == 0 and empty.schema == out.schema


@pytest.mark.parametrize("objective", ["binary", "regression", "multiclass"])
def test_tree_path_contributions_add_up_to_the_raw_score(objective: str):
    """Per row and per output, the path contributions of the trees add up to the raw score
    less the trees' mean output over the training rows (TreeSHAP's base value)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4))
    x[::5, 2] = np.nan
    y = {
        "binary": (x[:, 0] + np.nan_to_num(x[:, 2]) > 0).astype(float),
        "regression": 2 * x[:, 0] + x[:, 1] ** 2,
        "multiclass": (x[:, 0] > 0) + (x[:, 1] > 0.5).astype(float),
    }[objective]
    params = {"objective": objective, "verbose": -1, "num_leaves": 7, "num_threads": 1}
    if objective == "multiclass":
        params["num_class"] = 3
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), 20)
    paths = path_contributions(booster)
    leaves = booster.predict(x, pred_leaf=True)
    raw = booster.predict(x, raw_score=True).reshape(len(x), -1)
    base = booster.predict(x, pred_contrib=True).reshape(len(x), raw.shape[1], -1)[0, :, -1]
    outputs = booster.num_model_per_iteration()
    n_trees = leaves.shape[1]
    rows = torch.from_numpy(leaves.astype(np.int64) + np.arange(n_trees) * (len(paths) // n_trees))
    for output in range(outputs):
        signed = F.embedding_bag(rows[:, output::outputs], paths, mode="sum").numpy()
        np.testing.assert_allclose(signed.sum(axis=1) + base[output], raw[:, output], atol=1e-9)
    assert summed_paths(paths, leaves, outputs).shape == x.shape


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
