"""`gbdt_blend`: the mean raw output of the two tree candidates' fold models, `gbdt` (with
the embedding's principal axes) and `gbdt_aggregates` (without). It trains nothing of its
own: its fold models are the two candidates' fold models, so its out-of-fold outputs are
the mean of theirs, and it is chosen like any candidate, by its out-of-fold score.

Why: the two tree candidates split on different inputs and their errors differ. Out of fold
on the training keys of `bench/relational.py` (no test key), the mean scored above the
better of the two on 4 of 7 real tasks (PLAID +0.0049 AUC, InstEval +0.0014, NLSW collgrad
+0.0005, NLSW grade 0.3% lower RMSE) and below it on the other 3, where it is not chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from pipeline.predictors.calibration import validation_score
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.gbdt import GradientBoostedModel
from pipeline.predictors.selection import CrossFit
from pipeline.predictors.targets import Target

NAME = "gbdt_blend"
PARTS = ("gbdt", "gbdt_aggregates")


@dataclass
class BlendedModel:
    """The mean of its parts' raw outputs (logits or values); their fold models, unchanged."""

    parts: list[GradientBoostedModel]
    reads_tokens: ClassVar[bool] = False

    def raw(self, features: PredictorFeatures) -> np.ndarray:
        return np.mean([part.raw(features) for part in self.parts], axis=0)

    def contributions(self, features: PredictorFeatures) -> dict[str, np.ndarray]:
        """Per input group, the mean of the parts' |contributions| (a group one part does
        not read, such as the embedding, counts 0 for it)."""
        each = [part.contributions(features) for part in self.parts]
        groups = list(dict.fromkeys(group for contributions in each for group in contributions))
        zero = np.zeros(features.n_rows)
        return {
            group: np.mean([contributions.get(group, zero) for contributions in each], axis=0)
            for group in groups
        }

    @property
    def record(self) -> dict:
        records = [part.record for part in self.parts]
        return {
            "epochs": float(np.mean([r.get("epochs", 0.0) for r in records])),
            "steps": int(sum(r.get("steps", 0) for r in records)),
            "losses": {name: r.get("losses", {}) for name, r in zip(PARTS, records, strict=True)},
            "hyperparameters": {
                name: r.get("hyperparameters", {}) for name, r in zip(PARTS, records, strict=True)
            },
        }

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        states, tensors = [], {}
        for i, part in enumerate(self.parts):
            state, weights = part.state()
            states.append(state)
            tensors.update({f"part{i}.{name}": value for name, value in weights.items()})
        return {"parts": states}, tensors

    @classmethod
    def from_state(cls, state: dict, tensors: dict[str, torch.Tensor]) -> BlendedModel:
        parts = []
        for i, part in enumerate(state["parts"]):
            prefix = f"part{i}."
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            parts.append(GradientBoostedModel.from_state(part, weights))
        return cls(parts)


def blend(results: list[CrossFit], target: Target) -> CrossFit | None:
    """The blend of the two tree candidates' cross-fits, or None when one was not tried."""
    by_name = {result.name: result for result in results}
    if not all(name in by_name for name in PARTS):
        return None
    parts = [by_name[name] for name in PARTS]
    out_of_fold = np.mean([part.out_of_fold for part in parts], axis=0)
    scored = parts[0].scored
    metric, score = validation_score(target, out_of_fold, scored)
    models = [BlendedModel(list(fold)) for fold in zip(*(p.models for p in parts), strict=True)]
    seconds = sum(part.seconds for part in parts)
    return CrossFit(NAME, models, out_of_fold, scored, metric, score, seconds)
