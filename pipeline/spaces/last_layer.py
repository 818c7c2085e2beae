"""The output of a pre-norm transformer encoder layer at its first position alone.

A space's embedding reads only [CLS] (position 0) from its transformer's last layer, so that
layer need not be computed for the other positions: their keys and values are still needed
(the [CLS] query attends to them), their queries, attention outputs and feed-forward blocks
are not. The same weights and dropout places as `nn.TransformerEncoderLayer`, so the output
and the gradients equal the whole layer's at position 0 (`tests/test_model.py`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def first_position(
    layer: nn.TransformerEncoderLayer, tokens: torch.Tensor, padding: torch.Tensor | None
) -> torch.Tensor:
    """`layer(tokens)[:, 0]` for a pre-norm encoder layer (`norm_first=True`), computed for
    the first position only: its query attends to every position's key and value (`padding`
    True: left out), then its feed-forward block. Same weights, same dropout places."""
    attention = layer.self_attn
    batch, _, width = tokens.shape
    heads = attention.num_heads
    normed = layer.norm1(tokens)
    weight, bias = attention.in_proj_weight, attention.in_proj_bias
    query = F.linear(normed[:, :1], weight[:width], bias[:width])
    key, value = F.linear(normed, weight[width:], bias[width:]).chunk(2, dim=-1)

    def by_head(x: torch.Tensor) -> torch.Tensor:
        return x.view(batch, -1, heads, width // heads).transpose(1, 2)

    mask = None if padding is None else (~padding)[:, None, None, :]
    attended = F.scaled_dot_product_attention(
        by_head(query),
        by_head(key),
        by_head(value),
        attn_mask=mask,
        dropout_p=attention.dropout if layer.training else 0.0,
    )
    attended = attention.out_proj(attended.transpose(1, 2).reshape(batch, 1, width))
    cls = tokens[:, :1] + layer.dropout1(attended)
    cls = cls + layer._ff_block(layer.norm2(cls))
    return cls[:, 0]
