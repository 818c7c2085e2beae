"""A quick check before a predictor trains: does any single input (a parent column or a child
statistic) predict the target almost perfectly on its own? That is what a leak looks like: a
cancellation status, an event recorded after the outcome, a column derived from the label.

Each input is scored alone, out of fold: its values cut into quantile bins (missing values a
bin of their own), each bin predicts the mean target of the other fold's rows in it. A
monotone relation is scored exactly too (rank AUC for two classes, squared correlation for
numbers), so a child sum that equals the label is found whatever the bins."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target

AUC_LIMIT = 0.98
R2_LIMIT = 0.95
BINS = 32
MIN_ROWS = 20
MAX_ROWS = 50_000
"""Labelled rows the scan reads at most (a seeded sample): an input that alone scores AUC
0.98 on 50k rows does so on all of them (the AUC's sampling error there is about 0.002)."""


@dataclass(frozen=True)
class Leak:
    """An input that predicts the target almost perfectly alone."""

    input: str
    """The parent column's name or the child statistic's address (`orders/status/share_...`)."""
    metric: str
    score: float
    limit: float

    def message(self, space: str, target: str) -> str:
        where = (
            f"child statistic {self.input} (from child table {self.input.split('/', 1)[0]})"
            if "/" in self.input
            else f"column {self.input}"
        )
        return (
            f"{where} predicts {space}.{target} almost perfectly on its own ({self.metric} "
            f"{self.score:.3f} > {self.limit}): a leak? (a value known only after the outcome, "
            f"or derived from the target) -> if so, leave it out (`active: false` under its "
            f"space's columns) or cut children with `as_of`; if it is a fair input, ignore this"
        )


def find_leaks(features: PredictorFeatures, target: Target, seed: int) -> list[Leak]:
    """Inputs of `features.table` that alone reach AUC > 0.98 (classes) or R² > 0.95, on at
    most MAX_ROWS labelled rows."""
    rows = np.flatnonzero(target.known)
    if len(rows) < MIN_ROWS or features.table.shape[1] == 0:
        return []
    if len(rows) > MAX_ROWS:
        rows = np.sort(np.random.default_rng(seed).choice(rows, MAX_ROWS, replace=False))
    y = target.y[rows]
    halves = np.random.default_rng(seed).permutation(len(rows)) % 2
    leaks = []
    for j, name in enumerate(features.names):
        x = features.table[rows, j]
        if np.all(np.isnan(x)) or np.nanmin(x) == np.nanmax(x):
            continue
        score, metric, limit = _alone(x, y, halves, target)
        if score > limit:
            leaks.append(Leak(name, metric, round(float(score), 4), limit))
    return leaks


def _alone(x: np.ndarray, y: np.ndarray, halves: np.ndarray, target: Target):
    binned = _binned_out_of_fold(x, y, halves, target)
    if target.task == "regression":
        score = max(_r2(y, binned), _correlation(x, y) ** 2)
        return score, "R²", R2_LIMIT
    n_classes = len(target.classes or [])
    if n_classes == 2:
        positive = y == target.positive
        if positive.all() or not positive.any():
            return 0.0, "AUC", AUC_LIMIT
        filled = np.where(np.isnan(x), np.nanmin(x) - 1, x)
        rank = rank_auc(positive, filled)
        score = max(rank, 1 - rank, rank_auc(positive, binned[:, target.positive]))
        return score, "AUC", AUC_LIMIT
    present = [c for c in range(n_classes) if 0 < (y == c).sum() < len(y)]
    if not present:
        return 0.0, "AUC", AUC_LIMIT
    score = float(np.mean([rank_auc(y == c, binned[:, c]) for c in present]))
    return score, "AUC (one class against the rest, mean)", AUC_LIMIT


def rank_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic on mid-ranks (ties count half): the value
    sklearn's `roc_auc_score` gives, without its input checks (the scan calls it once per
    input and class: hundreds of times on a wide table)."""
    positive = np.asarray(positive, bool)
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    ranks = rankdata(score)
    return float(
        (ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative)
    )


def _bins(x: np.ndarray) -> np.ndarray:
    """Bin index of each value: quantile bins of the finite values, missing values last."""
    finite = np.isfinite(x)
    edges = np.unique(np.quantile(x[finite], np.linspace(0, 1, BINS + 1)[1:-1]))
    index = np.full(len(x), len(edges) + 1)
    index[finite] = np.searchsorted(edges, x[finite], side="right")
    return index


def _binned_out_of_fold(x, y, halves, target: Target) -> np.ndarray:
    """Each row's prediction from the mean target of its bin in the other half."""
    bins = _bins(x)
    n_bins = int(bins.max()) + 1
    if target.task == "regression":
        values = y[:, None].astype(np.float64)
    else:
        values = np.eye(len(target.classes or []))[y]
    out = np.empty_like(values, dtype=np.float64)
    for half in (0, 1):
        train, score = halves != half, halves == half
        sums = np.zeros((n_bins, values.shape[1]))
        np.add.at(sums, bins[train], values[train])
        counts = np.bincount(bins[train], minlength=n_bins)[:, None]
        overall = values[train].mean(axis=0)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), overall)
        out[score] = means[bins[score]]
    return out[:, 0] if target.task == "regression" else out


def _r2(y: np.ndarray, prediction: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - prediction) ** 2).sum()) / total if total > 0 else 0.0


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    finite = np.isfinite(x)
    if finite.sum() < max(MIN_ROWS, len(x) / 2) or np.std(x[finite]) == 0 or np.std(y[finite]) == 0:
        return 0.0
    return float(np.corrcoef(x[finite], y[finite])[0, 1])
