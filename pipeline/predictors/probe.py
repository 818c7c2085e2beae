"""What the stored embedding alone knows about a target: each labelled row's target read from
its nearest labelled rows of the other folds by cosine similarity ("similar rows", as a user
of `ml.<space>_neighbours` or `search` gets them), scored out of fold. No model is trained;
the number sits beside the predictor's own, so a reader sees how much of the predictor's
skill the embedding carries."""

from __future__ import annotations

import faiss
import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.predictors.targets import Target

NEIGHBOURS = 25
"""Labelled rows each row's estimate averages."""
MAX_READ = 50_000
"""Labelled rows of the other folds a fold's rows are compared with (a seeded sample above)."""


def knn_probe(
    embeddings: np.ndarray,
    target: Target,
    folds: np.ndarray,
    forward: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """`embedding_knn_auc` (classification) or `embedding_knn_rmse` (regression) of the mean
    target of the NEIGHBOURS most similar labelled rows of other folds (with `forward`, the
    time-ordered validation's: earlier folds only, the first fold unscored); {} when a fold
    is too small or a score is undefined. `folds`: -1 for unlabelled rows."""
    vectors = np.array(embeddings, np.float32)  # a copy: normalised in place below
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    labelled = np.flatnonzero(folds >= 0)
    classification = target.task == "classification"
    n_classes = len(target.classes or []) if classification else 0
    estimate = np.zeros((len(labelled), max(n_classes, 1)))
    scored = np.zeros(len(labelled), bool)
    rng = np.random.default_rng(seed)
    for fold in np.unique(folds[labelled]):
        held = labelled[folds[labelled] == fold]
        earlier = folds[labelled] < fold if forward else folds[labelled] != fold
        seen = labelled[earlier]
        if forward and fold == folds[labelled].min():
            continue
        if len(seen) < NEIGHBOURS or not len(held):
            return {}
        if len(seen) > MAX_READ:
            seen = np.sort(rng.choice(seen, MAX_READ, replace=False))
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors[seen])
        _, found = index.search(vectors[held], NEIGHBOURS)
        values = target.y[seen][found]
        rows = np.searchsorted(labelled, held)
        scored[rows] = True
        if classification:
            estimate[rows] = (values[..., None] == np.arange(n_classes)).mean(axis=1)
        else:
            estimate[rows, 0] = values.mean(axis=1)
    truth, estimate = target.y[labelled][scored], estimate[scored]
    if not len(truth):
        return {}
    if not classification:
        return {"embedding_knn_rmse": float(np.sqrt(np.mean((estimate[:, 0] - truth) ** 2)))}
    present = np.unique(truth.astype(int))
    if len(present) < 2:
        return {}
    if n_classes == 2:
        score = roc_auc_score(truth == target.positive, estimate[:, target.positive])
    else:
        columns = estimate[:, present] / np.maximum(
            estimate[:, present].sum(1, keepdims=True), 1e-12
        )
        score = roc_auc_score(truth, columns, multi_class="ovr", labels=present)
    return {"embedding_knn_auc": float(score)}
