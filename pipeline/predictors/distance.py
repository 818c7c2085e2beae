"""How far rows lie from the training rows: the mean distance to the nearest training
embeddings, and each input's range over the labelled rows (out-of-distribution checks)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.predictors.features import PredictorFeatures

OOD_NEIGHBOURS = 5
"""Nearest training embeddings a row's distance is measured to."""


def knn_distance(
    x: np.ndarray, reference: np.ndarray, exclude_self: bool = False, batch_size: int = 4096
) -> np.ndarray:
    """[n]: mean Euclidean distance from each row of `x` to its `OOD_NEIGHBOURS` nearest rows
    of `reference` (leaving out the nearest, the row itself, with `exclude_self`). Squared
    distances come from one matrix product per batch of rows, and only the nearest are
    square-rooted."""
    out = np.empty(len(x), np.float32)
    k = min(OOD_NEIGHBOURS + int(exclude_self), len(reference))
    ref = torch.from_numpy(np.ascontiguousarray(reference, np.float32))
    ref_squared = ref.square().sum(dim=1)
    for start in range(0, len(x), batch_size):
        rows = torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size], np.float32))
        squared = torch.addmm(ref_squared[None], rows, ref.T, alpha=-2)
        squared += rows.square().sum(dim=1, keepdim=True)
        nearest = squared.topk(k, largest=False).values.clamp_min_(0).sqrt_()
        if exclude_self:
            nearest = nearest[:, 1:]
        out[start : start + batch_size] = nearest.mean(dim=1).numpy()
    return out


def input_ranges(features: PredictorFeatures, rows: np.ndarray) -> dict[str, list[float]]:
    """[min, max, std] of each table input over `rows` (inputs without two values left out;
    label indices too, as their order means nothing)."""
    ranges = {}
    for j, name in enumerate(features.names):
        if j in features.categorical:
            continue
        x = features.table[rows, j]
        x = x[np.isfinite(x)]
        if len(x) >= 2 and x.std() > 0:
            ranges[name] = [float(x.min()), float(x.max()), float(x.std())]
    return ranges
