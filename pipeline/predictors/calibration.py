"""Calibration fitted on out-of-fold scores: temperature scaling of the logits, the
F1-optimal threshold of a two-class target, residual intervals of a regression; and the
metrics every candidate is scored with."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, mean_absolute_error, roc_auc_score

from pipeline.predictors.targets import Target


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits / temperature), dim=-1).numpy()


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood (grid search)."""
    grid = np.exp(np.linspace(-2.5, 2.5, 101))
    logits_t, target = torch.from_numpy(logits), torch.from_numpy(y)
    losses = [float(F.cross_entropy(logits_t / t, target)) for t in grid]
    return float(grid[int(np.argmin(losses))])


def fit_threshold(probability: np.ndarray, truth: np.ndarray) -> float:
    """The probability of the positive class above which F1 is highest."""
    best_f1, best = -1.0, 0.5
    for t in np.unique(np.round(probability, 3)):
        f1 = f1_score(truth, probability >= t, zero_division=0)
        if f1 > best_f1:
            best_f1, best = f1, float(t)
    return best


def decide(probabilities: np.ndarray, positive: int | None, threshold: float) -> np.ndarray:
    """Class index per row (the threshold on the positive class for two-class targets)."""
    if positive is not None and probabilities.shape[1] == 2:
        return np.where(probabilities[:, positive] >= threshold, positive, 1 - positive)
    return probabilities.argmax(axis=1)


def classification_metrics(
    probabilities: np.ndarray, y: np.ndarray, positive: int | None, threshold: float
) -> dict[str, float]:
    decided = decide(probabilities, positive, threshold)
    metrics = {"accuracy": float((decided == y).mean()), "validation_rows": int(len(y))}
    present = sorted(set(y.tolist()))
    if positive is not None and len(present) == 2:
        truth = y == positive
        metrics["auc"] = float(roc_auc_score(truth, probabilities[:, positive]))
        metrics["f1"] = float(f1_score(truth, decided == positive))
        metrics["threshold"] = threshold
    elif len(present) == probabilities.shape[1] and len(present) > 2:
        metrics["auc"] = float(roc_auc_score(y, probabilities, multi_class="ovr"))
    metrics["log_loss"] = float(
        F.nll_loss(torch.log(torch.from_numpy(probabilities) + 1e-12), torch.from_numpy(y))
    )
    return metrics


def regression_metrics(predictions: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(np.mean((predictions - y) ** 2))),
        "mae": float(mean_absolute_error(y, predictions)),
        "r2": float(1 - np.sum((predictions - y) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12)),
        "validation_rows": int(len(y)),
    }


def validation_score(target: Target, raw: np.ndarray, rows: np.ndarray) -> tuple[str, float]:
    """(metric, value) a candidate is chosen by, higher is better: AUC for classes (log loss
    when AUC is undefined), minus RMSE for regression."""
    y = target.y[rows]
    if target.task == "regression":
        return "rmse", -float(np.sqrt(np.mean((raw[rows] - y) ** 2)))
    probabilities = softmax(raw[rows])
    metrics = classification_metrics(probabilities, y, target.positive, 0.5)
    if "auc" in metrics:
        return "auc", metrics["auc"]
    return "log_loss", -metrics["log_loss"]
