"""The principal part of a row's embedding: where the row sits on the principal axes of its
own standardized inputs, fitted once without any target and saved with the space.

A space's embedding is [principal part | learned part], each L2-normalised and weighted so
that the whole has unit length. The principal part is a PCA of a flat view of every token
(numbers, timestamps, the top labels one-hot, the child statistics, the mean child
embedding and the child count, a referenced row's embedding, and each token's presence),
each input rank-gaussianised through quantiles fitted once, with one constant coordinate
beside the axes so that normalising keeps how far a row lies from the average row. The
learned part is the transformer's, trained self-supervised on the whole embedding, so it
learns what the axes miss (text, how children relate, interactions). A token hidden from a
masked view is hidden here too: its inputs read as the average row's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

MAX_ONE_HOT = 12
"""Class indices of a label column that get a coordinate of their own: index 0 (rare or
unseen labels) and the 11 most frequent labels (codecs order their vocabulary by
frequency)."""
FIT_ROWS = 20_000
"""Rows (a seeded sample) the axes are fitted on."""
MIN_LEARNED_DIMS = 16
"""Coordinates left to the learned part, whatever the width of the inputs."""
PRINCIPAL_SHARE = 0.9
"""Share of the embedding's squared length (and of cosine similarity) the principal part
carries; the learned part carries the rest."""
PRINCIPAL_WEIGHT = math.sqrt(PRINCIPAL_SHARE)
LEARNED_WEIGHT = math.sqrt(1.0 - PRINCIPAL_SHARE)
N_QUANTILES = 129
"""Quantiles per flat input that its rank-gaussianisation interpolates between."""
VECTOR_WEIGHT = 16.0
"""Standardized inputs' worth of variance that another space's embedding (a child set's
mean, a referenced row's) carries here, whatever its width. At full weight its 64
coordinates outweighed the columns and child statistics (LightGBM on the axes lost); at 4
the neighbours lost what the children's embeddings tell (kNN lost): chosen on a validation
split of two bench tasks' training keys."""


def token_features(kind: str, type_name: str, n_classes: int, part: dict) -> torch.Tensor:
    """One token's flat inputs [B, f] (f fixed per token), before standardisation."""
    present = part["present"].to(torch.float32)[:, None]
    if kind == "statistics":
        return part["features"].to(torch.float32)
    if kind == "reference":
        return torch.cat([part["vector"].to(torch.float32), present], 1)
    if kind == "children":
        count = torch.log1p(part["count"].to(torch.float32))[:, None]
        return torch.cat([part["target_vector"].to(torch.float32), count, present], 1)
    out = [present]
    if "features" in part:
        features = part["features"].to(torch.float32)
        if type_name == "scalar":  # [z, robust, log, rank]: the rank, made Gaussian
            rank = features[:, 3:4].clamp(1e-3, 1 - 1e-3)
            out.append(math.sqrt(2.0) * torch.erfinv(2 * rank - 1) * present)
        elif type_name == "timestamp":  # [z of the time, cyclical parts]: the time
            out.append(features[:, :1])
        else:
            out.append(features)
    elif "vector" in part:
        out.append(part["vector"].to(torch.float32))
    elif n_classes and "target" in part:
        width = min(n_classes, MAX_ONE_HOT)
        index = part["target"].long()
        one_hot = torch.zeros(len(index), width)
        kept = index < width
        one_hot[kept, index[kept]] = 1.0
        out.append(one_hot * present)
    return torch.cat(out, 1)


def token_weights(kind: str, width: int) -> np.ndarray:
    """Weight [f] of each of a token's flat inputs after standardisation: the coordinates of
    another space's embedding share VECTOR_WEIGHT between them, everything else weighs 1."""
    weights = np.ones(width)
    vector = {"children": width - 2, "reference": width - 1}.get(kind, 0)
    if vector > 0:
        weights[:vector] = math.sqrt(VECTOR_WEIGHT / vector)
    return weights


def gaussianised(flat: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """Each input's rank among the fitted quantiles, as a normal score: the quantile
    transform, so heavy tails and counts weigh like any other input. A value equal to
    several quantiles (a binary input) takes the middle of their ranks.

    Shape: flat [B, F]; quantiles [F, Q] (sorted per input) -> [B, F]."""
    n_q = quantiles.shape[1]
    values = flat.T.contiguous()
    left = torch.searchsorted(quantiles, values, right=False)
    above = left.clamp(max=n_q - 1)
    below = (left - 1).clamp(min=0)
    high, low = quantiles.gather(1, above), quantiles.gather(1, below)
    # a value equal to quantiles [left, end) takes the middle of their ranks; `end` (the end
    # of that run of equal quantiles) is read, not searched for again
    tie = high == values
    end = _run_ends(quantiles).gather(1, above).to(flat.dtype)
    middle = (left.to(flat.dtype) + end - 1) * 0.5
    fraction = ((values - low) / (high - low).clamp(min=1e-12)).clamp(0, 1) * (above > below)
    rank = torch.where(tie, middle, below.to(flat.dtype) + fraction)
    level = ((rank + 0.5) / n_q).clamp(0.5 / n_q, 1 - 0.5 / n_q)
    return (math.sqrt(2.0) * torch.erfinv(2 * level - 1)).T


def _run_ends(quantiles: torch.Tensor) -> torch.Tensor:
    """[F, Q]: for each quantile, the index after the last quantile equal to it."""
    n_q = quantiles.shape[1]
    index = torch.arange(n_q, device=quantiles.device).expand_as(quantiles)
    # a run ends where the next quantile differs (or at the end)
    last = torch.ones_like(quantiles, dtype=torch.bool)
    last[:, :-1] = quantiles[:, 1:] != quantiles[:, :-1]
    ends = torch.where(last, index + 1, torch.full_like(index, n_q))
    return ends.flip(1).cummin(1).values.flip(1)


@dataclass
class PrincipalAxes:
    """Standardisation and principal axes of a space's flat inputs.

    Shape: quantiles [F, N_QUANTILES]; mean, std [F]; axes [F, k]."""

    quantiles: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    """The standard deviation divided by the input's weight (`token_weights`)."""
    axes: np.ndarray
    scale: float
    """The root mean square length of the rows' coordinates on the axes: the constant
    coordinate, so a row at the typical distance from the average lies at 45 degrees."""
    dims: list[int]
    """Flat inputs per token, in token order."""

    @property
    def n_axes(self) -> int:
        return self.axes.shape[1]


def fit_axes(
    flat: np.ndarray, dims: list[int], embedding_dim: int, weights: np.ndarray | None = None
) -> PrincipalAxes | None:
    """PCA of rank-gaussianised, standardized, weighted `flat` [n, F]; None when there is
    nothing to fit (no variance, too few rows, or no room beside the learned part)."""
    raw = np.asarray(flat, np.float32)
    n = len(raw)
    room = embedding_dim - MIN_LEARNED_DIMS - 1
    if n < 3 or raw.shape[1] == 0 or room < 1:
        return None
    quantiles = np.quantile(raw, np.linspace(0, 1, N_QUANTILES), axis=0).T.astype(np.float32)
    quantiles = np.ascontiguousarray(quantiles)
    x = gaussianised(torch.from_numpy(raw), torch.from_numpy(quantiles)).numpy()
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    if weights is not None:
        std = std / weights
    z = (x - mean) / std
    _, singular, vt = np.linalg.svd(z, full_matrices=False)
    kept = int((singular > 1e-6 * max(singular[0], 1e-12)).sum())
    k = min(room, kept, n - 1)
    if k < 1:
        return None
    axes = vt[:k].T
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), np.arange(k)])  # a fixed orientation
    axes = axes * np.where(signs == 0, 1.0, signs)
    coordinates = z @ axes
    scale = float(np.sqrt((coordinates**2).sum(axis=1).mean())) or 1.0
    return PrincipalAxes(quantiles, mean, std, axes, scale, list(dims))
