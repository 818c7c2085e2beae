"""The predictor steps: train a target's predictor, and score the rows that changed."""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np

from pipeline.errors import LeakageWarning, PipelineError, warn_all
from pipeline.freshness import predictor_retrain_reason
from pipeline.locations import predictions_name, predictor_folder, space_folder, warehouse_of
from pipeline.predictors import Predictor, predictor_features, read_target, train_predictor
from pipeline.predictors.leakage import find_leaks
from pipeline.predictors.predictions import Stopwatch, predictions_table, score_rows
from pipeline.predictors.reads import (
    current_embeddings,
    out_of_fold,
    split_by_training,
    stored_embeddings,
    target_column,
    target_type,
    time_order,
)
from pipeline.run_records import record_run
from pipeline.spaces.hierarchy import read_versions
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.reads import rows_table_of, sample_rows
from pipeline.spaces.row_fingerprints import (
    FINGERPRINT,
    write_fingerprints,
)
from pipeline.spaces.space import TRAINING_ROWS, Space
from pipeline.spaces.training import TrainingResult
from pipeline.spaces.upkeep import (
    BATCH_TABLE,
    batch_inputs,
    partition_of,
    publish,
    row_changes,
    stage,
)
from pipeline.spec import Spec
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import qualified

log = logging.getLogger(__name__)


def train_target(
    spec: Spec, name: str, target: str, inputs: SpaceInputs | None = None
) -> Predictor:
    """Cross-fit the predictor candidates for `name.target` on the space's embeddings, its
    columns and its child statistics; keep the best (see `pipeline.predictors`). `inputs`:
    the rows the space was trained on (else the same rows are read: every row, or the
    space's sample of a table of more than `TRAINING_ROWS`)."""
    warehouse = warehouse_of(spec)
    started = dt.datetime.now(dt.UTC)
    space = Space.load(space_folder(spec, name))
    with warehouse.connect() as con:
        kind = target_type(con, spec, name, target)
        if inputs is None:
            table = qualified(spec.spaces[name].table)
            n_rows = con.execute(f"select count(*) from {table}").fetchone()[0]
            sample = None
            if n_rows > TRAINING_ROWS:
                sample = sample_rows(con, spec, name, TRAINING_ROWS, spec.seed)
            inputs = space.read_inputs(warehouse, con, spec, only=sample)
        else:
            rows_table_of(con, inputs.keys)
        embeddings = stored_embeddings(con, spec, name, space.version)
        values = target_column(con, spec, name, target)
        times = time_order(con, spec, name)
    if times is None and spec.spaces[name].time_column:
        warn_all(
            f"space {name}",
            [
                f"time_column {spec.spaces[name].time_column} has no value that reads as a "
                "time; predictors are validated on random folds instead of the latest rows"
            ],
        )
    # the warehouse is not held while the candidates train
    labels = read_target(name, target, kind, values)
    features = predictor_features(inputs, embeddings)
    leaks = [leak.message(name, target) for leak in find_leaks(features, labels, spec.seed)]
    warn_all(f"space {name}", leaks, LeakageWarning)
    predictor = train_predictor(
        features,
        labels,
        inputs.keys,
        spec.seed,
        model=spec.spaces[name].column(target).model,
        epochs=spec.training.predictor_epochs,
        time_order=times,
        space=space.model,
        fine_tune=spec.spaces[name].column(target).fine_tune,
    )
    predictor.space_version = space.version
    predictor.spec_digest = spec.target_digest(name, target)
    predictor.save(predictor_folder(spec, name, target), spec.keep_versions)
    result = TrainingResult(choices=None, started_at=started.timestamp())
    result.finished_at = dt.datetime.now(dt.UTC).timestamp()
    with warehouse.connect() as con:
        record_run(
            warehouse,
            con,
            "predictor",
            name,
            target,
            predictor.version,
            result,
            None,
            metrics=predictor.metrics,
            read_versions={name: space.version},
            warnings_raised=leaks,
            record=predictor.training_record(),
        )
    log.info("predictor %s.%s: %s", name, target, predictor.metrics)
    return predictor


