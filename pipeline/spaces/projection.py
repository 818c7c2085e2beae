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
