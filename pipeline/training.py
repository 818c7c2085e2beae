"""Self-supervised training of a space: complementary masked views, typed reconstruction of
hidden tokens (gives mutual-information estimates), joint InfoNCE between views, and a
uniformity (spread) loss against collapse. Hyperparameters are derived from the data."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.inputs import SpaceInputs
from pipeline.model import SpaceModel, gather, token_specs
from pipeline.spec import TrainingSpec

log = logging.getLogger(__name__)
LOSS_PARTS = ("total", "joint", "marginal", "retention", "spread")


@dataclass(frozen=True)
class TrainingChoices:
    """Every hyperparameter of a run, derived from the data unless the spec overrides it."""

    d_model: int
    embedding_dim: int
    n_layers: int
    n_heads: int
    dropout: float
    batch_size: int
    steps: int
    learning_rate: float
    weight_decay: float
    temperature: float
    spread_weight: float
    seed: int


def choose_hyperparameters(
    n_rows: int, n_tokens: int, overrides: TrainingSpec, seed: int
) -> TrainingChoices:
    """Zero-configuration defaults: sizes grow with the data, updates with rows per batch."""
    d_model = overrides.d_model or (64 if n_rows < 20_000 else 128)
    batch = overrides.batch_size or int(
        min(256, max(16, 2 ** math.floor(math.log2(max(n_rows, 2) / 4))))
    )
    steps = overrides.steps or int(min(1200, max(300, 12 * n_rows / batch)))
    return TrainingChoices(
        d_model=d_model,
        embedding_dim=overrides.embedding_dim or d_model,
        n_layers=2,
        n_heads=4,
        dropout=0.1,
        batch_size=min(batch, max(n_rows, 2)),
        steps=steps,
        learning_rate=overrides.learning_rate or 1e-3,
        weight_decay=1e-4,
        temperature=0.1,
        spread_weight=0.1 if n_tokens > 1 else 0.3,
        seed=seed,
    )


@dataclass
class TrainingResult:
    """What happened during training, for `ml.training_runs` and the timeline file."""

    choices: TrainingChoices
    started_at: float
    finished_at: float = 0.0
    steps_done: int = 0
    epochs: float = 0.0
    final_losses: dict[str, float] = field(default_factory=dict)
    mutual_information: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    corrective_actions: list[str] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "choices": asdict(self.choices),
            "steps": self.steps_done,
            "epochs": self.epochs,
            "final_losses": self.final_losses,
            "mutual_information_bits": self.mutual_information,
            "failures": self.failures,
            "corrective_actions": self.corrective_actions,
        }


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of `a` must pick row i of `b` among the batch."""
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(len(a))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def uniformity(e: torch.Tensor) -> torch.Tensor:
    """Wang & Isola's uniformity loss: low when embeddings spread over the sphere."""
    return torch.pdist(e).pow(2).mul(-2).exp().mean().clamp_min(1e-12).log()


def _token_losses(
    model: SpaceModel,
    batch: list[dict],
    embedding: torch.Tensor,
    rows: torch.Tensor,
    temperature: float,
) -> dict[int, torch.Tensor]:
    """Reconstruction loss of each token t over the rows in `rows[:, t]`: cross-entropy for
    class targets, InfoNCE against the fixed target vector (text, child mean, reference)."""
    losses = {}
    for t, token in enumerate(model.tokens):
        mask = rows[:, t]
        if int(mask.sum()) < 2:
            continue
        prediction = model.decoders[t](embedding[mask])
        if token.contrastive:
            losses[t] = info_nce(prediction, batch[t]["target_vector"][mask], temperature)
        else:
            losses[t] = F.cross_entropy(prediction, batch[t]["target"][mask])
    return losses


def _step(
    model: SpaceModel, batch: list[dict], generator: torch.Generator, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float]]:
    content, present = model.encode_tokens(batch)
    in_a = torch.rand(present.shape, generator=generator) < 0.5
    full = model.embed_tokens(content, present)
    view_a = model.embed_tokens(content, present, hidden=~in_a)
    view_b = model.embed_tokens(content, present, hidden=in_a)
    joint = (
        info_nce(full, view_a, choices.temperature) + info_nce(full, view_b, choices.temperature)
    ) / 2
    # Masked views learn how columns relate; the full view must keep every column's content.
    per_token = _token_losses(model, batch, view_a, ~in_a & present, choices.temperature)
    for t, loss in _token_losses(model, batch, view_b, in_a & present, choices.temperature).items():
        per_token[t] = (per_token[t] + loss) / 2 if t in per_token else loss
    kept = _token_losses(model, batch, full, present, choices.temperature)
    marginal = torch.stack(list(per_token.values())).mean() if per_token else joint * 0
    retention = torch.stack(list(kept.values())).mean() if kept else joint * 0
    spread = uniformity(full)
    total = joint + marginal + retention + choices.spread_weight * spread
    parts = {
        "total": float(total.detach()),
        "joint": float(joint.detach()),
        "marginal": float(marginal.detach()),
        "retention": float(retention.detach()),
        "spread": float(spread.detach()),
    }
    return total, parts


