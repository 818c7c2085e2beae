"""The embedding probe beside a predictor's metrics: what the stored embedding alone knows
about the target, out of fold, on planted embeddings."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.predictors.probe import knn_probe
from pipeline.predictors.targets import Target


def _clusters(n: int, informative: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    centre = np.zeros((n, 16))
    if informative:
        centre[:, 0] = np.where(label == 1, 3.0, -3.0)
    return centre + rng.normal(size=(n, 16)), label


def _folds(n: int, unlabelled: int) -> np.ndarray:
    folds = np.arange(n) % 3
    folds[:unlabelled] = -1
    return folds


def test_the_probe_reads_a_label_the_embedding_holds_and_not_one_it_does_not():
    for informative, low, high in ((True, 0.95, 1.0), (False, 0.4, 0.6)):
        vectors, label = _clusters(600, informative)
        y = label.astype(np.int64)
        y[:50] = -1  # unlabelled rows are neither scored nor read
        target = Target("s", "t", "classification", y, pa.bool_(), [False, True], 1)
        score = knn_probe(vectors, target, _folds(600, 50))["embedding_knn_auc"]
        assert low <= score <= high, (informative, score)


def test_the_probe_of_a_regression_target_is_an_rmse():
    vectors, label = _clusters(600, True, seed=1)
    value = label * 10.0 + np.random.default_rng(2).normal(size=600)
    target = Target("s", "t", "regression", value, pa.float64())
    rmse = knn_probe(vectors, target, _folds(600, 0))["embedding_knn_rmse"]
    assert rmse < 2.0 < value.std()  # near the noise (1.0), far under the spread (5)
    assert (
        knn_probe(
            vectors[:30], Target("s", "t", "regression", value[:30], pa.float64()), _folds(30, 0)
        )
        == {}
    )  # folds too small to read 25 neighbours from
