"""An MLP on the frozen space embedding: focal loss with sqrt inverse-frequency class
weights, AdamW, early stopping on a seeded split of its training rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.predictors.candidates import class_weights, inner_split, standardized
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target

HIDDEN = 128
PATIENCE = 10
UPDATES = 1500
MIN_EPOCHS = 20
MIN_ROWS_SEEN = 400_000
"""Fewest epochs: MIN_EPOCHS, or fewer on large tables once this many rows are seen (40k
rows left to fit after the early-stopping split: 10 epochs); early stopping may end
sooner."""
INFERENCE_BATCH = 8192
"""Rows scored at a time (the hidden layers of a batch are all that is held)."""


class PredictorNet(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_dim, hidden),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, output_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Shape: x [B, input_dim] -> [B, output_dim]."""
        return self.layers(x)


@dataclass
class EmbeddingMLPModel:
    net: PredictorNet
    task: str
    target_mean: float = 0.0
    target_std: float = 1.0
    record: dict = field(default_factory=dict)
    """How it was trained: epochs, steps, early-stopping loss, hyperparameters."""
    reads_tokens: ClassVar[bool] = True  # importance by masking the space's tokens

    @torch.no_grad()
    def raw(self, features: PredictorFeatures) -> np.ndarray:
        """Logits [n, classes] or values [n], `INFERENCE_BATCH` rows at a time."""
        self.net.eval()
        x = torch.from_numpy(np.asarray(features.embeddings, np.float32))
        width = self.net.layers[-1].out_features
        out = np.empty((len(x), width), np.float64)
        for start in range(0, len(x), INFERENCE_BATCH):
            out[start : start + INFERENCE_BATCH] = self.net(
                x[start : start + INFERENCE_BATCH]
            ).numpy()
        if self.task == "regression":
            return out[:, 0] * self.target_std + self.target_mean
        return out

    def contributions(self, features: PredictorFeatures) -> None:
        return None

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        first, last = self.net.layers[0], self.net.layers[-1]
        return (
            {
                "task": self.task,
                "target_mean": self.target_mean,
                "target_std": self.target_std,
                "input_dim": first.in_features,
                "output_dim": last.out_features,
                "record": self.record,
            },
            {k: v.detach().contiguous() for k, v in self.net.state_dict().items()},
        )

    @classmethod
    def from_state(cls, state: dict, tensors: dict[str, torch.Tensor]) -> EmbeddingMLPModel:
        net = PredictorNet(state["input_dim"], state["output_dim"])
        net.load_state_dict(tensors)
        net.eval()
        return cls(
            net, state["task"], state["target_mean"], state["target_std"], state.get("record", {})
        )


class EmbeddingMLP:
    name: ClassVar[str] = "mlp"
    uses_torch_random: ClassVar[bool] = True

    def __init__(self, epochs: int | None = None) -> None:
        self.epochs = epochs

    def fit(
        self, features: PredictorFeatures, target: Target, rows: np.ndarray, seed: int
    ) -> EmbeddingMLPModel:
        fit_rows, stop_rows = inner_split(rows, seed)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        x = features.embeddings
        if target.task == "classification":
            n_classes = len(target.classes)
            y = torch.from_numpy(target.y)
            weights = class_weights(target, fit_rows)
            model = EmbeddingMLPModel(PredictorNet(x.shape[1], n_classes), target.task)

            def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return _focal(out, t, weights)
        else:
            y, mean, std = standardized(target, fit_rows)
            model = EmbeddingMLPModel(PredictorNet(x.shape[1], 1), target.task, mean, std)

            def loss_fn(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
                return F.smooth_l1_loss(out[:, 0], t)

        model.record = _train(model.net, x, y, fit_rows, stop_rows, loss_fn, generator, self.epochs)
        return model


def _focal(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    return (-((1 - log_p.exp()) ** gamma) * log_p * weights[target]).mean()


def _train(
    net: PredictorNet,
    x: np.ndarray,
    y: torch.Tensor,
    fit_rows: np.ndarray,
    stop_rows: np.ndarray,
    loss_fn,
    generator: torch.Generator,
    epochs: int | None,
) -> dict:
    """Minibatch AdamW, early stopping on the held-back rows' loss (best weights kept).
    Returns the record of the run."""
    xt, yt = torch.from_numpy(x[fit_rows]), y[fit_rows]
    xv, yv = torch.from_numpy(x[stop_rows]), y[stop_rows]
    n = len(xt)
    batch = min(256, max(32, n // 8))
    fewest = min(MIN_EPOCHS, max(2, math.ceil(MIN_ROWS_SEEN / max(n, 1))))
    epochs = epochs or int(min(200, max(fewest, UPDATES * batch // max(n, 1))))
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    best, best_state, patience, steps, done, last = math.inf, None, 0, 0, 0, math.nan
    for _ in range(epochs):
        net.train()
        done += 1
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            steps += 1
            rows = order[start : start + batch]
            loss = loss_fn(net(xt[rows]), yt[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            last = float(loss.detach())
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(xv), yv)) if len(xv) else last
        if val < best - 1e-4:
            best, patience = val, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            patience += 1
            if patience >= PATIENCE:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {
        "epochs": done,
        "steps": steps,
        "losses": {"early_stopping": best, "last_training_batch": last},
        "hyperparameters": {
            "hidden": HIDDEN,
            "batch_size": batch,
            "max_epochs": epochs,
            "patience": PATIENCE,
            "learning_rate": 2e-3,
            "weight_decay": 1e-3,
            "dropout": 0.1,
            "early_stopping_rows": len(xv),
        },
    }
