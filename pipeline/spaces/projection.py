"""Principal axes of a set of embeddings: the 3-d view of a space (`embedding_3d`) and the
few directions of the embedding the tree predictors read."""

from __future__ import annotations

import numpy as np


def principal_axes(embeddings: np.ndarray, k: int) -> np.ndarray:
    """[1 + k, dim]: the mean row, then the first k principal axes (k <= rows and dim), each
    signed so its largest loading is positive (the same rows give the same axes)."""
    x = np.asarray(embeddings, np.float64)
    mean = x.mean(axis=0)
    if k == 0:
        return mean[None]
    centred = x - mean
    # the right singular vectors of the centred rows, from their [dim, dim] scatter matrix:
    # one pass over the rows instead of an SVD of all of them (0.66 s for 150k x 64)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, np.argsort(values, kind="stable")[::-1][:k]].T
    signs = np.sign(axes[np.arange(k), np.abs(axes).argmax(axis=1)])
    return np.concatenate([mean[None], axes * np.where(signs == 0, 1, signs)[:, None]])


def fit_projection(embeddings: np.ndarray) -> np.ndarray:
    """[4, dim]: mean, then the 3 principal axes of `embeddings` (`principal_axes`). Fewer
    than 3 directions of variance are padded with the coordinate axes."""
    x = np.asarray(embeddings, np.float64)
    x = x[np.isfinite(x).all(axis=1)]  # a diverged model's rows are left out
    dim = x.shape[1]
    if len(x) >= 2:
        fitted = principal_axes(x, min(3, len(x), dim))
    else:
        fitted = (x.mean(axis=0) if len(x) else np.zeros(dim))[None]
    return np.concatenate([fitted, np.eye(dim)[len(fitted) - 1 : 3]])
