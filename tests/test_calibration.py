"""Calibration that could fail: on a planted task whose model is overconfident, the
temperature fitted on out-of-fold scores lowers the expected calibration error on a large
fresh validation set, to under 0.05; a far-away row is flagged out of distribution."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.predictors import read_target, train_predictor
from pipeline.predictors.calibration import fit_temperature, softmax
from pipeline.predictors.distance import OOD_NEIGHBOURS, knn_distance
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.predictions import OOD_WARNING_SIGMA, predictions_table


def expected_calibration_error(probability: np.ndarray, truth: np.ndarray, bins: int = 15):
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by rows."""
    confidence = probability.max(axis=1)
    correct = probability.argmax(axis=1) == truth
    edges = np.linspace(0, 1, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return error


def _planted(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two classes whose true log-odds is z; the 'model' reports 3z (overconfident)."""
    z = rng.normal(0, 1.5, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    logits = np.stack([np.zeros(n), 3 * z], axis=1)
    return logits, y


def test_temperature_fitted_on_one_sample_calibrates_a_fresh_one():
    rng = np.random.default_rng(0)
    fit_logits, fit_y = _planted(20_000, rng)
    temperature = fit_temperature(fit_logits, fit_y)
    assert 2.5 < temperature < 3.5  # the planted overconfidence is 3
    fresh_logits, fresh_y = _planted(100_000, rng)
    before = expected_calibration_error(softmax(fresh_logits), fresh_y)
    after = expected_calibration_error(softmax(fresh_logits, temperature), fresh_y)
    assert before > 0.08
    assert after < 0.05 and after < before / 3


def _features(n: int, rng: np.random.Generator, shift: float = 0.0):
    """Embeddings on the unit sphere around one pole (plus `shift` along another axis), one
    informative column, and the planted label."""
    embeddings = rng.normal(0, 0.15, (n, 16)).astype(np.float32)
    embeddings[:, 0] += 1.0
    embeddings[:, 1] += shift
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    signal = rng.normal(0, 1, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int64)
    table = np.stack([signal + rng.normal(0, 0.3, n)], axis=1)
    features = PredictorFeatures(embeddings, table, ["signal"], ["signal"], [])
    return features, y


def test_the_predictor_is_calibrated_on_fresh_rows_and_flags_far_ones():
    rng = np.random.default_rng(1)
    features, y = _features(3000, rng)
    target = read_target("t", "label", "boolean", pa.chunked_array([pa.array(y, pa.int64())]))
    keys = pa.table({"id": pa.array(np.arange(len(y)))})
    predictor = train_predictor(features, target, keys, seed=0, model="gbdt")

    fresh, fresh_y = _features(20_000, rng)
    probabilities = predictor.probabilities(predictor.raw(fresh))
    assert expected_calibration_error(probabilities, fresh_y) < 0.05

    # rows of the training distribution are near the training rows; rows built far away
    # from it are several sigmas out and carry a warning
    near, _ = predictor.ood_sigma(fresh)
    far_features, _ = _features(50, rng, shift=3.0)
    far, _ = predictor.ood_sigma(far_features)
    assert (near < 2).mean() > 0.9
    assert (far > OOD_WARNING_SIGMA).all()
    raw = predictor.raw(far_features)
    table = predictions_table(
        predictor,
        pa.table({"id": pa.array(np.arange(50))}),
        raw,
        far_features,
        np.full(50, "unlabelled", dtype=object),
        {},
        [],
    )
    warnings = table.column("warnings").to_pylist()
    assert all(any("out of distribution" in w for w in row) for row in warnings)


def test_distance_to_the_training_rows_is_the_exact_nearest_neighbours_mean():
    rng = np.random.default_rng(2)
    reference = rng.standard_normal((300, 8)).astype(np.float32)
    rows = rng.standard_normal((1000, 8)).astype(np.float32)
    squared = ((rows[:, None, :] - reference[None]) ** 2).sum(axis=2)
    expected = np.sqrt(np.sort(squared, axis=1)[:, :OOD_NEIGHBOURS]).mean(axis=1)
    np.testing.assert_allclose(knn_distance(rows, reference, batch_size=128), expected, rtol=1e-4)
    # each reference row against the others: itself left out
    own = ((reference[:, None, :] - reference[None]) ** 2).sum(axis=2)
    expected = np.sqrt(np.sort(own, axis=1)[:, 1 : OOD_NEIGHBOURS + 1]).mean(axis=1)
    np.testing.assert_allclose(
        knn_distance(reference, reference, exclude_self=True), expected, rtol=1e-4, atol=1e-5
    )
