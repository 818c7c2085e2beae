"""Predictors for target columns: candidates (an MLP on the frozen embedding, LightGBM on the
embedding + the parent's columns + the child statistics, the space itself fine-tuned on the
target) cross-fitted on the same folds, the best kept, calibrated on out-of-fold scores.

Modules: `targets` (the target in its own values), `features` (what a predictor reads),
`candidates` (the protocol), `mlp`, `gbdt`, `blend` (the mean of the two tree candidates),
`fine_tune`, `selection` (folds, cross-fitting,
choice), `calibration`, `distance` (how far rows lie from the training rows), `predictor`
(the trained predictor, saved without pickle).
"""

from pipeline.predictors.features import PredictorFeatures, predictor_features
from pipeline.predictors.predictor import Predictor, train_predictor
from pipeline.predictors.targets import Target, read_target

__all__ = [
    "Predictor",
    "PredictorFeatures",
    "Target",
    "predictor_features",
    "read_target",
    "train_predictor",
]
