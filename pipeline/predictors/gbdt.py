"""Gradient-boosted trees (LightGBM) on the parent's own columns and the child statistics,
the candidate that reads sums and counts exactly as a GROUP BY gives them; `gbdt` adds the
embedding's first principal axes, `gbdt_aggregates` leaves the embedding out.

Why axes and not the whole embedding: on the six real-data tasks of `bench/relational.py`
the 64 raw embedding coordinates lowered the out-of-fold score of five (trees split on
noise in 64 correlated columns) and tripled the time; 8 principal axes, fitted on the
training rows without their labels, kept most of what the embedding adds where it helps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import lightgbm
import numpy as np
import torch
import torch.nn.functional as F

from pipeline.predictors.candidates import inner_split, select_rows
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target
from pipeline.spaces.projection import principal_axes

PREDICT_THREADS = 0
"""Threads LightGBM predicts with (0: OpenMP's default, every core). Models train on one
thread each (candidates train side by side) and would otherwise keep that for scoring;
rows are scored independently, so the outputs do not depend on it."""
MAX_ROUNDS = 1000
PATIENCE = 50
LEARNING_RATE = 0.05
LARGE_LEARNING_RATE = 0.1
LARGE_FROM_ROWS = 50_000
"""Fit rows from which the trees take LARGE_LEARNING_RATE: each tree is fitted on many rows,
and half the rounds reach the same fit. On TPC-H's 225k labelled line items (3 folds, out of
fold, no test row): AUC 0.8909 at 0.1 against 0.8907 at 0.05, in 21.5 s against 30.9 s. No
table of `bench/relational.py` has that many rows."""
EMBEDDING_AXES = 8
FEATURE_FRACTION = 0.8
FEATURES_PER_TREE = 100
"""On a wide table (hundreds of child statistics) a tree samples this many inputs rather
than 80% of them (at least 20%): its time grows with the inputs it reads, and on TPC-H's
customers with 8 child tables (452 inputs) two candidates took 36-38 s of a 140 s run.
Tables up to 125 inputs keep 80%: on two bench tasks of 24 and 45 inputs, 25% cost 0.003-0.009
out-of-fold AUC, and every table of `bench/relational.py` has fewer than 125."""


def fit_axes(embeddings: np.ndarray, n_axes: int) -> np.ndarray:
    """[1 + k, dim]: the mean embedding, then its first k <= n_axes principal axes."""
    k = min(n_axes, embeddings.shape[1], max(len(embeddings) - 1, 0))
    return principal_axes(embeddings, k)


def feature_fraction(n_inputs: int) -> float:
    """Share of the inputs each tree reads: 80%, or FEATURES_PER_TREE of a wide table."""
    return min(FEATURE_FRACTION, max(FEATURES_PER_TREE / max(n_inputs, 1), 0.2))


def _matrix(features: PredictorFeatures, axes: np.ndarray | None) -> np.ndarray:
    """The embedding on the axes (None: the whole embedding), then the table columns."""
    embedding = features.embeddings.astype(np.float64)
    projected = embedding if axes is None else (embedding - axes[0]) @ axes[1:].T
    return np.concatenate([projected, features.table], axis=1)


@dataclass
class GradientBoostedModel:
    booster: lightgbm.Booster
    task: str
    n_classes: int
    axes: np.ndarray | None
    """[1 + k, dim]: mean and principal axes the embedding is projected on (k may be 0);
    None for a model saved before the axes, which read the whole embedding."""
    record: dict = field(default_factory=dict)
    """How it was trained: rounds, early-stopping loss, parameters."""
    reads_tokens: ClassVar[bool] = False
    paths: torch.Tensor | None = field(default=None, repr=False, compare=False)
    """`path_contributions` of the booster, built when first needed."""

    def raw(self, features: PredictorFeatures) -> np.ndarray:
        if features.n_rows == 0:
            return np.zeros((0, self.n_classes) if self.task == "classification" else 0)
        out = self.booster.predict(
            _matrix(features, self.axes), raw_score=True, num_threads=PREDICT_THREADS
        )
        if self.task == "regression":
            return np.asarray(out, np.float64)
        if self.n_classes == 2:
            return np.stack([np.zeros_like(out), out], axis=1)
        return np.asarray(out, np.float64)

    def contributions(self, features: PredictorFeatures) -> dict[str, np.ndarray]:
        """|Contribution| of each input group per row: `path_contributions` of the trees,
        summed per input over the trees (and over the classes' trees, in absolute value),
        then per group."""
        n_embedding = features.embeddings.shape[1] if self.axes is None else len(self.axes) - 1
        if features.n_rows == 0:
            contrib = np.zeros((0, n_embedding + features.table.shape[1]))
        else:
            if self.paths is None:  # float32: shares of importance, twice as fast to sum
                self.paths = path_contributions(self.booster).float()
            leaves = self.booster.predict(
                _matrix(features, self.axes), pred_leaf=True, num_threads=PREDICT_THREADS
            )
            contrib = summed_paths(self.paths, leaves, self.booster.num_model_per_iteration())
        groups: dict[str, np.ndarray] = {}
        if n_embedding:
            groups["embedding"] = contrib[:, :n_embedding].sum(axis=1)
        for i, group in enumerate(features.groups):
            column = contrib[:, n_embedding + i]
            groups[group] = groups[group] + column if group in groups else column
        return groups

    def state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return {
            "model": self.booster.model_to_string(),
            "task": self.task,
            "n_classes": self.n_classes,
            "record": self.record,
        }, {} if self.axes is None else {"axes": torch.from_numpy(np.ascontiguousarray(self.axes))}

    @classmethod
    def from_state(cls, state: dict, tensors: dict[str, torch.Tensor]) -> GradientBoostedModel:
        booster = lightgbm.Booster(model_str=state["model"])
        # saved before the axes (no tensor): it read the whole embedding
        axes = tensors["axes"].numpy().astype(np.float64) if "axes" in tensors else None
        return cls(booster, state["task"], state["n_classes"], axes, state.get("record", {}))


def path_contributions(booster: lightgbm.Booster) -> torch.Tensor:
    """[n_trees * max_leaves, n_features]: for each leaf of each tree (row `tree *
    max_leaves + leaf`), how much each feature's splits on the path from the root moved the
    tree's expected output, the expectation of a node being the mean output of the training
    rows that reached it. A row's contributions over its leaves add up to its raw score less
    the trees' mean output, as exact TreeSHAP values do, but they are read from this table
    instead of computed per row: with 100 trees of 31 leaves on 25 inputs, LightGBM's
    TreeSHAP (`pred_contrib`) scored about 2,000 rows per CPU-second, this about 80,000 (the
    leaf lookup included). On `bench/predict_speed.py`'s model the per-row shares of the
    input groups differed from TreeSHAP's by 0.01-0.015 on average and named the same top
    group for 93-94% of rows."""
    trees = booster.dump_model()["tree_info"]
    max_leaves = max((tree["num_leaves"] for tree in trees), default=1)
    table = np.zeros((len(trees) * max_leaves, booster.num_feature()))
    for t, tree in enumerate(trees):
        root = tree["tree_structure"]
        if "split_feature" not in root:
            continue  # a single leaf: its output is its expectation
        expected = {}
        _expectations(root, expected)
        stack = [(root, np.zeros(booster.num_feature()))]
        while stack:
            node, moved = stack.pop()
            if "split_feature" not in node:
                table[t * max_leaves + node.get("leaf_index", 0)] = moved
                continue
            for side in ("left_child", "right_child"):
                child = node[side]
                step = moved.copy()
                step[node["split_feature"]] += expected[id(child)] - expected[id(node)]
                stack.append((child, step))
    return torch.from_numpy(table)


def _expectations(node: dict, expected: dict[int, float]) -> float:
    """Fill `expected[id(node)]` with the mean output of the training rows under each node
    (weighted by their counts); returns the node's row count."""
    if "split_feature" not in node:
        expected[id(node)] = node["leaf_value"]
        return node.get("leaf_count", 1)
    left, right = node["left_child"], node["right_child"]
    n_left, n_right = _expectations(left, expected), _expectations(right, expected)
    total = n_left + n_right
    if total:
        expected[id(node)] = (n_left * expected[id(left)] + n_right * expected[id(right)]) / total
    else:
        expected[id(node)] = (expected[id(left)] + expected[id(right)]) / 2
    return total


def summed_paths(paths: torch.Tensor, leaves: np.ndarray, per_iteration: int) -> np.ndarray:
    """[n, n_features]: each row's path contributions summed over the trees of each output
    (a class of a multiclass model), in absolute value, then over the outputs.

    Shape: paths [n_trees * max_leaves, n_features]; leaves [n, n_trees] (`pred_leaf`)."""
    n_trees = leaves.shape[1]
    max_leaves = len(paths) // max(n_trees, 1)
    rows = torch.from_numpy(leaves.astype(np.int64) + np.arange(n_trees) * max_leaves)
    total = torch.zeros(len(leaves), paths.shape[1], dtype=paths.dtype)
    for output in range(per_iteration):  # tree t belongs to output t % per_iteration
        total += F.embedding_bag(rows[:, output::per_iteration], paths, mode="sum").abs()
    return total.numpy()


class GradientBoosted:
    """LightGBM on the parent's columns, the child statistics and the embedding's first
    `n_axes` principal axes (0: no embedding)."""

    uses_torch_random = False

    def __init__(self, name: str = "gbdt", n_axes: int = EMBEDDING_AXES) -> None:
        self.name = name
        self.n_axes = n_axes

    def fit(
        self, features: PredictorFeatures, target: Target, rows: np.ndarray, seed: int
    ) -> GradientBoostedModel:
        fit_rows, stop_rows = inner_split(rows, seed)
        axes = fit_axes(features.embeddings[rows], self.n_axes)
        n_classes = len(target.classes or [])
        params = {
            "learning_rate": LARGE_LEARNING_RATE
            if len(fit_rows) >= LARGE_FROM_ROWS
            else LEARNING_RATE,
            "num_leaves": 31,
            "min_data_in_leaf": int(min(20, max(2, len(fit_rows) // 20))),
            "feature_fraction": feature_fraction(features.table.shape[1] + len(axes) - 1),
            "lambda_l2": 1.0,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "num_threads": 1,  # candidates train side by side, one core each
            "verbose": -1,
        }
        if target.task == "regression":
            params["objective"] = "regression"
        elif n_classes == 2:
            params["objective"] = "binary"
        else:
            params.update(objective="multiclass", num_class=n_classes)
        categorical = [len(axes) - 1 + i for i in features.categorical]

        def dataset(selected: np.ndarray, reference=None) -> lightgbm.Dataset:
            part = select_rows(features, selected)
            return lightgbm.Dataset(
                _matrix(part, axes),
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
        rounds = booster.current_iteration()
        losses = {
            f"early_stopping_{name}": float(value)
            for scores in booster.best_score.values()
            for name, value in scores.items()
        }
        if valid_sets and booster.best_iteration:
            booster = lightgbm.Booster(
                model_str=booster.model_to_string(num_iteration=booster.best_iteration)
            )
        record = {
            "epochs": float(booster.current_iteration()),
            "steps": rounds,
            "losses": losses,
            "hyperparameters": {
                **{k: v for k, v in params.items() if k not in ("verbose", "num_threads")},
                "max_rounds": MAX_ROUNDS,
                "patience": PATIENCE,
                "kept_rounds": booster.current_iteration(),
                "embedding_axes": len(axes) - 1,
            },
        }
        return GradientBoostedModel(booster, target.task, n_classes, axes, record)
