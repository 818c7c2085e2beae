"""The predictions table: one row per row of the space, target known or not."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa

from pipeline.predictors import Predictor
from pipeline.predictors.features import PredictorFeatures

OOD_WARNING_SIGMA = 3.0


def predictions_table(
    predictor: Predictor,
    keys: pa.Table,
    raw: np.ndarray,
    features: PredictorFeatures,
    split: np.ndarray,
    importance: dict[str, np.ndarray],
    extra_warnings: list[str],
) -> pa.Table:
    """`ml.<space>__<target>_predictions` rows: one per row of the space, target known or not.

    `raw`: the predictor's outputs (out-of-fold for `split == 'train'` rows); predictions are
    in the target's own values and type."""
    n = features.n_rows
    ood, farthest = predictor.ood_sigma(features)
    columns = {name: keys.column(name) for name in keys.column_names}
    if predictor.task == "classification":
        probabilities = predictor.probabilities(raw)
        decided = predictor.decide(probabilities)
        chosen = probabilities[np.arange(n), decided]
        if predictor.positive is not None:
            positive = predictor.positive
            margin = np.abs(probabilities[:, positive] - predictor.threshold)
            room = np.where(
                probabilities[:, positive] >= predictor.threshold,
                1 - predictor.threshold,
                predictor.threshold,
            )
            confidence = margin / np.maximum(room, 1e-12)
        else:
            entropy = -(probabilities * np.log(probabilities + 1e-12)).sum(axis=1)
            confidence = 1 - entropy / math.log(len(predictor.classes))
        columns["prediction"] = pa.array(
            [predictor.classes[i] for i in decided], predictor.prediction_type
        )
        columns["probability"] = pa.array(chosen.astype(np.float64))
        labels = predictor.class_labels
        columns["probabilities"] = pa.array(
            [list(zip(labels, row.astype(float).tolist(), strict=True)) for row in probabilities],
            pa.map_(pa.string(), pa.float64()),
        )
        columns["interval_low"] = pa.nulls(n, pa.float64())
        columns["interval_high"] = pa.nulls(n, pa.float64())
    else:
        values = np.asarray(raw, np.float64)
        low, high = predictor.interval
        columns["prediction"] = pa.array(values)
        columns["probability"] = pa.nulls(n, pa.float64())
        columns["probabilities"] = pa.nulls(n, pa.map_(pa.string(), pa.float64()))
        columns["interval_low"] = pa.array(values + low)
        columns["interval_high"] = pa.array(values + high)
        confidence = 1 / (1 + np.maximum(ood, 0))
    columns["split"] = pa.array(split, pa.string())
    warnings = []
    for i in range(n):
        row = list(extra_warnings)
        if ood[i] > OOD_WARNING_SIGMA:
            why = f" ({farthest[i]} is outside its training range)" if farthest[i] else ""
            row.append(f"out of distribution: {ood[i]:.1f} sigma from the training rows{why}")
        warnings.append(row)
    names = list(importance)
    matrix = np.stack([importance[k] for k in names], axis=1) if names else np.zeros((n, 0))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    columns["confidence"] = pa.array(np.clip(confidence, 0, 1).astype(np.float64))
    columns["ood_sigma"] = pa.array(ood.astype(np.float64))
    columns["warnings"] = pa.array(warnings, pa.list_(pa.string()))
    columns["feature_importance"] = pa.array(
        [list(zip(names, row.tolist(), strict=True)) for row in shares],
        pa.map_(pa.string(), pa.float64()),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    columns["predictor_version"] = pa.array([predictor.version] * n, pa.string())
    columns["space_version"] = pa.array([predictor.space_version] * n, pa.string())
    columns["predicted_at"] = pa.array([now] * n, pa.timestamp("us"))
    return pa.table(columns)
