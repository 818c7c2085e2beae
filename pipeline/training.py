"""Self-supervised training of a space: complementary masked views, typed reconstruction of
hidden tokens (gives mutual-information estimates), joint InfoNCE between views, and a
uniformity (spread) loss against collapse. Hyperparameters are derived from the data.

The step count is a pure function of the data and the spec (epochs that fall as the table
grows, capped by a time budget through a cost model), so the same data and seed give the same
model. Training stops earlier when the loss on held-out rows has stopped improving, and keeps
the weights of the best evaluation. A wall-clock limit exists only as a safety net; when it
stops a run, the run says so in its warnings."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
N_VIEWS = 3
"""Full view and two complementary masked views, run through the transformer as one batch."""
REFERENCE_MACS_PER_SECOND = 13e9
"""Multiply-adds per second of a training step on the reference machine (2 CPU cores, one
thread, d_model 64); with STEP_OVERHEAD_S it turns the time budget into a step count without
timing anything."""
STEP_OVERHEAD_S = 0.0025
"""Seconds per token per step that do not grow with the batch (launching small operations)."""
LOG_EVERY = 10
MIN_STEPS = 300
EVALUATIONS = 10
"""Evaluations on the held-out rows per run (fewer when a run has under 100 steps)."""
MIN_IMPROVEMENT = 1e-3
"""Relative fall of the held-out loss that resets the patience count."""


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
    """Planned optimizer updates (early stopping may use fewer)."""
    learning_rate: float
    weight_decay: float
    temperature: float
    spread_weight: float
    seed: int
    epochs: float = 0.0
    """Planned passes over the training rows: steps * batch_size / training_rows."""
    training_rows: int = 0
    validation_rows: int = 0
    """Held-out rows (never trained on) whose loss decides early stopping; 0: none."""
    eval_every: int = 0
    patience: int = 0
    """Evaluations without improvement before stopping; 0: no early stopping."""
    time_budget_s: float = 0.0
    """Seconds the planned steps should take on the reference machine (cost model)."""
    wall_clock_limit_s: float = 0.0
    """Safety net: a run still going after this many seconds stops with a warning."""
    threads: int = 1
    steps_rule: str = ""
    """Which rule set the step count: epochs, time budget, minimum, or the spec."""


def _power_of_two(x: float) -> int:
    return 2 ** math.floor(math.log2(max(x, 1.0)))


def step_seconds(n_tokens: int, d_model: int, n_layers: int, batch_size: int) -> float:
    """Cost model of one training step on the reference machine: a fixed cost per token plus
    the multiply-adds of three views through the transformer (attention projections 4d²,
    feed-forward 2 * d * 2d, attention 2 * seq * d per token and layer), encoders and decoders
    (about 4d² per token), backward about twice the forward."""
    seq = n_tokens + 1
    per_token_layer = 8 * d_model**2 + 2 * seq * d_model
    forward = N_VIEWS * (seq * n_layers * per_token_layer + n_tokens * 4 * d_model**2)
    macs = 3.0 * forward * batch_size
    return n_tokens * STEP_OVERHEAD_S + macs / REFERENCE_MACS_PER_SECOND


def choose_hyperparameters(
    n_rows: int, n_tokens: int, overrides: TrainingSpec, seed: int
) -> TrainingChoices:
    """Zero-configuration defaults; every number is a function of the data and the spec only
    (never of the machine's speed), so a run can be repeated exactly.

    - d_model 64: under a time budget a model twice as wide costs four times as much per row
      and sees a quarter of the rows.
    - batch: n/4 rounded down to a power of two, within [16, 256] (larger batches gave no more
      rows per second on CPU and fewer updates per epoch).
    - validation: min(5%, 1024) rows held out when that is at least 64 rows (tables of 1,280
      rows and more); early stopping after 3 evaluations without a 0.1% improvement.
    - epochs: 40 / sqrt(n / 1000), within [1, 40] (40 up to 1k rows, 8 at 26k, 2 at 400k).
    - time budget: 20 s + 0.25 s per 1k rows, at most 120 s (or `time_budget_s`), turned into a
      step cap by the cost model (`step_seconds`).
    - steps: enough for the epochs, capped by the time budget, and never under 300 unless the
      spec sets the time budget (with fewer updates the reconstruction losses of the
      benchmark table stayed near chance).
    - dropout 0.1 when the plan sees each row 5 times or more, else 0 (no time to overfit).
    - learning rate 3e-3 (with 5% warmup and a cosine decay): at 1e-3 the reconstruction
      losses needed about three times the updates to reach the same held-out loss.
    - evaluation on the held-out rows about 10 times per run (at most every 10 steps); its
      cost (a forward pass, a third of a training step per row) is part of the budget.
    """
    d_model = overrides.d_model or 64
    n_layers = 2
    validation_rows = min(1024, n_rows // 20)
    if validation_rows < 64:
        validation_rows = 0
    training_rows = n_rows - validation_rows
    batch = overrides.batch_size or min(256, max(16, _power_of_two(n_rows / 4)))
    batch = min(batch, max(training_rows, 2))
    seconds_per_step = step_seconds(n_tokens, d_model, n_layers, batch)
    seconds_per_evaluation = seconds_per_step * validation_rows / batch / 3
    time_budget = overrides.time_budget_s or min(120.0, 20.0 + 0.25 * n_rows / 1000)
    budget_steps = int((time_budget - EVALUATIONS * seconds_per_evaluation) / seconds_per_step)
    epochs = min(40.0, max(1.0, 40.0 / math.sqrt(max(n_rows, 1) / 1000)))
    epoch_steps = math.ceil(epochs * training_rows / batch)
    min_steps = 1 if overrides.time_budget_s else MIN_STEPS
    if overrides.steps:
        steps, rule = overrides.steps, "spec"
    elif min(epoch_steps, budget_steps) < min_steps:
        steps, rule = min_steps, "minimum"
    elif epoch_steps <= budget_steps:
        steps, rule = epoch_steps, "epochs"
    else:
        steps, rule = budget_steps, "time budget"
    planned_epochs = steps * batch / max(training_rows, 1)
    eval_every = max(LOG_EVERY, math.ceil(steps / EVALUATIONS))
    evaluations = math.ceil(steps / eval_every) if validation_rows else 0
    estimate = steps * seconds_per_step + evaluations * seconds_per_evaluation
    return TrainingChoices(
        d_model=d_model,
        embedding_dim=overrides.embedding_dim or d_model,
        n_layers=n_layers,
        n_heads=4,
        dropout=0.1 if planned_epochs >= 5 else 0.0,
        batch_size=batch,
        steps=steps,
        learning_rate=overrides.learning_rate or 3e-3,
        weight_decay=1e-4,
        temperature=0.1,
        spread_weight=0.1 if n_tokens > 1 else 0.3,
        seed=seed,
        epochs=round(planned_epochs, 3),
        training_rows=training_rows,
        validation_rows=validation_rows,
        eval_every=eval_every,
        patience=3 if validation_rows and not overrides.steps else 0,
        time_budget_s=round(estimate, 1),
        wall_clock_limit_s=round(max(600.0, 5 * estimate), 1),
        threads=training_threads(),
        steps_rule=rule,
    )


def training_threads() -> int:
    """Intra-op threads for training: half the cores. The model's matrices are small, so more
    threads gain little and, on a machine shared with other work, threads that wait on each
    other at every operation cost far more than they gain."""
    return max(1, (os.cpu_count() or 2) // 2)


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    """Every LOG_EVERY steps: step, lr and LOSS_PARTS on the training batch; at evaluation
    steps also `validation`, the LOSS_PARTS on the held-out rows."""
    warnings: list[str] = field(default_factory=list)
    stopped_early: bool = False
    best_step: int | None = None
    validation_losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, total loss on the held-out rows) at every evaluation."""
    train_seconds: float = 0.0

    def summary(self) -> dict:
        return {
            "choices": asdict(self.choices),
            "steps": self.steps_done,
            "epochs": self.epochs,
            "final_losses": self.final_losses,
            "mutual_information_bits": self.mutual_information,
            "failures": self.failures,
            "corrective_actions": self.corrective_actions,
            "warnings": self.warnings,
            "stopped_early": self.stopped_early,
            "best_step": self.best_step,
            "validation_losses": self.validation_losses,
            "train_seconds": round(self.train_seconds, 2),
            "rows_per_second": round(self.rows_per_second, 1),
        }

    @property
    def rows_per_second(self) -> float:
        """Training rows processed per second of the training loop (steps * batch / s)."""
        return self.steps_done * self.choices.batch_size / max(self.train_seconds, 1e-9)


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


def _token_losses(
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


def _losses(
    model: SpaceModel, batch: list[dict], in_a: torch.Tensor, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float]]:
    """The self-supervised loss of a batch whose masked views are split by `in_a`: view a
    hides the tokens not in a, view b the tokens in a. The full view and both masked views go
    through the transformer as one batch of 3B rows.

    Shape: in_a [B, T] (bool).
    """
    content, present = model.encode_tokens(batch)
    hidden = torch.stack([torch.zeros_like(in_a), ~in_a, in_a])
    n_rows = len(present)
    embedding = model.embed_tokens(
        content.repeat(N_VIEWS, 1, 1), present.repeat(N_VIEWS, 1), hidden=hidden.flatten(0, 1)
    ).reshape(N_VIEWS, n_rows, -1)
    full, view_a, view_b = embedding.unbind(0)
    joint = (
        info_nce(full, view_a, choices.temperature) + info_nce(full, view_b, choices.temperature)
    ) / 2
    # Masked views learn how columns relate (their hidden tokens); the full view must keep
    # every column's content (its present tokens).
    rows = torch.cat([present[None], hidden[1:] & present])
    per_token = _token_losses(model, batch, embedding, rows, choices.temperature)
    losses = per_token.values()
    masked = [loss[1:].sum() / used[1:].sum() for loss, used in losses if used[1:].any()]
    kept = [loss[0] for loss, used in losses if used[0]]
    marginal = torch.stack(masked).mean() if masked else joint * 0
    retention = torch.stack(kept).mean() if kept else joint * 0
    spread = uniformity(full)
    total = joint + marginal + retention + choices.spread_weight * spread
    values = torch.stack([total, joint, marginal, retention, spread]).detach().tolist()
    return total, dict(zip(LOSS_PARTS, values, strict=True))


def _step(
    model: SpaceModel, batch: list[dict], generator: torch.Generator, choices: TrainingChoices
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss of one training batch with fresh random complementary views."""
    present = torch.stack([part["present"] for part in batch], dim=1)
    in_a = torch.rand(present.shape, generator=generator) < 0.5
    return _losses(model, batch, in_a, choices)


def split_rows(n_rows: int, validation_rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (training rows, held-out validation rows), each in row order."""
    order = torch.randperm(n_rows, generator=torch.Generator().manual_seed(seed + 2))
    return order[validation_rows:].sort().values, order[:validation_rows].sort().values


class _Validation:
    """The held-out rows in fixed batches with fixed views, so evaluations compare."""

    def __init__(self, inputs: SpaceInputs, rows: torch.Tensor, choices: TrainingChoices):
        generator = torch.Generator().manual_seed(choices.seed + 3)
        n_batches = max(1, round(len(rows) / choices.batch_size))
        self.batches = []
        for part in torch.tensor_split(rows, n_batches):
            batch = gather(inputs, part)
            present = torch.stack([p["present"] for p in batch], dim=1)
            self.batches.append((batch, torch.rand(present.shape, generator=generator) < 0.5))
        self.choices = choices

    @torch.no_grad()
    def losses(self, model: SpaceModel) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(LOSS_PARTS, 0.0)
        for batch, in_a in self.batches:
            _, parts = _losses(model, batch, in_a, self.choices)
            for k in LOSS_PARTS:
                sums[k] += parts[k] / len(self.batches)
        model.train(was_training)
        return sums


def train_space(
    inputs: SpaceInputs, overrides: TrainingSpec, seed: int, progress: bool = True
) -> tuple[SpaceModel, TrainingResult]:
    """Train a space model on its inputs; retries once with a correction if training fails."""
    tokens = token_specs(inputs)
    choices = choose_hyperparameters(inputs.n_rows, len(tokens), overrides, seed)
    result = TrainingResult(choices=choices, started_at=time.time())
    with _torch_threads(choices.threads):
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
    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(
        parameters, lr=choices.learning_rate, weight_decay=choices.weight_decay, foreach=True
    )
    warmup = max(1, choices.steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, choices.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    training_rows, validation_rows = split_rows(
        inputs.n_rows, choices.validation_rows, choices.seed
    )
    validation = _Validation(inputs, validation_rows, choices) if len(validation_rows) else None
    result.stopped_early, result.best_step, result.validation_losses = False, None, []
    best_loss, best_weights, reference, waited = math.inf, None, math.inf, 0
    n = len(training_rows)
    order = training_rows[torch.randperm(n, generator=generator)]
    cursor = 0
    model.train()
    started = time.perf_counter()
    bar = tqdm(
        range(choices.steps), desc=f"training {inputs.space}", disable=not progress, leave=False
    )
    step = -1
    for step in bar:
        if cursor + choices.batch_size > n:
            order, cursor = training_rows[torch.randperm(n, generator=generator)], 0
        rows = order[cursor : cursor + choices.batch_size]
        cursor += choices.batch_size
        loss, parts = _step(model, gather(inputs, rows), generator, choices)
        if not math.isfinite(parts["total"]):
            result.failures.append(f"unstable: non-finite loss at step {step}")
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        last = step == choices.steps - 1
        evaluate = validation is not None and ((step + 1) % choices.eval_every == 0 or last)
        if step % LOG_EVERY == 0 or last or evaluate:
            point = {"step": step, "lr": scheduler.get_last_lr()[0], **parts}
            result.timeline.append(point)
            bar.set_postfix(loss=f"{parts['total']:.3f}")
        if evaluate:
            held_out = validation.losses(model)
            point["validation"] = held_out
            result.validation_losses.append((step, round(held_out["total"], 5)))
            if held_out["total"] < best_loss:
                best_loss, result.best_step = held_out["total"], step
                best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            threshold = reference - MIN_IMPROVEMENT * abs(reference)
            if not math.isfinite(reference) or held_out["total"] < threshold:
                reference, waited = held_out["total"], 0
            else:
                waited += 1
                if choices.patience and waited >= choices.patience:
                    result.stopped_early = True
                    break
        if time.perf_counter() - started > choices.wall_clock_limit_s:
            message = (
                f"wall-clock safety net: stopped after {step + 1} of {choices.steps} steps "
                f"({choices.wall_clock_limit_s:.0f} s); this run is not reproducible -> "
                "set training.steps in the spec for a fixed, smaller number of steps"
            )
            result.warnings.append(message)
            log.warning("space %s: %s", inputs.space, message)
            break
    result.train_seconds = time.perf_counter() - started
    result.steps_done = step + 1
    result.epochs = result.steps_done * choices.batch_size / max(n, 1)
    if best_weights is not None and choices.patience:
        model.load_state_dict(best_weights)
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
        for t, (loss, _) in _token_losses(
            model, batch, view[None], (hidden & present)[None], choices.temperature
        ).items():
            sums.setdefault(t, []).append(float(loss[0]))
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
