"""The predictions table: one row per row of the space, target known or not.

Rows are scored in batches (embedding, fold models, importance, out-of-distribution
distance), so working memory grows with the batch, not the table; the table's columns,
MAP and LIST ones included, are built from whole arrays, never row by row."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from pipeline.predictors import Predictor, predictor_features
from pipeline.predictors.candidates import select_rows
from pipeline.predictors.features import PredictorFeatures
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.model import gather
from pipeline.spaces.space import EMBED_BATCH, Space

OOD_WARNING_SIGMA = 3.0
PREDICT_BATCH = 8192
"""Rows scored together: their embeddings, masked views and distances are all that is held
beside the per-row results."""


class Stopwatch:
    """Wall and CPU seconds (of this process, all threads) per named part, summed over
    calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - wall
            self.cpu_seconds[part] = self.cpu_seconds.get(part, 0.0) + time.process_time() - cpu


@dataclass
class Scores:
    """What the predictor says about every row of the space, before the table is built."""

    raw: np.ndarray
    """Mean of the fold models' outputs: logits [n, classes] or values [n]."""
    importance: dict[str, np.ndarray]
    """Per input group (a parent column, a child table, `embedding`, a token): [n] >= 0."""
    ood: np.ndarray
    """[n] distance from the training rows in sigmas (see `Predictor.ood_sigma`)."""
    farthest: np.ndarray
    """[n] object: the input farthest outside its training range, or None."""


