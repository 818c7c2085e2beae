"""Gradient-boosted trees (LightGBM) on the embedding, the parent's own columns and the
child statistics: the candidate that reads sums and counts exactly as a GROUP BY gives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import lightgbm
import numpy as np
import torch

from pipeline.predictors.candidates import inner_split, select_rows
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target

MAX_ROUNDS = 1000
PATIENCE = 50


def _matrix(features: PredictorFeatures) -> np.ndarray:
    return np.concatenate([features.embeddings.astype(np.float64), features.table], axis=1)


@dataclass
class GradientBoostedModel:
    booster: lightgbm.Booster
    task: str
    n_classes: int

    def raw(self, features: PredictorFeatures) -> np.ndarray:
        if features.n_rows == 0:
            return np.zeros((0, self.n_classes) if self.task == "classification" else 0)
        out = self.booster.predict(_matrix(features), raw_score=True)
        if self.task == "regression":
            return np.asarray(out, np.float64)
        if self.n_classes == 2:
            return np.stack([np.zeros_like(out), out], axis=1)
        return np.asarray(out, np.float64)

    def contributions(self, features: PredictorFeatures) -> dict[str, np.ndarray]:
        n_embedding = features.embeddings.shape[1]
        width = n_embedding + features.table.shape[1] + 1
        contrib = np.abs(self.booster.predict(_matrix(features), pred_contrib=True))
        contrib = contrib.reshape(features.n_rows, -1, width).sum(axis=1)
        groups: dict[str, np.ndarray] = {"embedding": contrib[:, :n_embedding].sum(axis=1)}
        for i, group in enumerate(features.groups):
            column = contrib[:, n_embedding + i]
            groups[group] = groups[group] + column if group in groups else column
        return groups

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return {
            "model": self.booster.model_to_string(),
            "task": self.task,
            "n_classes": self.n_classes,
        }, {}

    @classmethod
    def from_state(cls, state: dict, tensors: dict[str, torch.Tensor]) -> GradientBoostedModel:
        booster = lightgbm.Booster(model_str=state["model"])
        return cls(booster, state["task"], state["n_classes"])


class GradientBoosted:
    name: ClassVar[str] = "gbdt"

    def fit(
        self, features: PredictorFeatures, target: Target, rows: np.ndarray, seed: int
    ) -> GradientBoostedModel:
        fit_rows, stop_rows = inner_split(rows, seed)
        n_classes = len(target.classes or [])
        params = {
            "learning_rate": 0.05,
            "num_leaves": 31,
            "min_data_in_leaf": int(min(20, max(2, len(fit_rows) // 20))),
            "feature_fraction": 0.8,
            "lambda_l2": 1.0,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": max(1, torch.get_num_threads()),  # 1 inside cross-fitting
            "verbose": -1,
        }
        if target.task == "regression":
            params["objective"] = "regression"
        elif n_classes == 2:
            params["objective"] = "binary"
        else:
            params.update(objective="multiclass", num_class=n_classes)
        categorical = [features.embeddings.shape[1] + i for i in features.categorical]

        def dataset(selected: np.ndarray, reference=None) -> lightgbm.Dataset:
            part = select_rows(features, selected)
            return lightgbm.Dataset(
                _matrix(part),
                label=target.y[selected].astype(np.float64),
                categorical_feature=categorical or "auto",
                reference=reference,
                free_raw_data=False,
            )

        train = dataset(fit_rows)
        callbacks = []
        valid_sets = []
        if len(stop_rows):
            valid_sets = [dataset(stop_rows, reference=train)]
            callbacks = [lightgbm.early_stopping(PATIENCE, verbose=False)]
        booster = lightgbm.train(
            params, train, MAX_ROUNDS if valid_sets else 200, valid_sets, callbacks=callbacks
        )
        if valid_sets and booster.best_iteration:
            booster = lightgbm.Booster(
                model_str=booster.model_to_string(num_iteration=booster.best_iteration)
            )
        return GradientBoostedModel(booster, target.task, n_classes)
