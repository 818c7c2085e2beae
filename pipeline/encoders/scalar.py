"""Numbers (also numbers stored as strings): z, robust, log and rank transforms through a
continuous path, a quantile bin through a learned table, mixed per dimension by a gate."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, finite_values, mlp, quantile_edges


class ScalarCodec(Codec):
    type = "scalar"
    n_features = 4

    def __init__(self, column: str, **stats: float | list) -> None:
        super().__init__(column)
        self.mean = float(stats["mean"])
        self.std = float(stats["std"])
        self.median = float(stats["median"])
        self.iqr = float(stats["iqr"])
        self.log_shift = float(stats["log_shift"])
        self.log_mean = float(stats["log_mean"])
        self.log_std = float(stats["log_std"])
        self.edges = np.asarray(stats["edges"], dtype=np.float64)
        self.n_classes = len(self.edges) + 1

    @classmethod
    def fit(cls, column: str, values: np.ndarray) -> ScalarCodec:
        finite = finite_values(values)
        q1, median, q3 = np.quantile(finite, [0.25, 0.5, 0.75])
        shift = -float(finite.min()) if finite.min() < 0 else 0.0
        logs = np.log1p(finite + shift)
        return cls(
            column,
            mean=float(finite.mean()),
            std=float(finite.std()) or 1.0,
            median=float(median),
            iqr=float(q3 - q1) or float(finite.std()) or 1.0,
            log_shift=shift,
            log_mean=float(logs.mean()),
            log_std=float(logs.std()) or 1.0,
            edges=quantile_edges(finite).tolist(),
        )

    def transform(self, values: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        present = np.isfinite(x)
        v = np.where(present, x, self.median)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (v - self.mean) / self.std
            robust = (v - self.median) / self.iqr
            logz = (np.log1p(np.clip(v + self.log_shift, 0, None)) - self.log_mean) / self.log_std
        bins = np.searchsorted(self.edges, v, side="right")
        rank = (bins + 0.5) / self.n_classes
        features = np.nan_to_num(np.clip(np.stack([z, robust, logz, rank], axis=1), -6, 6))
        return {
            "present": present,
            "features": np.where(present[:, None], features, 0).astype(np.float32),
            "target": np.where(present, bins, 0).astype(np.int64),
        }

    def state(self) -> dict:
        return {
            **super().state(),
            "mean": self.mean,
            "std": self.std,
            "median": self.median,
            "iqr": self.iqr,
            "log_shift": self.log_shift,
            "log_mean": self.log_mean,
            "log_std": self.log_std,
            "edges": self.edges.tolist(),
        }


class GatedNumberEncoder(nn.Module):
    """A continuous path over the transforms and a binned path, mixed by a learned gate."""

    def __init__(self, n_features: int, n_bins: int, d_model: int) -> None:
        super().__init__()
        self.continuous = mlp(n_features, d_model)
        self.binned = nn.Embedding(n_bins, d_model)
        self.gate = nn.Linear(n_features, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features = batch["features"]
        gate = torch.sigmoid(self.gate(features))
        return gate * self.continuous(features) + (1 - gate) * self.binned(batch["target"])


def number_encoder(sizes: dict[str, int], d_model: int) -> nn.Module:
    return GatedNumberEncoder(sizes["n_features"], sizes["n_classes"], d_model)


COLUMN_TYPE = ColumnType(
    name="scalar",
    codec=ScalarCodec,
    encoder=number_encoder,
    read_sql="case when isfinite(try_cast({column} as double)) "
    "then try_cast({column} as double) end",
    reads_numbers=True,
    native=r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|REAL|DECIMAL.*)$",
    # A leading + is how phone numbers are written, not numbers.
    looks_like="isfinite(try_cast({value} as double)) and not starts_with({value}, '+')",
    priority=20,
)
