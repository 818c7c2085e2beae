"""Short labels: a learned embedding per vocabulary entry (index 0 = rare or unseen), gated with
a projection of the label's MiniLM embedding, so unseen labels land near similar known ones."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, vocabulary
from pipeline.encoders.text_vectors import TEXT_DIM


class CategoryCodec(Codec):
    type = "category"
    semantic = True

    def __init__(self, column: str, vocabulary: list[str]) -> None:
        super().__init__(column)
        self.vocabulary = list(vocabulary)
        self.index = {value: i + 1 for i, value in enumerate(self.vocabulary)}
        self.n_classes = len(self.vocabulary) + 1

    @classmethod
    def fit(cls, column: str, values: list) -> CategoryCodec:
        return cls(column, vocabulary([cls.label(v) for v in values]))

    @staticmethod
    def label(value: object) -> str | None:
        return label(value)

    def labels(self, values: list) -> list[str | None]:
        """One label per value; each distinct value is labelled once (a column of 60k rows
        has a handful of distinct labels)."""
        if not set(map(type, values)) <= {str, type(None)}:  # 0.0 == -0.0, 1 == True: apart
            return [self.label(v) for v in values]
        memo = {value: self.label(value) for value in set(values)}
        return [memo[v] for v in values]

    def transform(self, values: list) -> dict[str, np.ndarray]:
        labels = self.labels(values)
        present = np.array([value is not None for value in labels], dtype=bool)
        index = np.array([self.index.get(value, 0) for value in labels], dtype=np.int64)
        return {"present": present, "index": index, "target": index}

    def texts(self, values: list) -> list[str | None]:
        return self.labels(values)

    def state(self) -> dict:
        return {**super().state(), "vocabulary": self.vocabulary}


class CategoryEncoder(nn.Module):
    def __init__(self, n_classes: int, d_model: int) -> None:
        super().__init__()
        self.learned = nn.Embedding(n_classes, d_model)
        self.semantic = nn.Linear(TEXT_DIM, d_model)
        self.gate = nn.Parameter(torch.zeros(d_model))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        gate = torch.sigmoid(self.gate)
        learned = self.learned(batch["index"])
        semantic = self.semantic(batch["text"])
        known = (batch["index"] > 0).unsqueeze(-1)
        return torch.where(known, gate * learned + (1 - gate) * semantic, semantic + learned)


COLUMN_TYPE = ColumnType(
    name="category",
    codec=CategoryCodec,
    encoder=lambda sizes, d_model: CategoryEncoder(sizes["n_classes"], d_model),
)
