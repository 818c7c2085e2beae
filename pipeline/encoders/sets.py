"""Encoders of a row's related rows: its child set (1:N), the statistics of its children
(computed in SQL) and its references (N:1).

Like column encoders they give one [batch, d_model] token; whether it is present, null or
masked is added by the space model as a separate state embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.encoders.base import mlp


class ChildSetEncoder(nn.Module):
    """A set of child embeddings -> one token: learned queries attend over the children
    (plus an always-visible 'empty' slot), beside the mean, max, spread and count-scaled sum
    of the projected children; the child count is added."""

    N_AGGREGATES = 4

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
        self.out = nn.Linear((n_queries + self.N_AGGREGATES) * d_model, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Shape: children [B, L, child_dim], visible [B, L], positions [B, L] (each child's
        place in its set; default 0..L-1), count [B] -> [B, d_model]."""
        children, visible = batch["children"], batch["visible"]
        n_rows, length, _ = children.shape
        positions = batch.get("positions")
        if positions is None:
            positions = torch.arange(length, device=children.device)[None]
        projected = self.project(children)
        tokens = projected + self.position(positions)
        tokens = torch.cat([self.empty.expand(n_rows, -1, -1), tokens], dim=1)
        with_empty = torch.cat([torch.ones(n_rows, 1, dtype=torch.bool), visible], dim=1)
        pooled, _ = self.attention(
            self.queries.expand(n_rows, -1, -1), tokens, tokens, key_padding_mask=~with_empty
        )
        weight = visible.unsqueeze(-1).float()
        n_visible = weight.sum(1).clamp(min=1)
        mean = (projected * weight).sum(1) / n_visible
        spread = ((((projected - mean[:, None]) ** 2 * weight).sum(1) / n_visible) + 1e-6).sqrt()
        largest = projected.masked_fill(~visible.unsqueeze(-1), -1e4).amax(1)
        largest = torch.where(visible.any(1, keepdim=True), largest, torch.zeros_like(largest))
        count = batch["count"].float().unsqueeze(-1)
        scaled_sum = mean * torch.log1p(count)
        count_features = torch.cat([torch.log1p(count), (count == 0).float()], dim=-1)
        aggregates = torch.cat(
            [pooled.reshape(n_rows, -1), mean, largest, spread, scaled_sum], dim=-1
        )
        return self.out(aggregates) + self.count(count_features)


class ChildStatisticsEncoder(nn.Module):
    """Statistics of a child link computed in SQL (normalised, with a defined flag each)."""

    def __init__(self, n_features: int, d_model: int) -> None:
        super().__init__()
        self.project = mlp(2 * n_features, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Shape: features [B, F], defined [B, F] -> [B, d_model]."""
        return self.project(torch.cat([batch["features"], batch["defined"].float()], dim=-1))


class ReferenceEncoder(nn.Module):
    def __init__(self, ref_dim: int, d_model: int) -> None:
        super().__init__()
        self.project = mlp(ref_dim, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["vector"])
