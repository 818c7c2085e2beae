"""The pipeline's steps (validate, train, embed, train predictors, predict) as plain functions.

Each step opens its own warehouse connection and closes it, so the CLI, a notebook and the
Dagster assets all call the same code. Every write is atomic.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.dbt_project.sources import write_dbt_sources
from pipeline.errors import (
    PipelineError,
    SpecError,
    TrainingHealthError,
    warn_all,
)
from pipeline.freshness import (
    predictor_retrain_reason,
    space_retrain_reason,
)
from pipeline.locations import (
    current_space_version,
    predictions_name,
    predictor_folder,
    space_folder,
    warehouse_of,
)
from pipeline.predicting import predict, train_target, train_target_if_needed
from pipeline.predictors import Predictor
from pipeline.run_records import record_run
from pipeline.spaces.hierarchy import read_versions
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.neighbour_upkeep import write_neighbours
from pipeline.spaces.row_fingerprints import (
    FINGERPRINT,
    write_fingerprints,
)
from pipeline.spaces.space import Space
from pipeline.spaces.upkeep import batch_inputs, partition_of, publish, row_changes, stage
from pipeline.spec import Spec
from pipeline.understanding.data_quality import (
    learn_space_quality,
)
from pipeline.understanding.profiling import (
    stored_profiles,
)
from pipeline.validate import SpaceValidation, validate, validate_space
from pipeline.warehouse.sql import literal

__all__ = [
    "SpaceValidation",
    "current_space_version",
    "embed",
    "neighbours",
    "predict",
    "predictions_name",
    "predictor_folder",
    "run",
    "space_folder",
    "train",
    "train_if_needed",
    "train_target",
    "train_target_if_needed",
    "update_dbt_project",
    "validate",
    "validate_space",
    "warehouse_of",
]
"""The steps as plain functions, and where their results live (`pipeline.locations`)."""

log = logging.getLogger(__name__)


def train(spec: Spec, name: str, progress: bool = True) -> Space:
    """Train a space (its children and references must be embedded already) and save it.
    The warehouse is read, closed while the model trains, then reopened to write the record."""
    return _train(spec, name, progress)[0]


def _train(spec: Spec, name: str, progress: bool = True) -> tuple[Space, SpaceInputs]:
    """`train`, and the rows it trained on as the saved codecs read them (what `embed` would
    read again)."""
    warehouse = warehouse_of(spec)
    with warehouse.connect() as con:
        profiles = stored_profiles(con, spec, name)
        data = Space.read_training_data(warehouse, con, spec, name, profiles)
    space = Space.train(spec, name, data, progress=progress)
    kept = not space.training.unhealthy or spec.training.accept_unhealthy
    if kept:
        space.save(space_folder(spec, name), spec.keep_versions)
        # the quality suite is learned from the data the model was trained on; checks of
        # later data validate against it
        learn_space_quality(spec, name, profiles)
    mi = space.training.mutual_information
    with warehouse.connect() as con:  # a failed run is on record too
        record_run(
            warehouse,
            con,
            "space",
            name,
            None,
            space.version if kept else "not saved",
            space.training,
            space.folder / "timeline.json" if kept else None,
            metrics={},
            read_versions=space.read_versions,
        )
        if kept:
            warehouse.write_table(
                con,
                "mutual_information",
                pa.table(
                    {
                        "space": pa.array([name] * len(mi), pa.string()),
                        "column": pa.array(list(mi), pa.string()),
                        "bits": pa.array(list(mi.values()), pa.float64()),
                        "space_version": pa.array([space.version] * len(mi), pa.string()),
                    }
                ),
                replace_where=f"space = {literal(name)}",
            )
    if not kept:
        raise TrainingHealthError(
            f"space {name}: training failed its health checks after the corrective retry "
            f"({'; '.join(space.training.unhealthy)}; actions tried: "
            f"{'; '.join(space.training.corrective_actions)}); the model was not saved, the "
            "previous one stays current -> look at the columns for extreme or constant values "
            "(python -m pipeline validate), lower training.learning_rate, or set "
            "training.accept_unhealthy: true to keep such a model"
        )
    log.info(
        "space %s trained: version %s, losses %s", name, space.version, space.training.final_losses
    )
    return space, data.inputs


def embed(
    spec: Spec, name: str, inputs: SpaceInputs | None = None, partition: int | None = None
) -> int:
    """Bring `ml.<name>_embeddings` up to date with the saved model: embed the rows that are
    new, whose fingerprint changed (their columns, children or references) or that another
    model version embedded, in batches (`upkeep.batch_inputs`), each staged as it is done; then
    publish them in one transaction, removing rows that left the table and keeping the rest
    as they are (their `embedded_at` too). A killed run's staged batches are not redone.
    Returns the rows embedded. `inputs`: every row as `Space.read_inputs` gave them for the
    current model (else each batch is read). `partition`: only the rows of that slice of
    `spec.partitions` (`upkeep.Partition`), published beside the other slices' rows."""
    space = Space.load(space_folder(spec, name))
    slice_ = partition_of(spec, partition)
    warehouse = warehouse_of(spec)
    table_name = f"{name}_embeddings"
    with warehouse.connect() as con:
        space.check_read_versions(read_versions(warehouse, con, spec, name))  # stale: refused
        write_fingerprints(con, spec, name)
        changes = row_changes(
            warehouse, con, spec, name, table_name, "space_version", space.version, slice_
        )
    if changes.nothing:
        log.info("space %s: every row's embedding is up to date", name)
        return 0
    written = 0
    for batch, part, fingerprints, _ in batch_inputs(warehouse, spec, space, changes, inputs):
        if not written:
            warn_all(f"space {name}", part.drift_warnings(spec.spaces[name].table))
        embeddings = space.embed(part)
        if not np.isfinite(embeddings).all():
            raise PipelineError(
                f"space {name}: the model gives non-finite embeddings for "
                f"{int((~np.isfinite(embeddings)).any(axis=1).sum())} row(s); nothing was "
                f"written -> retrain the space (python -m pipeline train --space {name})"
            )
        table = space.embeddings_table(part, embeddings).append_column(FINGERPRINT, fingerprints)
        with warehouse.connect() as con:
            stage(warehouse, con, table_name, table, slice_)
        written += batch.num_rows
    with warehouse.connect() as con:
        publish(warehouse, con, spec, name, table_name, changes)
    log.info(
        "space %s: %d of %d rows embedded (%d staged by an earlier run), %d removed",
        name,
        written,
        changes.rows,
        changes.pending,
        changes.removed.num_rows,
    )
    return written


