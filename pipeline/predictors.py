"""Predictors on a frozen space: an MLP per target column, focal loss with class weights,
temperature calibration, F1-optimal threshold, out-of-distribution distance, and per-row
feature importance by masking one token at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score
from torch import nn

from pipeline.artifacts import load_json, save_json, save_weights
from pipeline.encoders.base import label
from pipeline.encoders.boolean import BooleanCodec
from pipeline.errors import DataError

OOD_NEIGHBOURS = 5
OOD_REFERENCE_ROWS = 2000


def holdout_mask(labels: list, seed: int, fraction: float = 0.2) -> np.ndarray:
    """Rows held out for validation: a seeded split, stratified by label for classes."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels, dtype=object)
    mask = np.zeros(len(labels_arr), dtype=bool)
    try:
        groups = {value: np.flatnonzero(labels_arr == value) for value in set(labels_arr.tolist())}
    except TypeError:
        groups = {None: np.arange(len(labels_arr))}
    if len(groups) > max(20, len(labels_arr) // 10):
        groups = {None: np.arange(len(labels_arr))}
    for key in sorted(groups, key=str):
        rows = groups[key]
        chosen = rng.permutation(rows)[: int(round(len(rows) * fraction))]
        mask[chosen] = True
    return mask


class PredictorNet(nn.Module):
    def __init__(self, input_dim: int, output_dim: int, hidden: int = 128) -> None:
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
        return self.layers(x)


@dataclass
class Predictor:
    """A trained predictor for `space.target`."""

    space: str
    target: str
    task: str
    net: PredictorNet
    classes: list[str] = field(default_factory=list)
    positive: str | None = None
    temperature: float = 1.0
    threshold: float = 0.5
    target_mean: float = 0.0
    target_std: float = 1.0
    interval: tuple[float, float] = (0.0, 0.0)
    ood_reference: np.ndarray | None = None
    ood_mean: float = 0.0
    ood_std: float = 1.0
    metrics: dict[str, float] = field(default_factory=dict)
    version: str = ""

    # ---- inference -------------------------------------------------------------------------
    @torch.no_grad()
    def raw_outputs(self, embeddings: np.ndarray) -> np.ndarray:
        self.net.eval()
        return self.net(torch.from_numpy(np.asarray(embeddings, np.float32))).numpy()

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        logits = self.raw_outputs(embeddings) / self.temperature
        return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Class index per row (threshold on the positive class for binary targets)."""
        if self.positive is not None and len(self.classes) == 2:
            positive = self.classes.index(self.positive)
            return np.where(probabilities[:, positive] >= self.threshold, positive, 1 - positive)
        return probabilities.argmax(axis=1)

    def regress(self, embeddings: np.ndarray) -> np.ndarray:
        return self.raw_outputs(embeddings)[:, 0] * self.target_std + self.target_mean

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        """One number per row that moves with the prediction (used for feature importance)."""
        if self.task == "regression":
            return self.regress(embeddings) / self.target_std
        probabilities = self.probabilities(embeddings)
        return probabilities[np.arange(len(probabilities)), self.decide(probabilities)]

    def ood_sigma(self, embeddings: np.ndarray) -> np.ndarray:
        """Distance to the nearest training embeddings, in standard deviations of that
        distance among the training rows themselves."""
        distances = _knn_distance(np.asarray(embeddings, np.float32), self.ood_reference)
        return (distances - self.ood_mean) / self.ood_std

    # ---- persistence -----------------------------------------------------------------------
    def save(self, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        holder = nn.Module()
        holder.net = self.net
        holder.register_buffer("ood_reference", torch.from_numpy(self.ood_reference))
        self.version = save_weights(holder, folder / "predictor.safetensors")
        save_json(
            {
                "space": self.space,
                "target": self.target,
                "task": self.task,
                "classes": self.classes,
                "positive": self.positive,
                "temperature": self.temperature,
                "threshold": self.threshold,
                "target_mean": self.target_mean,
                "target_std": self.target_std,
                "interval": list(self.interval),
                "ood_mean": self.ood_mean,
                "ood_std": self.ood_std,
                "metrics": self.metrics,
                "version": self.version,
                "input_dim": self.net.layers[0].in_features,
                "output_dim": self.net.layers[-1].out_features,
            },
            folder / "predictor.json",
        )
        return self.version

    @classmethod
    def load(cls, folder: Path) -> Predictor:
        meta = load_json(folder / "predictor.json")
        state = load_file(str(folder / "predictor.safetensors"))
        net = PredictorNet(meta["input_dim"], meta["output_dim"])
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        net.eval()
        return cls(
            space=meta["space"],
            target=meta["target"],
            task=meta["task"],
            net=net,
            classes=meta["classes"],
            positive=meta["positive"],
            temperature=meta["temperature"],
            threshold=meta["threshold"],
            target_mean=meta["target_mean"],
            target_std=meta["target_std"],
            interval=tuple(meta["interval"]),
            ood_reference=state["ood_reference"].numpy(),
            ood_mean=meta["ood_mean"],
            ood_std=meta["ood_std"],
            metrics=meta["metrics"],
            version=meta["version"],
        )


def _knn_distance(x: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    out = np.empty(len(x), np.float32)
    k = min(OOD_NEIGHBOURS + int(exclude_self), len(reference))
    for start in range(0, len(x), 2048):
        chunk = torch.cdist(torch.from_numpy(x[start : start + 2048]), torch.from_numpy(reference))
        nearest = chunk.topk(k, largest=False).values
        if exclude_self:
            nearest = nearest[:, 1:]
        out[start : start + 2048] = nearest.mean(dim=1).numpy()
    return out


def target_labels(values: list, target_type: str) -> list:
    """Normalised target values: strings for classes, floats for regression, None if missing."""
    if target_type == "boolean":
        return [None if (b := BooleanCodec.parse(v)) is None else str(b).lower() for v in values]
    if target_type in ("category", "ordinal"):
        return [label(v) for v in values]
    out = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(f if math.isfinite(f) else None)
    return out


def train_predictor(
    space: str,
    target: str,
    target_type: str,
    embeddings: np.ndarray,
    labels: list,
    seed: int,
    epochs: int | None = None,
) -> Predictor:
    """Train on rows whose label is known; metrics come from a seeded held-out split."""
    known = np.array([label is not None for label in labels])
    x_all = np.asarray(embeddings, np.float32)
    x = x_all[known]
    y_raw = [label for label in labels if label is not None]
    task = "regression" if target_type == "scalar" else "classification"
    if len(y_raw) < 10:
        raise DataError(
            f"spaces.{space}.columns.{target}: only {len(y_raw)} rows have a target value; "
            "a predictor needs at least 10 -> label more rows or drop target: true"
        )
    holdout = holdout_mask(y_raw, seed)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    if task == "classification":
        classes = sorted(set(y_raw))
        if len(classes) < 2:
            raise DataError(
                f"spaces.{space}.columns.{target}: every known target is '{classes[0]}'; "
                "a predictor needs at least two classes"
            )
        y = np.array([classes.index(label) for label in y_raw])
        counts = np.bincount(y[~holdout], minlength=len(classes)).astype(np.float64)
        weights = 1.0 / np.sqrt(np.maximum(counts, 1))
        weights = torch.tensor(weights / weights.mean(), dtype=torch.float32)
        net = PredictorNet(x.shape[1], len(classes))
        _fit(
            net,
            x[~holdout],
            torch.from_numpy(y[~holdout]),
            x[holdout],
            torch.from_numpy(y[holdout]),
            lambda out, t: _focal(out, t, weights),
            generator,
            epochs,
        )
        predictor = Predictor(space, target, task, net, classes=classes)
        if "true" in classes and len(classes) == 2:
            predictor.positive = "true"
        elif len(classes) == 2:
            predictor.positive = classes[int(np.argmin(np.bincount(y)))]
        _calibrate(predictor, x[holdout], y[holdout])
        predictor.metrics = _classification_metrics(predictor, x[holdout], y[holdout])
    else:
        y = np.array(y_raw, np.float64)
        mean, std = float(y[~holdout].mean()), float(y[~holdout].std()) or 1.0
        net = PredictorNet(x.shape[1], 1)
        target_t = torch.tensor((y - mean) / std, dtype=torch.float32)
        _fit(
            net,
            x[~holdout],
            target_t[~holdout],
            x[holdout],
            target_t[holdout],
            lambda out, t: F.smooth_l1_loss(out[:, 0], t),
            generator,
            epochs,
        )
        predictor = Predictor(space, target, task, net, target_mean=mean, target_std=std)
        residuals = y[holdout] - predictor.regress(x[holdout])
        predictor.interval = (
            float(np.quantile(residuals, 0.05)),
            float(np.quantile(residuals, 0.95)),
        )
        predictions = predictor.regress(x[holdout])
        predictor.metrics = {
            "rmse": float(np.sqrt(np.mean((predictions - y[holdout]) ** 2))),
            "mae": float(mean_absolute_error(y[holdout], predictions)),
            "r2": float(
                1
                - np.sum((predictions - y[holdout]) ** 2)
                / max(np.sum((y[holdout] - y[holdout].mean()) ** 2), 1e-12)
            ),
            "validation_rows": int(holdout.sum()),
        }
    rng = np.random.default_rng(seed)
    train_rows = np.flatnonzero(~holdout)
    reference = x[~holdout][rng.permutation(len(train_rows))[:OOD_REFERENCE_ROWS]]
    predictor.ood_reference = reference
    own = _knn_distance(reference, reference, exclude_self=True)
    predictor.ood_mean, predictor.ood_std = float(own.mean()), float(own.std()) or 1.0
    return predictor


def _focal(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, gamma: float = 2.0
) -> torch.Tensor:
    log_p = F.log_softmax(logits, dim=-1).gather(1, target[:, None])[:, 0]
    return (-((1 - log_p.exp()) ** gamma) * log_p * weights[target]).mean()


def _fit(
    net: PredictorNet,
    x_train: np.ndarray,
    y_train: torch.Tensor,
    x_val: np.ndarray,
    y_val: torch.Tensor,
    loss_fn,
    generator: torch.Generator,
    epochs: int | None,
) -> None:
    """Minibatch AdamW with early stopping on the validation loss (best weights kept)."""
    xt, xv = torch.from_numpy(x_train), torch.from_numpy(x_val)
    n = len(xt)
    batch = min(128, max(16, n // 8))
    epochs = epochs or int(min(300, max(40, 4000 * batch // max(n, 1))))
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-3)
    best, best_state, patience = math.inf, None, 0
    for _ in range(epochs):
        net.train()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            loss = loss_fn(net(xt[rows]), y_train[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            val = float(loss_fn(net(xv), y_val)) if len(xv) else float(loss)
        if val < best - 1e-4:
            best, patience = val, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            patience += 1
            if patience >= 20:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()


def _calibrate(predictor: Predictor, x_val: np.ndarray, y_val: np.ndarray) -> None:
    """Temperature scaling (grid search on held-out NLL), then the F1-optimal threshold."""
    logits = torch.from_numpy(predictor.raw_outputs(x_val))
    target = torch.from_numpy(y_val)
    grid = np.exp(np.linspace(-2.5, 2.5, 101))
    losses = [float(F.cross_entropy(logits / t, target)) for t in grid]
    predictor.temperature = float(grid[int(np.argmin(losses))])
    if predictor.positive is None:
        return
    positive = predictor.classes.index(predictor.positive)
    p = predictor.probabilities(x_val)[:, positive]
    truth = y_val == positive
    best_f1, best_t = -1.0, 0.5
    for t in np.unique(np.round(p, 3)):
        f1 = f1_score(truth, p >= t, zero_division=0)
        if f1 > best_f1:
            best_f1, best_t = f1, float(t)
    predictor.threshold = best_t


def _classification_metrics(
    predictor: Predictor, x_val: np.ndarray, y_val: np.ndarray
) -> dict[str, float]:
    probabilities = predictor.probabilities(x_val)
    decided = predictor.decide(probabilities)
    metrics = {"accuracy": float((decided == y_val).mean()), "validation_rows": int(len(y_val))}
    if len(set(y_val.tolist())) > 1:
        if len(predictor.classes) == 2:
            positive = predictor.classes.index(predictor.positive)
            metrics["auc"] = float(roc_auc_score(y_val == positive, probabilities[:, positive]))
            metrics["f1"] = float(f1_score(y_val == positive, decided == positive))
            metrics["threshold"] = predictor.threshold
        else:
            present = sorted(set(y_val.tolist()))
            if len(present) == len(predictor.classes):
                metrics["auc"] = float(roc_auc_score(y_val, probabilities, multi_class="ovr"))
    metrics["log_loss"] = float(
        F.nll_loss(torch.log(torch.from_numpy(probabilities) + 1e-12), torch.from_numpy(y_val))
    )
    return metrics
