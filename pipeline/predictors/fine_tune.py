"""Fine-tuning: the parent space's own model (its column encoders, child-set pooling,
statistics token and transformer) trained end to end on the target, with a head on its
embedding and the self-supervised loss kept as an auxiliary term, so the space keeps what it
learned without labels. Child spaces stay frozen: their embeddings are inputs of the parent.

Two phases (linear probing, then fine-tuning): the head first learns on the frozen
embeddings, so the first end-to-end updates do not push a random head's gradients through
the pretrained space; then every weight trains, the space at a lower learning rate, with
early stopping on a seeded split of the training rows.

It costs a space training per fold model, so `auto` tries it only when the cost model says
its fold models fit `AUTO_BUDGET_S` and, after the other candidates, only when the frozen
embedding's MLP came within `REACH` of the best of them; `fine_tune: true` (or
`model: fine_tune`) tries it anyway."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import PipelineError
from pipeline.predictors.candidates import class_weights, inner_split, standardized
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target
from pipeline.spaces.model import SpaceModel, gather
from pipeline.spaces.objective import complementary_split, losses_and_embedding
from pipeline.spaces.training_plan import (
    TRAINING_CHILDREN,
    TrainingChoices,
    choose_hyperparameters,
    step_seconds,
)
from pipeline.spec import TrainingSpec

AUXILIARY_WEIGHT = 0.5
"""Weight of the self-supervised loss beside the target's loss."""
SPACE_LEARNING_RATE = 5e-4
HEAD_LEARNING_RATE = 2e-3
EPOCHS = 4
"""Passes over the fit rows end to end (fewer when the step cap is reached)."""
MIN_STEPS, MAX_STEPS = 30, 400
PROBE_STEPS = 200
"""Head-only updates on the frozen embeddings before the space is unfrozen (cheap)."""
EVALUATIONS, PATIENCE = 8, 3
AUTO_BUDGET_S = 40.0
"""Seconds on the reference machine that all fold models together may take in `auto`."""
REACH = 0.01
"""`auto` fine-tunes only when the MLP on the frozen embedding is within 1% (relative) of the
best out-of-fold score: fine-tuning starts from that embedding, and on the benchmark's
training keys it moved the MLP's score by -1.3% to +2.6% and overtook the best candidate on
no task; a wider reach would have fine-tuned Scorecard (MLP 1.7% behind, fine-tuned still
behind the trees) for 45 s, past the run's time goal."""
INFERENCE_BATCH = 1024


@dataclass(frozen=True)
class FineTunePlan:
    """Steps and batch of one fold model, and what the k fold models cost together."""

    steps: int
    batch_size: int
    seconds: float
    choices: TrainingChoices
    """The space's zero-configuration choices (temperature, spread weight of the auxiliary
    loss; batch size)."""

    def fits(self) -> bool:
        return self.seconds <= AUTO_BUDGET_S