def neighbours(spec: Spec, name: str) -> int:
    """Bring `ml.<name>_neighbours` and the index `search` reads up to date with the stored
    embeddings: the rows whose lists changed, or the whole when it must
    (`pipeline.spaces.neighbour_upkeep`); returns the rows written (0: nothing changed)."""
    return write_neighbours(warehouse_of(spec), spec, name, spec.keep_versions)


def run(spec: Spec, progress: bool = True, retrain: bool = False) -> dict[str, dict]:
    """The whole pipeline, brought up to date: validate; then bottom-up, train each space
    that needs it (`upkeep.retrain_reason`; `retrain`: every space) and embed the rows that
    changed (+ neighbours); then the predictors the same way. A space trained here is read
    once: its embed, predictor and predict steps read the rows it was trained on. The spec's
    dbt project (if any) gets its `ml` source and spaces from the spec first."""
    if spec.dbt_project is not None:
        update_dbt_project(spec)
    validate(spec, changed_only=not retrain)
    summary: dict[str, dict] = {}
    shared: dict[str, SpaceInputs] = {}
    for name in spec.training_order():
        space, reason, inputs = _train_if_needed(spec, name, retrain, progress)
        rows = embed(spec, name, inputs)
        neighbours(spec, name)  # also after a run that stopped between the two steps
        if spec.spaces[name].targets and inputs is not None:
            shared[name] = inputs
        del inputs
        summary[name] = {
            "version": space.version,
            "trained": reason,
            "rows_embedded": rows,
            "losses": space.training.final_losses if reason else None,
        }
    for name in spec.training_order():
        for target in spec.spaces[name].targets:
            reason = predictor_retrain_reason(spec, name, target, retrain)
            if reason:
                log.info("predictor %s.%s: training, as %s", name, target, reason)
                predictor = train_target(spec, name, target, shared.get(name))
            else:
                predictor = Predictor.load(predictor_folder(spec, name, target))
            rows = predict(spec, name, target, inputs=shared.get(name))
            summary[name][f"{target}_trained"] = reason
            summary[name][f"{target}_rows_predicted"] = rows
            summary[name][f"{target}_metrics"] = predictor.metrics
    return summary


def update_dbt_project(spec: Spec) -> list[Path]:
    """Write the spec's `ml` dbt source and `ml_spaces()` macro into its dbt project."""
    if spec.dbt_project is None:
        raise SpecError(
            "dbt_project",
            "no dbt project: the spec sets none and there is no sql/dbt_project.yml beside it",
            "set dbt_project: <folder of your dbt_project.yml>",
        )
    try:
        return write_dbt_sources(spec, spec.dbt_project)
    except FileNotFoundError as error:
        raise SpecError("dbt_project", str(error), "point it at a dbt project folder") from None


def train_if_needed(
    spec: Spec, name: str, retrain: bool = False, progress: bool = True
) -> tuple[Space, str | None]:
    """Train the space if it needs it (`space_retrain_reason`), else load it; returns it and
    why it was trained (None: kept)."""
    space, reason, _ = _train_if_needed(spec, name, retrain, progress)
    return space, reason


def _train_if_needed(
    spec: Spec, name: str, retrain: bool, progress: bool
) -> tuple[Space, str | None, SpaceInputs | None]:
    reason = space_retrain_reason(spec, name, retrain)
    if reason is None:
        space = Space.load(space_folder(spec, name))
        log.info("space %s: model %s is up to date", name, space.version)
        return space, None, None
    log.info("space %s: training, as %s", name, reason)
    space, inputs = _train(spec, name, progress=progress)
    return space, reason, inputs
