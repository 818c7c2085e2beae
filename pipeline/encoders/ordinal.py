"""Ordered labels (low < medium < high, S < M < L, never < ... < always): a learned embedding
per level plus a rank path, so neighbouring levels start close and order is kept."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, mlp

SCALES: tuple[tuple[str, ...], ...] = (
    ("very low", "low", "medium", "high", "very high"),
    ("low", "medium", "high", "critical"),
    ("low", "medium", "high", "urgent"),
    ("low", "normal", "high", "urgent"),
    ("low", "normal", "high", "critical"),
    ("xxs", "xs", "s", "m", "l", "xl", "xxl", "xxxl"),
    ("extra small", "small", "medium", "large", "extra large"),
    ("never", "rarely", "sometimes", "often", "always"),
    ("very poor", "poor", "fair", "good", "very good", "excellent"),
    ("very bad", "bad", "ok", "good", "very good"),
    ("strongly disagree", "disagree", "neutral", "agree", "strongly agree"),
    ("bronze", "silver", "gold", "platinum", "diamond"),
    ("cold", "cool", "warm", "hot"),
    ("beginner", "intermediate", "advanced", "expert"),
    ("none", "mild", "moderate", "severe"),
    ("junior", "mid", "senior", "lead", "principal"),
)


def matching_scale(values: list[str]) -> tuple[str, ...] | None:
    """The first scale holding every distinct value (case-insensitive), with 2+ levels seen."""
    seen = {v.strip().lower() for v in values}
    if len(seen) < 2:
        return None
    for scale in SCALES:
        if seen <= set(scale):
            return scale
    return None


class OrdinalCodec(Codec):
    """Index of the level in the scale (0 = not a level) and its rank in [0, 1]."""

    type = "ordinal"
    n_features = 1

    def __init__(self, column: str, levels: list[str]) -> None:
        super().__init__(column)
        self.levels = list(levels)
        self.index = {level: i + 1 for i, level in enumerate(self.levels)}
        self.n_classes = len(self.levels) + 1

    @classmethod
    def fit(cls, column: str, values: list) -> OrdinalCodec:
        labels = sorted({text.lower() for v in values if (text := label(v)) is not None})
        scale = matching_scale(labels)
        return cls(column, list(scale) if scale else labels)

    def transform(self, values: list) -> dict[str, np.ndarray]:
        index = np.array(
            [self.index.get((label(v) or "").lower(), 0) for v in values], dtype=np.int64
        )
        present = index > 0
        rank = np.where(present, (index - 1) / max(len(self.levels) - 1, 1), 0.5)
        return {
            "present": present,
            "index": index,
            "features": rank.astype(np.float32)[:, None],
            "target": index,
        }

    def state(self) -> dict:
        return {**super().state(), "levels": self.levels}


class OrdinalEncoder(nn.Module):
    def __init__(self, n_classes: int, d_model: int) -> None:
        super().__init__()
        self.levels = nn.Embedding(n_classes, d_model)
        self.rank = mlp(1, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.rank(batch["features"]) + self.levels(batch["index"])


COLUMN_TYPE = ColumnType(
    name="ordinal",
    codec=OrdinalCodec,
    encoder=lambda sizes, d_model: OrdinalEncoder(sizes["n_classes"], d_model),
    matches_values=lambda values: matching_scale(values) is not None,
)
