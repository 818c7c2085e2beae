"""Self-supervised training of a space: the loop, held-out early stopping, training health
(collapse, no learning, instability, with a corrective retry) and mutual-information
estimates. The objective lives in `objective`, the zero-configuration plan in
`training_plan`.

The step count is a pure function of the data and the spec (epochs that fall as the table
grows, capped by a time budget through a cost model), so the same data and seed give the same
model. Training stops earlier when the loss on held-out rows has stopped improving, and keeps
the weights of the best evaluation. A wall-clock limit exists only as a safety net; when it
stops a run, the run says so in its warnings."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from tqdm import tqdm

from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.model import SpaceModel, gather, token_specs
from pipeline.spaces.objective import (
    LOSS_PARTS,
    complementary_split,
    losses,
    step_loss,
    token_losses,
)
from pipeline.spaces.principal import (
    FIT_ROWS,
    PrincipalAxes,
    fit_axes,
    token_features,
    token_weights,
)
from pipeline.spaces.training_plan import (
    LOG_EVERY,
    MIN_IMPROVEMENT,
    TRAINING_CHILDREN,
    TrainingChoices,
    choose_hyperparameters,
    torch_threads,
)
from pipeline.spec import TrainingSpec

log = logging.getLogger(__name__)


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
    unhealthy: list[str] = field(default_factory=list)
    """Failures (collapse, instability) still there after the corrective retry."""

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
            "unhealthy": self.unhealthy,
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
            self.batches.append((batch, complementary_split(*present.shape, generator)))
        self.choices = choices

    @torch.no_grad()
    def losses(self, model: SpaceModel) -> dict[str, float]:
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(LOSS_PARTS, 0.0)
        for batch, in_a in self.batches:
            _, parts = losses(model, batch, in_a, self.choices)
            for k in LOSS_PARTS:
                sums[k] += parts[k] / len(self.batches)
        model.train(was_training)
        return sums


def train_space(
    inputs: SpaceInputs,
    overrides: TrainingSpec,
    seed: int,
    progress: bool = True,
    budget_s: float | None = None,
) -> tuple[SpaceModel, TrainingResult]:
    """Train a space model on its inputs; retries once with a correction if training fails.
    `budget_s`: the space's share of the run's training time (`space_budget`)."""
    tokens = token_specs(inputs)
    choices = choose_hyperparameters(inputs.n_rows, tokens, overrides, seed, budget_s)
    result = TrainingResult(choices=choices, started_at=time.time())
    with torch_threads(choices.threads):
        principal = fit_principal(inputs, choices.embedding_dim, seed)
        for attempt in range(2):
            model = _fit(inputs, choices, result, progress, principal)
            failures = _diagnose(model, inputs, result)
            if not failures:
                break
            result.failures += [f"attempt {attempt + 1}: {f}" for f in failures]
            if attempt == 1:
                result.unhealthy = [f for f in failures if "collapse" in f or "unstable" in f]
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


def fit_principal(inputs: SpaceInputs, embedding_dim: int, seed: int) -> PrincipalAxes | None:
    """The principal axes of the space's flat inputs (`pipeline.spaces.principal`), fitted on a
    seeded sample of at most FIT_ROWS rows, every child of a row read."""
    tokens = token_specs(inputs)
    n = inputs.n_rows
    rows = np.arange(n)
    if n > FIT_ROWS:
        rows = np.sort(np.random.default_rng(seed + 5).permutation(n)[:FIT_ROWS])
    blocks, dims = [], []
    for start in range(0, len(rows), 1024):
        batch = gather(inputs, torch.as_tensor(rows[start : start + 1024]))
        parts = [
            token_features(t.kind, t.type, t.n_classes, part)
            for t, part in zip(tokens, batch, strict=True)
        ]
        dims = [p.shape[1] for p in parts]
        blocks.append(torch.cat(parts, 1).numpy())
    if not blocks:
        return None
    weights = np.concatenate([token_weights(t.kind, d) for t, d in zip(tokens, dims, strict=True)])
    return fit_axes(np.concatenate(blocks), dims, embedding_dim, weights)


def _fit(
    inputs: SpaceInputs,
    choices: TrainingChoices,
    result: TrainingResult,
    progress: bool,
    principal: PrincipalAxes | None = None,
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
        principal_axes=principal.n_axes if principal else 0,
        flat_dims=principal.dims if principal else None,
    )
    if principal is not None:
        model.set_principal(principal)
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
        batch = gather(inputs, rows, TRAINING_CHILDREN, generator)
        loss, parts = step_loss(model, batch, generator, choices)
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
        content, present, flat = model.encode_tokens(batch)
        hidden = torch.rand(present.shape, generator=generator) < 0.5
        view = model.embed_tokens(content, present, hidden=hidden, flat=flat)
        for t, (loss, _) in token_losses(
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
