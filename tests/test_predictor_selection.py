"""Cross-fitting, candidate choice and targets in their own values, on planted arrays."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipeline.errors import DataError
from pipeline.predictors import PredictorFeatures, blend, leakage, read_target, train_predictor
from pipeline.predictors.gbdt import GradientBoosted, feature_fraction
from pipeline.predictors.leakage import rank_auc
from pipeline.predictors.predictor import Predictor
from pipeline.predictors.reads import time_order
from pipeline.predictors.selection import assign_folds, cross_fit, n_folds
from pipeline.spaces.reads import create_rows_table
from pipeline.spec import parse_spec

N = 400


def _planted(seed: int = 0) -> tuple[PredictorFeatures, np.ndarray]:
    """Embeddings that carry a weak signal; a table column (a child sum) that carries a strong
    one. The label is 0/1."""
    rng = np.random.default_rng(seed)
    child_sum = rng.lognormal(3, 1, N)
    label = (child_sum > np.median(child_sum)).astype(np.int32)
    embeddings = rng.normal(size=(N, 8)).astype(np.float32)
    embeddings[:, 0] += 0.3 * label
    table = np.stack([child_sum, rng.normal(size=N)], axis=1)
    features = PredictorFeatures(
        embeddings, table, ["orders/amount/sum", "age"], ["orders", "age"], []
    )
    return features, label


def _keys() -> pa.Table:
    return pa.table({"customer_id": pa.array(np.arange(N), pa.int32())})


@pytest.mark.parametrize("model", ["gbdt", "gbdt_aggregates", "mlp"])
def test_flipping_one_folds_labels_leaves_its_out_of_fold_scores_unchanged(model: str) -> None:
    features, label = _planted()
    target = read_target("customers", "churned", "boolean", pa.chunked_array([label]))
    folds = assign_folds(target, seed=0)
    first = train_predictor(features, target, _keys(), seed=0, model=model, epochs=30)

    flipped = label.copy()
    flipped[folds == 0] = 1 - flipped[folds == 0]
    target_flipped = read_target("customers", "churned", "boolean", pa.chunked_array([flipped]))
    assert (assign_folds(target_flipped, seed=0) == folds).all()
    second = train_predictor(features, target_flipped, _keys(), seed=0, model=model, epochs=30)

    def raw(predictor) -> np.ndarray:
        return np.array(predictor.out_of_fold.column("raw").to_pylist())

    fold0 = np.flatnonzero(folds == 0)
    others = np.flatnonzero(folds > 0)
    np.testing.assert_array_equal(raw(first)[fold0], raw(second)[fold0])
    assert not np.allclose(raw(first)[others], raw(second)[others])


def test_every_candidate_is_scored_and_the_best_kept() -> None:
    features, label = _planted()
    target = read_target("customers", "churned", "boolean", pa.chunked_array([label]))
    predictor = train_predictor(features, target, _keys(), seed=0, epochs=30)
    scores = {c["name"]: c["score"] for c in predictor.metrics["candidates"]}
    assert set(scores) == {"gbdt", "gbdt_aggregates", "mlp", "gbdt_blend"}
    assert predictor.model == max(scores, key=scores.get)
    assert predictor.model in ("gbdt", "gbdt_aggregates", "gbdt_blend")
    assert min(scores["gbdt"], scores["gbdt_aggregates"]) > 0.95 and scores["mlp"] < 0.9
    assert predictor.metrics["auc"] > 0.95 and predictor.metrics["validation_rows"] == N
    contributions = predictor.contributions(features)
    assert contributions["orders"].mean() > 5 * contributions["age"].mean()


def test_the_blend_is_the_mean_of_the_two_trees_and_survives_saving(tmp_path) -> None:
    features, label = _planted(seed=3)
    target = read_target("customers", "churned", "boolean", pa.chunked_array([label]))
    folds = assign_folds(target, seed=0)
    trees = [
        cross_fit(GradientBoosted(n, a), features, target, folds, 0)
        for n, a in (("gbdt", 8), ("gbdt_aggregates", 0))
    ]
    blended = blend.blend(trees, target)
    assert blended.name == "gbdt_blend" and len(blended.models) == len(trees[0].models)
    np.testing.assert_allclose(
        blended.out_of_fold, (trees[0].out_of_fold + trees[1].out_of_fold) / 2
    )
    assert blended.score != trees[0].score and blended.score != trees[1].score
    assert blend.blend(trees[:1], target) is None  # one tree alone is no blend

    forced = train_predictor(features, target, _keys(), seed=0, model="gbdt_blend")
    assert forced.model == "gbdt_blend"
    assert {c["name"] for c in forced.metrics["candidates"]} == {*blend.PARTS, "gbdt_blend"}
    np.testing.assert_allclose(
        np.array(forced.out_of_fold.column("raw").to_pylist()), blended.out_of_fold
    )
    groups = forced.contributions(features)
    assert {"embedding", "orders", "age"} <= set(groups)
    assert groups["orders"].mean() > 5 * groups["age"].mean()

    forced.save(tmp_path / "p")
    loaded = Predictor.load(tmp_path / "p")
    assert loaded.model == "gbdt_blend"
    np.testing.assert_array_equal(loaded.raw(features), forced.raw(features))
    assert loaded.training_record()["steps"] == forced.training_record()["steps"] > 0


def test_time_ordered_folds_validate_on_the_latest_rows() -> None:
    _, label = _planted()
    target = read_target("customers", "churned", "boolean", pa.chunked_array([label]))
    time_order = np.random.default_rng(1).permutation(N).astype(np.float64)
    folds = assign_folds(target, seed=0, time_order=time_order)
    latest = folds == folds.max()
    assert time_order[latest].min() > time_order[~latest].max()
    features, _ = _planted()
    predictor = train_predictor(features, target, _keys(), 0, model="gbdt", time_order=time_order)
    # the earliest block scores nothing: no earlier rows trained a model for it
    assert predictor.metrics["validation_rows"] == int((folds >= 1).sum()) < N
    assert predictor.metrics["validation"].startswith("time-ordered")
    # rows to come are scored by one model on every labelled row; a blend refits both trees
    blended = train_predictor(
        features, target, _keys(), 0, model="gbdt_blend", time_order=time_order
    )
    assert len(blended.models) == 1 and len(blended.models[0].parts) == 2


@pytest.mark.parametrize(
    ("values", "arrow_type", "classes", "positive"),
    [
        ([0, 1, 1, None], pa.int32(), [0, 1], 1),
        ([True, False, None, True], pa.bool_(), [False, True], 1),
        (["yes", "no", "no", None], pa.string(), ["no", "yes"], 1),
        (["gold", "silver", "bronze", "gold"], pa.string(), ["bronze", "gold", "silver"], None),
    ],
)
def test_targets_keep_their_own_values(values, arrow_type, classes, positive) -> None:
    kind = "category" if len(classes) > 2 else "boolean"
    target = read_target("s", "t", kind, pa.chunked_array([pa.array(values * 5, arrow_type)]))
    assert target.classes == classes and target.positive == positive
    assert target.arrow_type == arrow_type
    assert int(target.known.sum()) == sum(v is not None for v in values) * 5


def test_a_target_with_one_class_is_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"spaces\.s\.columns\.t: every known target is '1'"):
        read_target("s", "t", "boolean", pa.chunked_array([pa.array([1] * 20, pa.int32())]))


def test_the_leak_scan_reads_a_sample_of_a_large_table(monkeypatch) -> None:
    """Past MAX_ROWS labelled rows the scan reads a seeded sample: a column that equals the
    label is still flagged, an honest strong one is not, and the result repeats."""
    monkeypatch.setattr(leakage, "MAX_ROWS", 300)
    rng = np.random.default_rng(3)
    n = 2000
    label = rng.integers(0, 2, n)
    strong = label + rng.normal(scale=0.8, size=n)  # AUC about 0.8 alone
    table = np.stack([label * 10.0 + rng.normal(scale=0.01, size=n), strong], axis=1)
    features = PredictorFeatures(
        np.zeros((n, 2), np.float32), table, ["refund", "visits"], ["refund", "visits"], []
    )
    target = read_target("s", "churned", "boolean", pa.chunked_array([pa.array(label == 1)]))
    leaks = leakage.find_leaks(features, target, seed=0)
    assert [leak.input for leak in leaks] == ["refund"]
    assert leaks == leakage.find_leaks(features, target, seed=0)


def test_trees_on_a_wide_table_sample_its_inputs_and_still_find_the_signal() -> None:
    """Past 125 inputs each tree reads 100 of them (not 80%): on 300 noise statistics and one
    planted one, the trees still score the planted signal out of fold."""
    assert feature_fraction(40) == feature_fraction(125) == 0.8
    assert round(feature_fraction(452) * 452) == 100 and feature_fraction(5000) == 0.2
    rng = np.random.default_rng(5)
    label = rng.integers(0, 2, N)
    table = rng.normal(size=(N, 301))
    table[:, 137] += 2.0 * label
    features = PredictorFeatures(
        np.zeros((N, 0), np.float32),
        table,
        [f"orders/s{i}" for i in range(301)],
        ["orders"] * 301,
        [],
    )
    target = read_target("s", "churned", "boolean", pa.chunked_array([pa.array(label == 1)]))
    folds = assign_folds(target, seed=0)
    fitted = cross_fit(GradientBoosted("gbdt_aggregates", 0), features, target, folds, 0)
    hyper = fitted.models[0].record["hyperparameters"]
    assert hyper["feature_fraction"] == pytest.approx(100 / 301)
    assert rank_auc(label == 1, fitted.out_of_fold[:, 1]) > 0.85


def test_fewer_folds_on_more_labelled_rows() -> None:
    assert [n_folds(n) for n in (500, 19_999, 20_000, 99_999, 100_000)] == [5, 5, 3, 3, 2]


def test_time_order_reads_times_in_row_order_and_none_without_any(tmp_path) -> None:
    """The predictor validates on the latest rows only when the time column has a time."""
    spec = parse_spec(
        {
            "warehouse": str(tmp_path / "w.duckdb"),
            "spaces": {"s": {"table": "main.t", "key": "id", "time_column": "seen_at"}},
        },
        base_dir=tmp_path,
    )
    con = duckdb.connect()
    con.execute("create table t (id integer, seen_at timestamp)")
    con.execute("insert into t values (2, null), (1, null)")
    create_rows_table(con, spec, "s")
    assert time_order(con, spec, "s") is None
    con.execute("update t set seen_at = timestamp '2024-01-02' where id = 2")
    times = time_order(con, spec, "s")
    assert times is not None and times[0] == np.inf and np.isfinite(times[1])
