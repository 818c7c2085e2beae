"""True/false, yes/no, Y/N, 1/0 (as booleans, numbers or strings)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType

TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0"}


class BooleanCodec(Codec):
    type = "boolean"
    n_classes = 2

    @staticmethod
    def parse(value: object) -> bool | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, bool | np.bool_):
            return bool(value)
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return None

    def transform(self, values: list) -> dict[str, np.ndarray]:
        parsed = [self.parse(v) for v in values]
        present = np.array([p is not None for p in parsed], dtype=bool)
        index = np.array([1 if p else 0 for p in parsed], dtype=np.int64)
        return {"present": present, "index": index, "target": index}

    @classmethod
    def from_state(cls, column: str, state: dict) -> BooleanCodec:
        return cls(column)


class BooleanEncoder(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.values = nn.Embedding(2, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.values(batch["index"])


_WORDS = ", ".join(f"'{w}'" for w in sorted(TRUE_WORDS | FALSE_WORDS))
COLUMN_TYPE = ColumnType(
    name="boolean",
    codec=BooleanCodec,
    encoder=lambda sizes, d_model: BooleanEncoder(d_model),
    native=r"^BOOLEAN$",
    looks_like=f"lower({{value}}) in ({_WORDS})",
    priority=10,
    max_distinct=2,
)
