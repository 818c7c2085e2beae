"""Free text: a projection of the value's static MiniLM embedding (`pipeline.encoders.text_vectors`:
the mean of its tokens' vectors, computed once per distinct value and cached in the
warehouse; the first 256 word pieces of long values count)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, mlp
from pipeline.encoders.text_vectors import TEXT_DIM


class TextCodec(Codec):
    type = "text"
    semantic = True
    target_dim = TEXT_DIM

    def texts(self, values: list) -> list[str | None]:
        return [label(v) for v in values]

    def transform(self, values: list) -> dict[str, np.ndarray]:
        return {"present": np.array([t is not None for t in self.texts(values)], dtype=bool)}

    @classmethod
    def from_state(cls, column: str, state: dict) -> TextCodec:
        return cls(column)


class TextEncoder(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.project = mlp(TEXT_DIM, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["text"])


COLUMN_TYPE = ColumnType(
    name="text", codec=TextCodec, encoder=lambda sizes, d_model: TextEncoder(d_model)
)