def plan(model: SpaceModel, n_rows: int, n_labelled: int, n_models: int, seed: int) -> FineTunePlan:
    """`EPOCHS` over the fit rows within [MIN_STEPS, MAX_STEPS]; `seconds` from the space's
    cost model for `n_models` models (evaluations included)."""
    choices = choose_hyperparameters(n_rows, model.tokens, TrainingSpec(), seed)
    batch = min(choices.batch_size, max(n_labelled // 2, 2))
    fit_rows = n_labelled * (n_models - 1) / max(n_models, 1) * 0.85
    steps = int(min(MAX_STEPS, max(MIN_STEPS, math.ceil(EPOCHS * fit_rows / batch))))
    config = model.config
    per_step = step_seconds(model.tokens, config["d_model"], config["n_layers"], batch)
    evaluation = per_step * (n_labelled * 0.15) / batch / 3 * EVALUATIONS
    return FineTunePlan(steps, batch, n_models * (steps * per_step + evaluation), choices)


def fine_tuning(
    space: SpaceModel | None,
    features: PredictorFeatures,
    n_labelled: int,
    n_models: int,
    seed: int,
    model: str,
    fine_tune: bool | None,
) -> tuple[FineTuned | None, str | None]:
    """The fine-tuning candidate when it may be tried, else None and why not. Forced by
    `model: fine_tune` or `fine_tune: true`; never with `fine_tune: false` or another
    `model:`; in `auto` when the cost model says its fold models fit `AUTO_BUDGET_S` (then
    `out_of_reach` decides after the other candidates)."""
    forced = model == "fine_tune" or fine_tune is True
    if space is None or features.inputs is None:
        if forced:
            raise PipelineError(f"predictor {model}: fine-tuning needs the space model")
        return None, None
    if fine_tune is False or model not in ("auto", "fine_tune"):
        return None, "not tried: fine_tune: false" if fine_tune is False else None
    schedule = plan(space, features.inputs.n_rows, n_labelled, n_models, seed)
    if forced or schedule.fits():
        return FineTuned(space, schedule), None
    return None, (
        f"not tried: its {n_models} models would take about {schedule.seconds:.0f} s "
        f"(auto tries it under {AUTO_BUDGET_S:.0f} s) -> set fine_tune: true to try it"
    )


MIN_LIFT = 0.02
"""AUC above chance that the best candidate must reach for `auto` to fine-tune: where no
candidate predicts anything, fine-tuning has nothing to build on and costs a space training
per fold."""


def out_of_reach(scores: dict[str, float], chance: float | None = None) -> str | None:
    """Why `auto` does not fine-tune after the other candidates scored (None: it does).
    Scores are out-of-fold, higher better (RMSE negated); `chance`: the score of a guess
    (0.5 for AUC; None for regression)."""
    best = max(scores.values())
    if "mlp" not in scores:
        return "not tried: no MLP on the frozen embedding to start from"
    if chance is not None and best < chance + MIN_LIFT:
        return (
            f"not tried: no candidate beats chance (best {best:.3f} against {chance:.2f}); "
            "fine-tuning has nothing to build on -> set fine_tune: true to try it"
        )
    gap = (best - scores["mlp"]) / max(abs(best), 1e-12)
    if gap <= REACH:
        return None
    return (
        f"not tried: the MLP on the frozen embedding is {gap:.1%} behind the best candidate "
        f"(auto fine-tunes within {REACH:.0%}) -> set fine_tune: true to try it"
    )


class FineTunedNet(nn.Module):
    """The space model and a head on its embedding."""

    def __init__(self, space: SpaceModel, output_dim: int) -> None:
        super().__init__()
        self.space = space
        self.head = nn.Linear(space.config["embedding_dim"], output_dim)

    def forward(self, batch: list[dict], hidden_token: int | None = None) -> torch.Tensor:
        content, present, flat = self.space.encode_tokens(batch)
        hidden = None
        if hidden_token is not None:
            hidden = torch.zeros_like(present)
            hidden[:, hidden_token] = True
        return self.head(self.space.embed_tokens(content, present, hidden, flat))


@dataclass
class FineTunedModel:
    net: FineTunedNet
    task: str
    target_mean: float = 0.0
    target_std: float = 1.0
    record: dict = field(default_factory=dict)
    reads_tokens: ClassVar[bool] = True

    @torch.no_grad()
    def raw(self, features: PredictorFeatures) -> np.ndarray:
        if features.inputs is None:
            raise ValueError("a fine-tuned predictor reads the space's inputs")
        self.net.eval()
        rows = torch.as_tensor(features.input_rows())
        outputs = [
            self.net(
                gather(features.inputs, rows[start : start + INFERENCE_BATCH]),
                features.hidden_token,
            )
            for start in range(0, len(rows), INFERENCE_BATCH)
        ]
        width = self.net.head.out_features
        out = torch.cat(outputs).numpy().astype(np.float64) if outputs else np.zeros((0, width))
        if self.task == "regression":
            return out[:, 0] * self.target_std + self.target_mean
        return out

    def contributions(self, features: PredictorFeatures) -> None:
        return None

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return (
            {
                "task": self.task,
                "target_mean": self.target_mean,
                "target_std": self.target_std,
                "space": self.net.space.description(),
                "output_dim": self.net.head.out_features,
                "record": self.record,
            },
            {k: v.detach().contiguous() for k, v in self.net.state_dict().items()},
        )

    @classmethod
    def from_state(cls, state: dict, tensors: dict[str, torch.Tensor]) -> FineTunedModel:
        net = FineTunedNet(SpaceModel.from_description(state["space"]), state["output_dim"])
        net.load_state_dict(tensors)
        net.eval()
        return cls(
            net, state["task"], state["target_mean"], state["target_std"], state.get("record", {})
        )


class FineTuned:
    """The candidate: a copy of the space model per fold, trained on the target."""

    name: ClassVar[str] = "fine_tune"
    uses_torch_random: ClassVar[bool] = True

    def __init__(self, space: SpaceModel, plan: FineTunePlan) -> None:
        self.space = space
        self.plan = plan

    def fit(
        self, features: PredictorFeatures, target: Target, rows: np.ndarray, seed: int
    ) -> FineTunedModel:
        if features.inputs is None:
            raise ValueError("fine-tuning reads the space's inputs")
        fit_rows, stop_rows = inner_split(rows, seed)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        space = SpaceModel.from_description(self.space.description())
        space.load_state_dict(self.space.state_dict())
        if target.task == "classification":
            n_classes = len(target.classes)
            y = torch.from_numpy(target.y)
            weights = class_weights(target, fit_rows)
            model = FineTunedModel(FineTunedNet(space, n_classes), target.task)

            def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return F.cross_entropy(out, t, weight=weights)
        else:
            y, mean, std = standardized(target, fit_rows)
            model = FineTunedModel(FineTunedNet(space, 1), target.task, mean, std)

            def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return F.smooth_l1_loss(out[:, 0], t)

        probe = _probe(
            model.net.head, features.embeddings[fit_rows], y[torch.as_tensor(fit_rows)], loss_fn
        )
        model.record = _fine_tune(
            model.net, features, fit_rows, stop_rows, y, loss_fn, generator, self.plan
        )
        model.record["losses"]["probe"] = probe
        return model


def _probe(head: nn.Linear, embeddings: np.ndarray, y: torch.Tensor, loss_fn) -> float:
    """Head-only training on the frozen embeddings of the fit rows (full batch, AdamW)."""
    x = torch.from_numpy(np.asarray(embeddings, np.float32))
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    loss = torch.zeros(())
    for _ in range(PROBE_STEPS):
        loss = loss_fn(head(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


def _fine_tune(
    net: FineTunedNet,
    features: PredictorFeatures,
    fit_rows: np.ndarray,
    stop_rows: np.ndarray,
    y: torch.Tensor,
    loss_fn,
    generator: torch.Generator,
    plan: FineTunePlan,
) -> dict:
    """End-to-end AdamW on target loss + AUXILIARY_WEIGHT x the self-supervised loss; the
    weights of the best target loss on `stop_rows` are kept."""
    inputs, position = features.inputs, features.input_rows()
    optimizer = torch.optim.AdamW(
        [
            {"params": net.space.parameters(), "lr": SPACE_LEARNING_RATE},
            {"params": net.head.parameters(), "lr": HEAD_LEARNING_RATE},
        ],
        weight_decay=1e-4,
    )
    fit, stop = torch.as_tensor(fit_rows), torch.as_tensor(stop_rows)
    stop_batch = gather(inputs, torch.as_tensor(position[stop_rows])) if len(stop) else None
    eval_every = max(1, plan.steps // EVALUATIONS)
    best, best_state, waited, cursor, step = math.inf, None, 0, len(fit), 0
    order = fit
    target_loss = auxiliary = math.nan
    for step in range(1, plan.steps + 1):
        if cursor + plan.batch_size > len(fit):
            order, cursor = fit[torch.randperm(len(fit), generator=generator)], 0
        rows = order[cursor : cursor + plan.batch_size]
        cursor += plan.batch_size
        net.train()
        batch = gather(
            inputs, torch.as_tensor(position[rows.numpy()]), TRAINING_CHILDREN, generator
        )
        in_a = complementary_split(len(rows), len(batch), generator)
        self_supervised, _, embedding = losses_and_embedding(net.space, batch, in_a, plan.choices)
        task = loss_fn(net.head(embedding), y[rows])
        loss = task + AUXILIARY_WEIGHT * self_supervised
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        target_loss, auxiliary = float(task.detach()), float(self_supervised.detach())
        if stop_batch is None or (step % eval_every and step != plan.steps):
            continue
        net.eval()
        with torch.no_grad():
            held_out = float(loss_fn(net(stop_batch), y[stop]))
        if held_out < best - 1e-4:
            best, waited = held_out, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= PATIENCE:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {
        "epochs": step * plan.batch_size / max(len(fit), 1),
        "steps": step,
        "losses": {
            "early_stopping": best,
            "last_training_batch": target_loss,
            "auxiliary": auxiliary,
        },
        "hyperparameters": {
            "planned_steps": plan.steps,
            "batch_size": plan.batch_size,
            "space_learning_rate": SPACE_LEARNING_RATE,
            "head_learning_rate": HEAD_LEARNING_RATE,
            "auxiliary_weight": AUXILIARY_WEIGHT,
            "probe_steps": PROBE_STEPS,
            "early_stopping_rows": len(stop_rows),
        },
    }