def predict(
    spec: Spec,
    name: str,
    target: str,
    clock: Stopwatch | None = None,
    inputs: SpaceInputs | None = None,
    partition: int | None = None,
) -> int:
    """Bring the predictions table up to date: score the rows (target known or not) that are
    new, whose fingerprint changed or that another predictor version scored, remove rows that
    left the table, keep the rest (see `embed`); returns the rows scored.
    `clock`: sums the seconds of each part (read inputs, embed, score, importance, OOD,
    build table, write). A batch whose rows all have a stored embedding that the current
    space version computed from their current inputs (as `embed` leaves them) reads those
    instead of computing them again, and then, for a predictor that does not run the space
    model (`Predictor.reads_tokens`), reads only the columns and child statistics beside
    them. `inputs`, `partition`: as for `embed`."""
    clock = clock or Stopwatch()
    space = Space.load(space_folder(spec, name))
    predictor = Predictor.load(predictor_folder(spec, name, target))
    if predictor.space_version != space.version:
        raise PipelineError(
            f"predictor {name}.{target} was trained on version {predictor.space_version} of "
            f"space {name}, which is now {space.version} -> retrain it: python -m pipeline "
            f"predict --space {name} --retrain"
        )
    warehouse = warehouse_of(spec)
    table_name = predictions_name(name, target)
    slice_ = partition_of(spec, partition)
    with clock("read inputs"), warehouse.connect() as con:
        space.check_read_versions(read_versions(warehouse, con, spec, name))  # stale: refused
        write_fingerprints(con, spec, name)
        changes = row_changes(
            warehouse, con, spec, name, table_name, "predictor_version", predictor.version, slice_
        )
    if changes.nothing:
        log.info("predictor %s.%s: every row's prediction is up to date", name, target)
        return 0
    written = 0

    def embedded(con: Connection) -> np.ndarray | None:
        return current_embeddings(con, spec, name, space.version, BATCH_TABLE)

    def needs_tokens(stored: np.ndarray | None) -> bool:
        return stored is None or predictor.reads_tokens

    batches = batch_inputs(
        warehouse, spec, space, changes, inputs, embedded, clock, needs_tokens=needs_tokens
    )
    for batch, part, fingerprints, stored in batches:
        with clock("score"):
            labelled, outputs = out_of_fold(predictor, part.keys)
            known = np.zeros(part.n_rows, bool)
            known[labelled] = True
        scores = score_rows(space, predictor, part, clock, embeddings=stored, known=known)
        with clock("score"):
            raw, split = split_by_training(scores.raw, labelled, outputs)
        drift = part.drift_warnings(spec.spaces[name].table)
        if not written:
            warn_all(f"space {name} predicting {target}", drift)
        with clock("build table"):
            table = predictions_table(
                predictor,
                part.keys,
                raw,
                None,
                split,
                scores.importance,
                drift,
                ood=(scores.ood, scores.farthest),
            )
            table = table.append_column(FINGERPRINT, fingerprints)
        with clock("write"), warehouse.connect() as con:
            stage(warehouse, con, table_name, table, slice_)
        written += batch.num_rows
    with clock("write"), warehouse.connect() as con:
        publish(warehouse, con, spec, name, table_name, changes)
    return written


def train_target_if_needed(
    spec: Spec,
    name: str,
    target: str,
    retrain: bool = False,
    inputs: SpaceInputs | None = None,
) -> tuple[Predictor, str | None]:
    """Train the predictor if it needs it (no model, its space or its spec settings changed,
    or `retrain`), else load it; returns it and why it was trained (None: kept)."""
    reason = predictor_retrain_reason(spec, name, target, retrain)
    if reason is None:
        return Predictor.load(predictor_folder(spec, name, target)), None
    log.info("predictor %s.%s: training, as %s", name, target, reason)
    return train_target(spec, name, target, inputs), reason
