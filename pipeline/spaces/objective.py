"""The self-supervised objective of a space: complementary masked views, typed
reconstruction of the hidden tokens (class targets by cross-entropy, vectors by InfoNCE),
joint InfoNCE between the full and the masked views, and a uniformity (spread) loss against
collapse."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.spaces.model import SpaceModel
from pipeline.spaces.training_plan import TrainingChoices

LOSS_PARTS = ("total", "joint", "marginal", "retention", "spread")


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` must pick row i of `b` among the batch."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def uniformity(e: torch.Tensor) -> torch.Tensor:
    """Wang & Isola's uniformity loss, log E[exp(-2 |x - y|²)] over pairs of rows: low when
    embeddings spread over the sphere. Distances from one matrix product (pdist is slow)."""
    n = len(e)
    squared = e.pow(2).sum(1)
    distances = (squared[:, None] + squared[None, :] - 2 * e @ e.T).clamp_min(0)
    off_diagonal = ~torch.eye(n, dtype=torch.bool)
    return torch.logsumexp(-2 * distances[off_diagonal], 0) - math.log(n * (n - 1))


def token_losses(
    model: SpaceModel,
    batch: list[dict],
    embedding: torch.Tensor,
    rows: torch.Tensor,
    temperature: float,
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Reconstruction losses of each token t in each view of the same rows.

    View v's loss for token t is over the rows in `rows[v, :, t]`: cross-entropy for class
    targets, InfoNCE against the fixed target vector (text, child mean, reference) within
    the view. Each decoder runs once over all views. Returns, per token that has a view with
    at least 2 such rows, (loss per view [V], whether the view had them [V]); a view without
    them has loss 0.

    Shape: embedding [V, B, embedding_dim]; rows [V, B, T] (bool).
    """
    n_views, n_rows = rows.shape[:2]
    flat = embedding.reshape(n_views * n_rows, -1)
    counts = rows.sum(1)
    used = counts >= 2
    losses = {}
    for t, token in enumerate(model.tokens):
        if not bool(used[:, t].any()):
            continue
        prediction = model.decoders[t](flat)
        if token.contrastive:
            per_view = [prediction.new_zeros(())] * n_views
            for v in torch.nonzero(used[:, t]).flatten().tolist():
                mask = rows[v, :, t]
                selected = prediction[v * n_rows : (v + 1) * n_rows][mask]
                target = batch[t]["target_vector"][mask]
                per_view[v] = info_nce(selected, target, temperature)
            losses[t] = (torch.stack(per_view), used[:, t])
        else:
            # One cross-entropy over every view's rows, averaged per view.
            target = batch[t]["target"].repeat(n_views)
            per_row = F.cross_entropy(prediction, target, reduction="none").reshape(n_views, -1)
            per_view = (per_row * rows[:, :, t]).sum(1) / counts[:, t].clamp(min=1)
            losses[t] = (per_view * used[:, t], used[:, t])
    return losses


def losses(
    model: SpaceModel, batch: list[dict], in_a: torch.Tensor, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float]]:
    """The self-supervised loss of a batch whose masked views are split by `in_a`: view a
    hides the tokens not in a, view b the tokens in a. The full view goes through the
    transformer as one batch of B rows, both masked views (their hidden tokens left out) as
    one batch of 2B shorter rows.

    Shape: in_a [B, T] (bool).
    """
    total, parts, _ = losses_and_embedding(model, batch, in_a, choices)
    return total, parts


def losses_and_embedding(
    model: SpaceModel, batch: list[dict], in_a: torch.Tensor, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """`losses`, and the full view's embeddings [B, embedding_dim] it computed (a predictor
    fine-tuning the space trains on them, with this loss as an auxiliary term)."""
    content, present, flat = model.encode_tokens(batch)
    hidden = torch.stack([torch.zeros_like(in_a), ~in_a, in_a])
    n_rows = len(present)
    full = model.embed_tokens(content, present, flat=flat)
    masked = model.embed_tokens(
        content.repeat(2, 1, 1),
        present.repeat(2, 1),
        hidden=hidden[1:].flatten(0, 1),
        flat=None if flat is None else flat.repeat(2, 1),
    ).reshape(2, n_rows, -1)
    embedding = torch.cat([full[None], masked])
    view_a, view_b = masked.unbind(0)
    joint = (
        info_nce(full, view_a, choices.temperature) + info_nce(full, view_b, choices.temperature)
    ) / 2
    # Masked views learn how columns relate (their hidden tokens); the full view must keep
    # every column's content (its present tokens).
    rows = torch.cat([present[None], hidden[1:] & present])
    per_token = token_losses(model, batch, embedding, rows, choices.temperature)
    losses = per_token.values()
    masked_losses = [loss[1:].sum() / used[1:].sum() for loss, used in losses if used[1:].any()]
    kept = [loss[0] for loss, used in losses if used[0]]
    marginal = torch.stack(masked_losses).mean() if masked_losses else joint * 0
    retention = torch.stack(kept).mean() if kept else joint * 0
    spread = uniformity(full)
    total = joint + marginal + retention + choices.spread_weight * spread
    values = torch.stack([total, joint, marginal, retention, spread]).detach().tolist()
    return total, dict(zip(LOSS_PARTS, values, strict=True)), full


def complementary_split(n_rows: int, n_tokens: int, generator: torch.Generator) -> torch.Tensor:
    """`in_a` [B, T]: each row's tokens split at random into halves of ceil(T/2) (in a) and
    floor(T/2), so both masked views are half a row long."""
    ranks = torch.rand(n_rows, n_tokens, generator=generator).argsort(1).argsort(1)
    return ranks < (n_tokens + 1) // 2


def step_loss(
    model: SpaceModel, batch: list[dict], generator: torch.Generator, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one training batch with fresh random complementary views."""
    n_rows = len(batch[0]["present"])
    return losses(model, batch, complementary_split(n_rows, len(batch), generator), choices)