def score_rows(
    space: Space,
    predictor: Predictor,
    inputs: SpaceInputs,
    clock: Stopwatch | None = None,
    batch_size: int = PREDICT_BATCH,
    embeddings: np.ndarray | None = None,
    known: np.ndarray | None = None,
) -> Scores:
    """Embed and score every row of `inputs` in batches of `batch_size` rows: the fold
    models' outputs, per-row importance (the model's own contributions, or by masking one
    token of the space at a time) and the out-of-distribution distance. `embeddings`: the
    rows' stored embeddings [n, d] when they are current (read, not recomputed). `known`
    [n] bool: rows whose output the caller has already (their out-of-fold output): the fold
    models do not score them, and their `raw` is left at 0 for the caller to fill in."""
    clock = clock or Stopwatch()
    n = inputs.n_rows
    # the table inputs (parent columns, child statistics) of every row; embeddings per batch
    table_inputs = predictor_features(inputs, np.zeros((n, 0), np.float32))
    tokens = [token.name for token in space.model.tokens]
    raw_parts, importance_parts, ood_parts, farthest_parts = [], [], [], []
    for start in range(0, max(n, 1), batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        with clock("embed"):
            batch = space.embed(inputs, rows=rows) if embeddings is None else embeddings[rows]
        features = dataclasses.replace(
            table_inputs, embeddings=batch, table=table_inputs.table[rows], rows=rows
        )
        with clock("score"):
            raw_parts.append(
                _fold_outputs(predictor, features, None if known is None else known[rows])
            )
        with clock("importance"):
            importance_parts.append(_importance(space, predictor, inputs, features, tokens))
        with clock("OOD"):
            ood, farthest = predictor.ood_sigma(features)
        ood_parts.append(ood)
        farthest_parts.append(farthest)
    names = list(importance_parts[0]) if importance_parts else []
    return Scores(
        raw=np.concatenate(raw_parts),
        importance={k: np.concatenate([part[k] for part in importance_parts]) for k in names},
        ood=np.concatenate(ood_parts),
        farthest=np.concatenate(farthest_parts),
    )


def _fold_outputs(
    predictor: Predictor, features: PredictorFeatures, known: np.ndarray | None
) -> np.ndarray:
    """The fold models' mean output for the rows of `features` that are not `known` (0 for
    those that are)."""
    if known is None or not known.any():
        return predictor.raw(features)
    scored = np.flatnonzero(~known)
    outputs = predictor.raw(select_rows(features, scored))
    raw = np.zeros((features.n_rows, *outputs.shape[1:]), outputs.dtype)
    raw[scored] = outputs
    return raw


def _importance(
    space: Space,
    predictor: Predictor,
    inputs: SpaceInputs,
    features: PredictorFeatures,
    tokens: list[str],
) -> dict[str, np.ndarray]:
    """|Contribution| per input group of each row of `features`: the model's own when it has
    them, else how much the score moves when one token of the space is hidden."""
    if features.n_rows == 0:
        return {}
    contributions = predictor.contributions(features)
    if contributions is not None:
        return contributions
    reference = predictor.importance_score(features)
    masked = (
        masked_embeddings(space, inputs, features.input_rows(), features.embeddings)
        if predictor.reads_embeddings
        else iter([features.embeddings] * len(tokens))
    )
    importance = {}
    for t, name in enumerate(tokens):
        hidden = dataclasses.replace(features, embeddings=next(masked), hidden_token=t)
        importance[name] = np.abs(reference - predictor.importance_score(hidden))
    return importance


@torch.no_grad()
def masked_embeddings(
    space: Space, inputs: SpaceInputs, rows: np.ndarray, embeddings: np.ndarray
) -> Iterator[np.ndarray]:
    """Token by token of the space: the embeddings of `rows` with that token hidden. A token
    whose content reaches the principal part is hidden from it alone
    (`SpaceModel.principal_masked_view`: no transformer pass, the learned part read from
    `embeddings`); any other token (text, or every token of a space without a principal
    part) as `Space.embed(inputs, hidden_token=t, rows=rows)` hides it, the column encoders
    run once for all tokens."""
    model = space.model.eval()
    width = model.config["embedding_dim"]
    starts = range(0, len(rows), EMBED_BATCH)
    principal = model.seen_by_principal_part() if model.principal_axes else []
    gathered = [gather(inputs, torch.as_tensor(rows[s : s + EMBED_BATCH])) for s in starts]
    bases = (
        [
            model.masking_base(
                model.flat_inputs(part), torch.from_numpy(embeddings[s : s + EMBED_BATCH])
            )
            for part, s in zip(gathered, starts, strict=True)
        ]
        if any(principal)
        else []
    )
    # (content, present, flat inputs) as the model's encoders give them, for full masking
    full = not principal or not all(principal)
    encoded = [model.encode_tokens(part) for part in gathered] if full else []
    for t in range(len(model.tokens)):
        if principal and principal[t]:
            views = [model.principal_masked_view(base, t).numpy() for base in bases]
        else:
            views = []
            for content, present, flat in encoded:
                hidden = torch.zeros_like(present)
                hidden[:, t] = True
                views.append(model.embed_tokens(content, present, hidden, flat).numpy())
        yield np.concatenate(views) if views else np.zeros((0, width), np.float32)


def predictions_table(
    predictor: Predictor,
    keys: pa.Table,
    raw: np.ndarray,
    features: PredictorFeatures | None,
    split: np.ndarray,
    importance: dict[str, np.ndarray],
    extra_warnings: list[str],
    ood: tuple[np.ndarray, np.ndarray] | None = None,
) -> pa.Table:
    """`ml.<space>__<target>_predictions` rows: one per row of the space, target known or not.

    `raw`: the predictor's outputs (out-of-fold for `split == 'train'` rows); predictions are
    in the target's own values and type. `ood`: (sigmas, farthest input) of every row as
    `Predictor.ood_sigma` gives them; measured on `features` when not given."""
    n = keys.num_rows
    if ood is None:
        assert features is not None, "features or ood distances are needed"
        ood = predictor.ood_sigma(features)
    sigma, farthest = ood
    columns = {name: keys.column(name) for name in keys.column_names}
    if predictor.task == "classification":
        probabilities = predictor.probabilities(raw)
        decided = predictor.decide(probabilities)
        chosen = probabilities[np.arange(n), decided]
        if predictor.positive is not None:
            positive = predictor.positive
            margin = np.abs(probabilities[:, positive] - predictor.threshold)
            room = np.where(
                probabilities[:, positive] >= predictor.threshold,
                1 - predictor.threshold,
                predictor.threshold,
            )
            confidence = margin / np.maximum(room, 1e-12)
        else:
            entropy = -(probabilities * np.log(probabilities + 1e-12)).sum(axis=1)
            confidence = 1 - entropy / math.log(len(predictor.classes))
        classes = pa.array(predictor.classes, predictor.prediction_type)
        columns["prediction"] = classes.take(pa.array(decided, pa.int64()))
        columns["probability"] = pa.array(chosen.astype(np.float64))
        columns["probabilities"] = map_column(predictor.class_labels, probabilities)
        columns["interval_low"] = pa.nulls(n, pa.float64())
        columns["interval_high"] = pa.nulls(n, pa.float64())
    else:
        values = np.asarray(raw, np.float64)
        low, high = predictor.interval
        columns["prediction"] = pa.array(values)
        columns["probability"] = pa.nulls(n, pa.float64())
        columns["probabilities"] = pa.nulls(n, pa.map_(pa.string(), pa.float64()))
        columns["interval_low"] = pa.array(values + low)
        columns["interval_high"] = pa.array(values + high)
        confidence = 1 / (1 + np.maximum(sigma, 0))
    columns["split"] = pa.array(split, pa.string())
    names = list(importance)
    matrix = np.stack([importance[k] for k in names], axis=1) if names else np.zeros((n, 0))
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    columns["confidence"] = pa.array(np.clip(confidence, 0, 1).astype(np.float64))
    columns["ood_sigma"] = pa.array(np.asarray(sigma).astype(np.float64))
    columns["warnings"] = warnings_column(sigma, farthest, extra_warnings)
    columns["feature_importance"] = map_column(names, shares)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    columns["predictor_version"] = pa.repeat(pa.scalar(predictor.version, pa.string()), n)
    columns["space_version"] = pa.repeat(pa.scalar(predictor.space_version, pa.string()), n)
    columns["predicted_at"] = pa.repeat(pa.scalar(now, pa.timestamp("us")), n)
    return pa.table(columns)


def map_column(keys: list[str], values: np.ndarray) -> pa.ChunkedArray:
    """MAP(VARCHAR, DOUBLE) with the same `keys` in every row and `values` [n, len(keys)]."""
    n, width = values.shape
    values = np.ascontiguousarray(values, np.float64)
    key_array = pa.array(keys, pa.string())
    chunks = []
    for start, stop in _chunks(n, width):
        offsets = np.arange(stop - start + 1, dtype=np.int32) * np.int32(width)
        repeated = key_array.take(pa.array(np.tile(np.arange(width), stop - start)))
        items = pa.array(values[start:stop].reshape(-1))
        chunks.append(pa.MapArray.from_arrays(pa.array(offsets), repeated, items))
    return pa.chunked_array(chunks, pa.map_(pa.string(), pa.float64()))


def _chunks(n: int, per_row: int) -> list[tuple[int, int]]:
    """Row ranges whose list entries (`per_row` or fewer a row) fit Arrow's 32-bit offsets."""
    step = max(1, (2**31 - 1) // max(per_row, 1))
    return [(start, min(start + step, n)) for start in range(0, max(n, 1), step)]


def warnings_column(
    sigma: np.ndarray, farthest: np.ndarray, extra_warnings: list[str]
) -> pa.ChunkedArray:
    """VARCHAR[] per row: `extra_warnings` (every row), then an out-of-distribution warning
    where the row is more than `OOD_WARNING_SIGMA` from the training rows."""
    n, shared = len(sigma), len(extra_warnings)
    flagged = np.flatnonzero(np.asarray(sigma) > OOD_WARNING_SIGMA)
    messages = []
    for i in flagged:  # only the flagged rows are formatted
        why = f" ({farthest[i]} is outside its training range)" if farthest[i] else ""
        messages.append(f"out of distribution: {sigma[i]:.1f} sigma from the training rows{why}")
    counts = np.full(n, shared, np.int64)
    counts[flagged] += 1
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    index = np.empty(int(offsets[-1]), np.int64)
    if shared:
        index[(offsets[:-1, None] + np.arange(shared)).reshape(-1)] = np.tile(np.arange(shared), n)
    index[offsets[flagged] + shared] = shared + np.arange(len(flagged))
    values = pa.array([*extra_warnings, *messages], pa.string()).take(pa.array(index))
    chunks = []
    for start, stop in _chunks(n, shared + 1):
        first = offsets[start]
        part = values.slice(first, offsets[stop] - first)
        chunks.append(
            pa.ListArray.from_arrays(
                pa.array((offsets[start : stop + 1] - first).astype(np.int32)), part
            )
        )
    return pa.chunked_array(chunks, pa.list_(pa.string()))
