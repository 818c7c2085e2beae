"""Encoders: one module per input type, each mapping a batch of one column to [batch, d_model].

Encoders see values only; whether a value is present, null or masked is added by the space
model as a separate state embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.text_embeddings import TEXT_DIM


class GatedNumberEncoder(nn.Module):
    """Scalars and timestamps: a continuous path over several transforms and a binned path,
    mixed per dimension by a learned gate."""

    def __init__(self, n_features: int, n_bins: int, d_model: int) -> None:
        super().__init__()
        self.continuous = nn.Sequential(
            nn.Linear(n_features, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.binned = nn.Embedding(n_bins, d_model)
        self.gate = nn.Linear(n_features, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features = batch["features"]
        gate = torch.sigmoid(self.gate(features))
        return gate * self.continuous(features) + (1 - gate) * self.binned(batch["target"])


class CategoryEncoder(nn.Module):
    """Labels: a learned embedding per vocabulary entry, gated with a projection of the
    label's sentence embedding (so unseen labels land near similar known ones)."""

    def __init__(self, n_classes: int, d_model: int) -> None:
        super().__init__()
        self.learned = nn.Embedding(n_classes, d_model)
        self.semantic = nn.Linear(TEXT_DIM, d_model)
        self.gate = nn.Parameter(torch.zeros(d_model))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        gate = torch.sigmoid(self.gate)
        learned = self.learned(batch["index"])
        known = (batch["index"] > 0).unsqueeze(-1)
        mixed = gate * learned + (1 - gate) * self.semantic(batch["text"])
        return torch.where(known, mixed, self.semantic(batch["text"]) + learned)


class BooleanEncoder(nn.Module):
    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.values = nn.Embedding(2, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.values(batch["index"])


class TextEncoder(nn.Module):
    """Free text: a projection of the cached MiniLM embedding."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(TEXT_DIM, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["text"])


class ChildSetEncoder(nn.Module):
    """A set of child embeddings -> one token: learned queries attend over the children
    (plus an always-visible 'empty' slot), then the child count is added."""

    def __init__(
        self, child_dim: int, d_model: int, max_length: int, n_queries: int = 2, n_heads: int = 4
    ) -> None:
        super().__init__()
        self.project = nn.Linear(child_dim, d_model)
        self.position = nn.Embedding(max_length, d_model)
        self.empty = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, n_queries, d_model) * 0.02)
        self.attention = nn.MultiheadAttention(d_model, n_heads, batch_first=True)
        self.count = nn.Linear(2, d_model)
        self.out = nn.Linear(n_queries * d_model, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        children, visible = batch["children"], batch["visible"]
        n_rows, length, _ = children.shape
        positions = torch.arange(length, device=children.device)
        tokens = self.project(children) + self.position(positions)[None]
        tokens = torch.cat([self.empty.expand(n_rows, -1, -1), tokens], dim=1)
        visible = torch.cat([torch.ones(n_rows, 1, dtype=torch.bool), visible], dim=1)
        pooled, _ = self.attention(
            self.queries.expand(n_rows, -1, -1), tokens, tokens, key_padding_mask=~visible
        )
        count = batch["count"].float().unsqueeze(-1)
        count_features = torch.cat([torch.log1p(count), (count == 0).float()], dim=-1)
        return self.out(pooled.reshape(n_rows, -1)) + self.count(count_features)


class ReferenceEncoder(nn.Module):
    def __init__(self, ref_dim: int, d_model: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(ref_dim, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["vector"])


def column_encoder(column_type: str, d_model: int, n_features: int, n_classes: int) -> nn.Module:
    """The encoder for an input column of the given type."""
    if column_type in ("scalar", "timestamp"):
        return GatedNumberEncoder(n_features, n_classes, d_model)
    if column_type in ("category", "email"):
        return CategoryEncoder(n_classes, d_model)
    if column_type == "boolean":
        return BooleanEncoder(d_model)
    if column_type == "text":
        return TextEncoder(d_model)
    raise ValueError(f"no encoder for column type {column_type}")
