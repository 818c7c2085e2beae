"""Cross-fitting and choosing a candidate: every candidate is trained k times, each time
scoring the fold it did not see, so every labelled row gets an out-of-fold score; the
candidate with the best out-of-fold score is kept and every score is recorded."""

from __future__ import annotations

import logging
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from pipeline.predictors.calibration import validation_score
from pipeline.predictors.candidates import Candidate, FittedModel, one_thread, select_rows
from pipeline.predictors.features import PredictorFeatures
from pipeline.predictors.targets import Target

log = logging.getLogger(__name__)


FEW_FOLDS_FROM = 20_000
"""Labelled rows from which 3 folds are cross-fitted instead of 5: each model still learns
from two thirds of them (13k+ rows, 11k+ after its early-stopping split) and every row is
scored out of fold, at 60% of the training (and scoring) cost."""


TWO_FOLDS_FROM = 100_000
"""Labelled rows from which 2 folds are enough: each model learns from half of them (50k+
rows), and a third fold model on 225k TPC-H line items added 12 s to a 120 s run."""


def n_folds(n_labelled: int) -> int:
    if n_labelled >= TWO_FOLDS_FROM:
        return 2
    return 5 if n_labelled < FEW_FOLDS_FROM else 3


def assign_folds(target: Target, seed: int, time_order: np.ndarray | None = None) -> np.ndarray:
    """Fold index of each row (-1: unlabelled). Random by a seeded permutation (never by the
    labels, so changing one fold's labels changes no other fold's models); contiguous time
    blocks, earliest first, when the table has a time column (see `cross_fit`)."""
    known = np.flatnonzero(target.known)
    k = n_folds(len(known))
    folds = np.full(len(target.y), -1, np.int64)
    if time_order is not None:
        order = known[np.argsort(time_order[known], kind="stable")]
    else:
        order = np.random.default_rng(seed).permutation(known)
    for fold, part in enumerate(np.array_split(order, k)):
        folds[part] = fold
    return folds


@dataclass
class CrossFit:
    """One candidate's k models and its out-of-fold raw outputs for the labelled rows."""

    name: str
    models: list[FittedModel]
    out_of_fold: np.ndarray
    scored: np.ndarray
    """Rows whose out-of-fold outputs score, calibrate and measure the candidate."""
    metric: str
    score: float
    seconds: float


def cross_fit(
    candidate: Candidate,
    features: PredictorFeatures,
    target: Target,
    folds: np.ndarray,
    seed: int,
    forward: bool = False,
) -> CrossFit:
    """Train one model per fold and score the fold it did not see. `forward` (time blocks):
    block j > 0 is scored by a model trained only on earlier blocks, and only those blocks
    score the candidate; block 0 is scored by a model trained on the later ones, so that
    every labelled row still gets an out-of-fold output."""
    started = time.perf_counter()
    models, out_of_fold = [], None
    for fold in range(int(folds.max()) + 1):
        before = (folds >= 0) & (folds < fold) if forward and fold > 0 else folds >= 0
        train_rows = np.flatnonzero(before & (folds != fold))
        held_out = np.flatnonzero(folds == fold)
        with one_thread():
            model = candidate.fit(features, target, train_rows, seed + fold)
            raw = model.raw(select_rows(features, held_out))
        if out_of_fold is None:
            out_of_fold = np.full((len(folds), *raw.shape[1:]), np.nan)
        out_of_fold[held_out] = raw
        models.append(model)
    scored = np.flatnonzero(folds >= (1 if forward else 0))
    metric, score = validation_score(target, out_of_fold, scored)
    seconds = time.perf_counter() - started
    log.info("candidate %s: out-of-fold %s %.4f (%.1f s)", candidate.name, metric, score, seconds)
    return CrossFit(candidate.name, models, out_of_fold, scored, metric, score, seconds)


def cross_fit_all(
    candidates: list[Candidate],
    features: PredictorFeatures,
    target: Target,
    folds: np.ndarray,
    seed: int,
    forward: bool = False,
) -> list[CrossFit]:
    """Cross-fit every candidate, two at a time on a machine with two cores or more. The
    candidates that draw from torch's global random generator run one after another on the
    first worker (their draws stay in the same order, so results repeat exactly); the
    others, which draw from their own seeds, are taken from a shared queue by whichever
    worker is free. Every model trains on one thread. Results come in candidate order."""
    ordered = [c for c in candidates if c.uses_torch_random]
    free = queue.SimpleQueue()
    for candidate in candidates:
        if not candidate.uses_torch_random:
            free.put(candidate)
    if (os.cpu_count() or 1) < 2 or len(candidates) < 2 or free.empty():
        return [cross_fit(c, features, target, folds, seed, forward) for c in candidates]

    def work(own: list[Candidate]) -> list[CrossFit]:
        done = [cross_fit(c, features, target, folds, seed, forward) for c in own]
        while True:
            try:
                candidate = free.get_nowait()
            except queue.Empty:
                return done
            done.append(cross_fit(candidate, features, target, folds, seed, forward))

    with one_thread(), ThreadPoolExecutor(max_workers=2) as pool:
        done = {
            r.name: r
            for future in [pool.submit(work, ordered), pool.submit(work, [])]
            for r in future.result()
        }
    return [done[c.name] for c in candidates]


def choose(results: list[CrossFit]) -> CrossFit:
    """The best out-of-fold score; on a tie the earlier (simpler) candidate."""
    best = results[0]
    for result in results[1:]:
        if result.score > best.score + 1e-9:
            best = result
    return best
