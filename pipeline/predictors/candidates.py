"""What every predictor candidate provides: `fit` on some labelled rows, then raw outputs
(logits [n, classes] for classification, values [n] for regression) for any rows. The
selection module owns folds and scores; a candidate owns only its model."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import ClassVar, Protocol

import numpy as np
import torch

from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target


class FittedModel(Protocol):
    reads_tokens: ClassVar[bool]
    """Scoring runs the space model on the rows' inputs (a fine-tuned model to score, a model
    without its own contributions to measure importance by masking tokens); else the stored
    embedding, the parent's columns and the child statistics are all it reads."""

    def raw(self, features: PredictorFeatures) -> np.ndarray:
        """Logits [n, n_classes] (classification) or values [n] (regression)."""

    def contributions(self, features: PredictorFeatures) -> dict[str, np.ndarray] | None:
        """|Contribution| of each input group per row, or None (then importance is measured
        by masking the space's tokens)."""

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """Plain JSON and named tensors (saved as safetensors): no pickle."""


class Candidate(Protocol):
    name: str
    uses_torch_random: bool
    """Draws from torch's global random generator (initialisation, dropout, shuffling):
    such candidates never train at the same time as each other."""

    def fit(
        self, features: PredictorFeatures, target: Target, rows: np.ndarray, seed: int
    ) -> FittedModel:
        """Train on `rows` (indices of labelled rows); early stopping uses a seeded split of
        those rows that does not depend on their labels."""


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Small models train faster on one thread: on two shared cores a second thread mostly
    waits (measured 4x slower for the MLP and LightGBM candidates on a busy machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def inner_split(rows: np.ndarray, seed: int, fraction: float = 0.15) -> tuple[np.ndarray, ...]:
    """(fit rows, early-stopping rows): a seeded permutation, independent of the labels."""
    order = np.random.default_rng(seed).permutation(rows)
    n_stop = max(1, int(round(len(rows) * fraction))) if len(rows) > 4 else 0
    return np.sort(order[n_stop:]), np.sort(order[:n_stop])


def select_rows(features: PredictorFeatures, rows: np.ndarray) -> PredictorFeatures:
    return dataclasses.replace(
        features,
        embeddings=features.embeddings[rows],
        table=features.table[rows],
        rows=features.input_rows()[rows],
    )


def class_weights(target: Target, rows: np.ndarray) -> torch.Tensor:
    """Per class, 1 / sqrt(its count among `rows`), scaled to mean 1: rare classes weigh more,
    without drowning the common ones."""
    counts = np.bincount(target.y[rows], minlength=len(target.classes)).astype(np.float64)
    weights = 1.0 / np.sqrt(np.maximum(counts, 1))
    return torch.tensor(weights / weights.mean(), dtype=torch.float32)


def standardized(target: Target, rows: np.ndarray) -> tuple[torch.Tensor, float, float]:
    """A regression target of every row (unknown ones 0) standardised by the mean and std over
    `rows`, and that mean and std."""
    values = target.y[rows]
    mean, std = float(values.mean()), float(values.std()) or 1.0
    return torch.tensor((np.nan_to_num(target.y) - mean) / std, dtype=torch.float32), mean, std
