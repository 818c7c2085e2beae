"""`Predictor`: the chosen candidate's k fold models with the calibration fitted on their
out-of-fold scores, the out-of-fold scores of the labelled rows, and the
out-of-distribution reference; trained by `train_predictor`, saved without pickle."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save

from pipeline.predictors import blend, calibration
from pipeline.predictors.candidates import Candidate, FittedModel, one_thread
from pipeline.predictors.distance import input_ranges, knn_distance
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.fine_tune import FineTuned, FineTunedModel, fine_tuning, out_of_reach
from pipeline.predictors.gbdt import GradientBoosted, GradientBoostedModel
from pipeline.predictors.mlp import EmbeddingMLP, EmbeddingMLPModel
from pipeline.predictors.probe import knn_probe
from pipeline.predictors.selection import (
    CrossFit,
    assign_folds,
    choose,
    cross_fit,
    cross_fit_all,
)
from pipeline.predictors.targets import Target, class_text
from pipeline.spaces.model import SpaceModel
from pipeline.store import model_store
from pipeline.store.artifacts import json_bytes, load_json

OOD_REFERENCE_ROWS = 2000
MODEL_TYPES = {
    "mlp": EmbeddingMLPModel,
    "gbdt": GradientBoostedModel,
    "gbdt_aggregates": GradientBoostedModel,
    "fine_tune": FineTunedModel,
    blend.NAME: blend.BlendedModel,
}


def candidates(
    model: str, epochs: int | None, fine_tune: FineTuned | None = None
) -> list[Candidate]:
    """The candidates to try: all of them (`auto`; fine-tuning only when given), the one the
    spec names, or the two tree candidates for `gbdt_blend` (see `pipeline.predictors.blend`)."""
    every: dict[str, Candidate] = {
        "gbdt": GradientBoosted("gbdt"),
        "gbdt_aggregates": GradientBoosted("gbdt_aggregates", n_axes=0),
        "mlp": EmbeddingMLP(epochs),
    }
    if fine_tune is not None:
        every["fine_tune"] = fine_tune
    if model == blend.NAME:
        return [every[name] for name in blend.PARTS]
    return list(every.values()) if model == "auto" else [every[model]]


@dataclass
class Predictor:
    """A trained predictor for `space.target`."""

    space: str
    target: str
    task: str
    model: str
    models: list[FittedModel]
    classes: list = field(default_factory=list)
    positive: int | None = None
    temperature: float = 1.0
    threshold: float = 0.5
    interval: tuple[float, float] = (0.0, 0.0)
    ood_reference: np.ndarray | None = None
    ood_mean: float = 0.0
    ood_std: float = 1.0
    input_ranges: dict[str, list[float]] = field(default_factory=dict)
    """Per parent column and child statistic: [min, max, std] over the labelled rows at
    training (an input far outside its range is out of distribution, even when the
    embedding, whose codecs saturate, lands among the training rows)."""
    metrics: dict = field(default_factory=dict)
    out_of_fold: pa.Table | None = None
    """Key columns and `raw` out-of-fold outputs of the rows labelled at training."""
    target_type: str = "string"
    """Arrow type of the target column: predictions are written in it."""
    space_version: str = ""
    spec_digest: str = ""
    """`Spec.target_digest` when it was trained: `run` retrains a predictor whose spec changed."""
    version: str = ""

    @property
    def prediction_type(self) -> pa.DataType:
        if self.task == "regression":
            return pa.float64()
        try:
            return pa.type_for_alias(self.target_type)
        except ValueError:
            return pa.string()

    @property
    def class_labels(self) -> list[str]:
        return [class_text(c) for c in self.classes]

    # ---- inference -------------------------------------------------------------------------
    def raw(self, features: PredictorFeatures) -> np.ndarray:
        """Mean of the fold models' outputs: logits [n, classes] or values [n]."""
        return np.mean([m.raw(features) for m in self.models], axis=0)

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        return calibration.softmax(raw, self.temperature)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        return calibration.decide(probabilities, self.positive, self.threshold)

    def importance_score(self, features: PredictorFeatures) -> np.ndarray:
        """`score` of the first model's outputs: importance by masking is measured on one
        model, as `contributions` are (the fold models learn the same function)."""
        return self.score(self.models[0].raw(features))

    def score(self, raw: np.ndarray) -> np.ndarray:
        """One number per row that moves with the prediction (for importance by masking)."""
        if self.task == "regression":
            return raw / max(self.metrics.get("target_std", 1.0), 1e-12)
        probabilities = self.probabilities(raw)
        return probabilities[np.arange(len(probabilities)), self.decide(probabilities)]

    def contributions(self, features: PredictorFeatures) -> dict[str, np.ndarray] | None:
        """|Contribution| of each input group per row, from the first model: the fold models
        learn the same function, and exact tree contributions cost far more than predicting
        (11 s of a 13 s predict for five fold models on 4.7k rows)."""
        return self.models[0].contributions(features)

    def training_record(self) -> dict:
        """Epochs, steps, losses and hyperparameters of the kept models, for
        `ml.training_runs` (epochs: mean per model; steps: all models together)."""
        records = [getattr(m, "record", None) or {} for m in self.models]
        first = records[0] if records else {}
        return {
            "epochs": float(np.mean([r.get("epochs", 0.0) for r in records] or [0.0])),
            "steps": int(sum(r.get("steps", 0) for r in records)),
            "losses": {"models": [r.get("losses", {}) for r in records]},
            "hyperparameters": {
                "candidate": self.model,
                "models": len(self.models),
                **first.get("hyperparameters", {}),
            },
        }

    @property
    def reads_tokens(self) -> bool:
        """Scoring runs the space model on the rows' inputs (see `FittedModel.reads_tokens`);
        else it reads the stored embeddings beside the parent's columns and child statistics."""
        return self.models[0].reads_tokens

    @property
    def reads_embeddings(self) -> bool:
        """The fold models read the space's embeddings (a fine-tuned model runs the space
        itself on the space's inputs instead)."""
        return not isinstance(self.models[0], FineTunedModel)

    def ood_sigma(self, features: PredictorFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Per row: how far it is from the training rows, in sigmas, and the input that is
        farthest out of its training range (an object array: None when none is, or when the
        embedding is farther out). The larger of the distance to the nearest training
        embeddings (the `ood_reference` sample, in standard deviations of that distance
        among its rows) and how far any input lies outside its training [min, max] (in its
        training standard deviations)."""
        embeddings = np.asarray(features.embeddings, np.float32)
        distances = knn_distance(embeddings, self.ood_reference)
        sigma = (distances - self.ood_mean) / self.ood_std
        ranged = [(j, name) for j, name in enumerate(features.names) if name in self.input_ranges]
        beyond = np.zeros(features.n_rows)
        which = np.full(features.n_rows, None, dtype=object)
        if ranged and features.n_rows:
            columns, names = zip(*ranged, strict=True)
            low, high, std = np.array([self.input_ranges[name] for name in names]).T
            x = features.table[:, list(columns)]
            with np.errstate(invalid="ignore"):
                out = np.nan_to_num(np.maximum(x - high, low - x) / std, nan=0.0)
            farthest = out.argmax(axis=1)  # the first input of the largest excess
            beyond = np.maximum(out[np.arange(len(out)), farthest], 0.0)
            which = np.where(beyond > 0, np.array(names, dtype=object)[farthest], None)
        return np.maximum(sigma, beyond), np.where(beyond > sigma, which, None)

    # ---- persistence -----------------------------------------------------------------------
    def save(self, folder: Path, keep: int = model_store.KEEP_VERSIONS) -> str:
        """Write the predictor as one model set (made current atomically); sets and returns
        its version (a hash of what was written)."""
        tensors = {"ood_reference": torch.from_numpy(np.ascontiguousarray(self.ood_reference))}
        states = []
        for i, model in enumerate(self.models):
            state, weights = model.state()
            states.append(state)
            tensors.update({f"fold{i}.{k}": v for k, v in weights.items()})
        files = {"predictor.safetensors": save(tensors)}
        if self.out_of_fold is not None:
            buffer = io.BytesIO()
            pq.write_table(self.out_of_fold, buffer)
            files["out_of_fold.parquet"] = buffer.getvalue()
        meta = {
            "space": self.space,
            "target": self.target,
            "task": self.task,
            "model": self.model,
            "classes": self.classes,
            "positive": self.positive,
            "temperature": self.temperature,
            "threshold": self.threshold,
            "interval": list(self.interval),
            "ood_mean": self.ood_mean,
            "ood_std": self.ood_std,
            "input_ranges": self.input_ranges,
            "metrics": self.metrics,
            "target_type": self.target_type,
            "space_version": self.space_version,
            "spec_digest": self.spec_digest,
            "fold_models": states,
        }
        digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=float).encode())
        digest.update(files["predictor.safetensors"])
        self.version = digest.hexdigest()[:12]
        files["predictor.json"] = json_bytes({**meta, "version": self.version})
        model_store.write_set(folder, files, self.version, keep)
        return self.version

    @classmethod
    def load(cls, folder: Path) -> Predictor:
        """The current model set in `folder`, checked whole against its manifest."""
        folder = model_store.current_set(
            folder, f"predictor {folder.parent.parent.name}.{folder.name}"
        )
        meta = load_json(folder / "predictor.json")
        tensors = load_file(str(folder / "predictor.safetensors"))
        model_type = MODEL_TYPES[meta["model"]]
        models = []
        for i, state in enumerate(meta["fold_models"]):
            prefix = f"fold{i}."
            weights = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            models.append(model_type.from_state(state, weights))
        oof_path = folder / "out_of_fold.parquet"
        return cls(
            space=meta["space"],
            target=meta["target"],
            task=meta["task"],
            model=meta["model"],
            models=models,
            classes=meta["classes"],
            positive=meta["positive"],
            temperature=meta["temperature"],
            threshold=meta["threshold"],
            interval=tuple(meta["interval"]),
            ood_reference=tensors["ood_reference"].numpy(),
            ood_mean=meta["ood_mean"],
            ood_std=meta["ood_std"],
            input_ranges=meta.get("input_ranges", {}),
            metrics=meta["metrics"],
            out_of_fold=pq.read_table(oof_path) if oof_path.exists() else None,
            target_type=meta["target_type"],
            space_version=meta["space_version"],
            spec_digest=meta.get("spec_digest", ""),
            version=meta["version"],
        )


def train_predictor(
    features: PredictorFeatures,
    target: Target,
    keys: pa.Table,
    seed: int,
    model: str = "auto",
    epochs: int | None = None,
    time_order: np.ndarray | None = None,
    space: SpaceModel | None = None,
    fine_tune: bool | None = None,
) -> Predictor:
    """Cross-fit every candidate on the labelled rows, keep the best by its out-of-fold score,
    and calibrate it on its out-of-fold outputs; metrics are out-of-fold too. `space`: the
    space's model, which the fine-tuning candidate trains further (see `fine_tuning`)."""
    forward = time_order is not None
    folds = assign_folds(target, seed, time_order)
    labelled = np.flatnonzero(folds >= 0)
    n_models = int(folds.max()) + 1 + int(forward)
    tuned, skipped = fine_tuning(space, features, len(labelled), n_models, seed, model, fine_tune)
    tried = candidates(model, epochs, tuned if model == "fine_tune" else None)
    results = cross_fit_all(tried, features, target, folds, seed, forward)
    if tuned is not None and model == "auto":
        # second round: fine-tuning starts from the embedding, so it is tried where the
        # frozen embedding's MLP came near the best candidate (or when the spec asks)
        chance = 0.5 if target.task == "classification" else None  # scores are AUC then
        scores = {r.name: r.score for r in results}
        skipped = None if fine_tune else out_of_reach(scores, chance)
        if skipped is None:
            tried.append(tuned)
            results.append(cross_fit(tuned, features, target, folds, seed, forward))
    blended = blend.blend(results, target) if model in ("auto", blend.NAME) else None
    if blended is not None:
        results.append(blended)
    chosen = blended if model == blend.NAME else choose(results)
    if forward:
        # fold models of time blocks saw only the past of their block (the first one a fifth
        # of the rows): rows to come are scored by one model trained on every labelled row
        chosen.models = [_refit(chosen.name, tried, features, target, labelled, seed)]
    predictor = Predictor(
        space=target.space,
        target=target.column,
        task=target.task,
        model=chosen.name,
        models=chosen.models,
        classes=list(target.classes or []),
        positive=target.positive,
        target_type=str(target.arrow_type),
    )
    _calibrate(predictor, chosen, target, chosen.scored)
    predictor.metrics["chosen"] = chosen.name
    predictor.metrics["folds"] = int(folds.max()) + 1
    predictor.metrics["validation"] = (
        "time-ordered folds: each block scored by models trained on earlier blocks"
        if forward
        else "random folds"
    )
    predictor.metrics["candidates"] = [
        {"name": r.name, "metric": r.metric, "score": abs(r.score), "seconds": round(r.seconds, 2)}
        for r in results
    ]
    if skipped:
        predictor.metrics["fine_tune"] = skipped
    predictor.metrics.update(knn_probe(features.embeddings, target, folds, forward, seed))
    raw = chosen.out_of_fold[labelled]
    oof = keys.take(pa.array(labelled))
    predictor.out_of_fold = oof.append_column(
        "raw", pa.array(raw.reshape(len(labelled), -1).tolist(), pa.list_(pa.float64()))
    )
    rng = np.random.default_rng(seed)
    reference = features.embeddings[rng.permutation(labelled)[:OOD_REFERENCE_ROWS]]
    predictor.ood_reference = np.ascontiguousarray(reference)
    own = knn_distance(reference, reference, exclude_self=True)
    predictor.ood_mean, predictor.ood_std = float(own.mean()), float(own.std()) or 1.0
    predictor.input_ranges = input_ranges(features, labelled)
    return predictor


def _refit(
    name: str,
    tried: list[Candidate],
    features: PredictorFeatures,
    target: Target,
    rows: np.ndarray,
    seed: int,
) -> FittedModel:
    """Candidate `name` trained once on `rows` (a blend: each of its parts)."""
    by_name = {candidate.name: candidate for candidate in tried}
    with one_thread():
        if name == blend.NAME:
            return blend.BlendedModel(
                [by_name[p].fit(features, target, rows, seed) for p in blend.PARTS]
            )
        return by_name[name].fit(features, target, rows, seed)


def _calibrate(predictor: Predictor, chosen: CrossFit, target: Target, rows: np.ndarray) -> None:
    raw, y = chosen.out_of_fold[rows], target.y[rows]
    if target.task == "regression":
        residuals = y - raw
        predictor.interval = (
            float(np.quantile(residuals, 0.05)),
            float(np.quantile(residuals, 0.95)),
        )
        predictor.metrics = calibration.regression_metrics(raw, y)
        predictor.metrics["target_std"] = float(y.std()) or 1.0
        return
    predictor.temperature = calibration.fit_temperature(raw, y)
    probabilities = predictor.probabilities(raw)
    if predictor.positive is not None:
        predictor.threshold = calibration.fit_threshold(
            probabilities[:, predictor.positive], y == predictor.positive
        )
    predictor.metrics = calibration.classification_metrics(
        probabilities, y, predictor.positive, predictor.threshold
    )
