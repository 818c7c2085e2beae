"""Encoders of a row's related rows: its child set (1:N) and its references (N:1).

Like column encoders they give one [batch, d_model] token; whether it is present, null or
masked is added by the space model as a separate state embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.encoders.base import mlp


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
        self.project = mlp(ref_dim, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.project(batch["vector"])
