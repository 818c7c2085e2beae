"""Vectors (FLOAT[], DOUBLE[n], LIST of numbers, or strings like `[0.1, 0.2]`) of one length:
standardised and projected; reconstructed by contrast against the normalised vector."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, mlp

MAX_DIM = 4096


def _as_vector(value: object, dim: int) -> np.ndarray | None:
    if value is None or not hasattr(value, "__len__") or len(value) != dim:
        return None
    vector = np.asarray([np.nan if v is None else v for v in value], dtype=np.float64)
    return vector if np.isfinite(vector).all() else None


class VectorCodec(Codec):
    """Vectors of the most common length; others (and any with NULL/NaN/inf) are missing."""

    type = "vector"

    def __init__(self, column: str, mean: list[float], std: list[float]) -> None:
        super().__init__(column)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.target_dim = len(self.mean)

    @classmethod
    def fit(cls, column: str, values: list) -> VectorCodec:
        lengths = [len(v) for v in values if v is not None and hasattr(v, "__len__")]
        dim = max(set(lengths), key=lambda n: (lengths.count(n), -n)) if lengths else 1
        dim = min(max(dim, 1), MAX_DIM)
        rows = [x for v in values if (x := _as_vector(v, dim)) is not None]
        matrix = np.stack(rows) if rows else np.zeros((1, dim))
        std = matrix.std(axis=0)
        return cls(column, matrix.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist())

    def transform(self, values: list) -> dict[str, np.ndarray]:
        dim = self.target_dim
        vectors = [_as_vector(v, dim) for v in values]
        present = np.array([v is not None for v in vectors], dtype=bool)
        raw = (
            np.stack([v if v is not None else self.mean for v in vectors])
            if vectors
            else (np.zeros((0, dim)))
        )
        scaled = np.clip((raw - self.mean) / self.std, -6, 6) * present[:, None]
        norm = np.linalg.norm(raw, axis=1, keepdims=True)
        target = raw / np.where(norm > 0, norm, 1.0)
        return {
            "present": present,
            "vector": scaled.astype(np.float32),
            "target_vector": target.astype(np.float32),
        }

    def sizes(self) -> dict[str, int]:
        return {"dim": self.target_dim}

    def state(self) -> dict:
        return {**super().state(), "mean": self.mean.tolist(), "std": self.std.tolist()}


class VectorEncoder(nn.Module):
    def __init__(self, dim: int, d_model: int) -> None:
        super().__init__()
        self.project = mlp(dim, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["vector"])


COLUMN_TYPE = ColumnType(
    name="vector",
    codec=VectorCodec,
    encoder=lambda sizes, d_model: VectorEncoder(sizes["dim"], d_model),
    read_sql="try_cast({column} as double[])",
    native=r"^(FLOAT|DOUBLE|REAL|U?(TINYINT|SMALLINT|INTEGER|BIGINT))(\[\d*\])+$",
    looks_like="left({value}, 1) = '[' and try_cast({value} as double[]) is not null "
    "and len(try_cast({value} as double[])) > 1",
    priority=60,
)