def train_space(
    inputs: SpaceInputs, overrides: TrainingSpec, seed: int, progress: bool = True
) -> tuple[SpaceModel, TrainingResult]:
    """Train a space model on its inputs; retries once with a correction if training fails."""
    tokens = token_specs(inputs)
    choices = choose_hyperparameters(inputs.n_rows, len(tokens), overrides, seed)
    result = TrainingResult(choices=choices, started_at=time.time())
    for attempt in range(2):
        model = _fit(inputs, choices, result, progress)
        failures = _diagnose(model, inputs, result)
        if not failures:
            break
        result.failures += [f"attempt {attempt + 1}: {f}" for f in failures]
        if attempt == 1:
            break
        if any("collapse" in f for f in failures):
            choices = replace(
                choices,
                spread_weight=choices.spread_weight * 5,
                learning_rate=choices.learning_rate / 2,
            )
            result.corrective_actions.append(
                "collapse: spread weight x5, learning rate /2, retrained"
            )
        elif any("unstable" in f for f in failures):
            choices = replace(choices, learning_rate=choices.learning_rate / 10)
            result.corrective_actions.append("unstable: learning rate /10, retrained")
        else:
            break
        result.choices = choices
        result.timeline = []
    result.mutual_information = mutual_information(model, inputs, choices)
    result.finished_at = time.time()
    return model, result


def _fit(
    inputs: SpaceInputs, choices: TrainingChoices, result: TrainingResult, progress: bool
) -> SpaceModel:
    torch.manual_seed(choices.seed)
    generator = torch.Generator().manual_seed(choices.seed)
    model = SpaceModel(
        token_specs(inputs),
        choices.d_model,
        choices.embedding_dim,
        choices.n_layers,
        choices.n_heads,
        choices.dropout,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=choices.learning_rate, weight_decay=choices.weight_decay
    )
    warmup = max(1, choices.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, choices.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    n = inputs.n_rows
    order = torch.randperm(n, generator=generator)
    cursor = 0
    model.train()
    bar = tqdm(
        range(choices.steps), desc=f"training {inputs.space}", disable=not progress, leave=False
    )
    for step in bar:
        if cursor + choices.batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        rows = order[cursor : cursor + choices.batch_size]
        cursor += choices.batch_size
        loss, parts = _step(model, gather(inputs, rows), generator, choices)
        if not math.isfinite(parts["total"]):
            result.failures.append(f"unstable: non-finite loss at step {step}")
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        if step % 10 == 0 or step == choices.steps - 1:
            result.timeline.append({"step": step, "lr": scheduler.get_last_lr()[0], **parts})
            bar.set_postfix(loss=f"{parts['total']:.3f}")
    result.steps_done = step + 1
    result.epochs = result.steps_done * choices.batch_size / max(n, 1)
    model.eval()
    return model


def _diagnose(model: SpaceModel, inputs: SpaceInputs, result: TrainingResult) -> list[str]:
    """Training-health checks on the finished model and its loss timeline."""
    failures = [f for f in result.failures if f.startswith("unstable")]
    result.failures = [f for f in result.failures if not f.startswith("unstable")]
    timeline = result.timeline
    if len(timeline) >= 4:
        tenth = max(1, len(timeline) // 10)
        first = np.mean([p["total"] for p in timeline[:tenth]])
        last = np.mean([p["total"] for p in timeline[-tenth:]])
        result.final_losses = {
            k: float(np.mean([p[k] for p in timeline[-tenth:]])) for k in LOSS_PARTS
        }
        if last > first * 0.98 and inputs.n_rows > 8:
            failures.append(f"no learning: loss {first:.3f} -> {last:.3f}")
    with torch.no_grad():
        rows = torch.arange(min(inputs.n_rows, 512))
        embedding = model(gather(inputs, rows))
    if len(rows) > 8 and inputs.n_rows > 8:
        spread = float(embedding.std(dim=0).mean() * math.sqrt(embedding.shape[1]))
        if spread < 0.05:
            failures.append(f"collapse: embeddings nearly identical (spread {spread:.3f})")
    return failures


@torch.no_grad()
def mutual_information(
    model: SpaceModel, inputs: SpaceInputs, choices: TrainingChoices
) -> dict[str, float]:
    """Bits each token shares with the rest of its row: entropy - reconstruction loss (class
    targets) or log(batch) - InfoNCE (contrastive targets), from the masked view."""
    generator = torch.Generator().manual_seed(choices.seed + 1)
    n = inputs.n_rows
    size = min(choices.batch_size, n)
    sums: dict[int, list[float]] = {}
    for start in range(0, min(n, 8 * size) - size + 1, size):
        rows = torch.arange(start, start + size)
        batch = gather(inputs, rows)
        content, present = model.encode_tokens(batch)
        hidden = torch.rand(present.shape, generator=generator) < 0.5
        view = model.embed_tokens(content, present, hidden=hidden)
        for t, loss in _token_losses(
            model, batch, view, hidden & present, choices.temperature
        ).items():
            sums.setdefault(t, []).append(float(loss))
    bits = {}
    for t, token in enumerate(model.tokens):
        if t not in sums:
            continue
        loss = float(np.mean(sums[t]))
        if token.contrastive:
            ceiling = math.log(size)
        else:
            column = inputs.columns[t]
            targets = column.arrays["target"][column.arrays["present"]].numpy()
            p = np.bincount(targets, minlength=token.n_classes) / max(len(targets), 1)
            ceiling = float(-(p[p > 0] * np.log(p[p > 0])).sum())
        bits[token.name] = max(0.0, (ceiling - loss) / math.log(2))
    return bits
