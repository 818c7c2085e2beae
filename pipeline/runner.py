"""The pipeline's steps (validate, train, embed, train predictors, predict) as plain functions.

Each step opens its own warehouse connection and closes it, so the CLI, a notebook and the
Dagster assets all call the same code. Every write is atomic.
"""

from __future__ import annotations

import datetime as dt
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.errors import DataWarning, LeakageWarning, PipelineError, TrainingHealthError
from pipeline.predictors import Predictor, predictor_features, read_target, train_predictor
from pipeline.predictors.leakage import find_leaks
from pipeline.predictors.predictions import Stopwatch, predictions_table, score_rows
from pipeline.predictors.reads import (
    out_of_fold,
    split_by_training,
    stored_embeddings,
    target_column,
    target_type,
    time_order,
)
from pipeline.run_records import record_run
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.neighbour_table import write_neighbours
from pipeline.spaces.reads import rows_table_of
from pipeline.spaces.space import Space
from pipeline.spaces.training import TrainingResult
from pipeline.spec import Spec
from pipeline.store.artifacts import load_json
from pipeline.store.model_store import current_set
from pipeline.understanding.data_quality import (
    QualityReport,
    check_space_quality,
    learn_space_quality,
)
from pipeline.understanding.joins import (
    JoinCheck,
    join_report_table,
    raise_on_blocking,
    validate_joins,
)
from pipeline.understanding.profiling import (
    ColumnProfile,
    profile_space,
    profiles_table,
    stored_profiles,
)
from pipeline.understanding.validation import check_key, check_space_columns
from pipeline.warehouse.connection import Warehouse
from pipeline.warehouse.sql import literal

log = logging.getLogger(__name__)


def warehouse_of(spec: Spec) -> Warehouse:
    return Warehouse(spec.warehouse, spec.output_schema)


def space_folder(spec: Spec, name: str) -> Path:
    return Path(spec.artifacts) / name


def current_space_version(spec: Spec, name: str) -> str:
    """The version of the space's current model set (without loading its weights)."""
    folder = current_set(space_folder(spec, name), f"space {name}")
    return str(load_json(folder / "space.json")["version"])


def predictor_folder(spec: Spec, name: str, target: str) -> Path:
    return space_folder(spec, name) / "predictors" / target


def predictions_name(name: str, target: str) -> str:
    return f"{name}__{target}_predictions"


@dataclass
class SpaceValidation:
    """What validating one space found: its column profile and the joins it reads."""

    space: str
    profiles: list[ColumnProfile]
    joins: list[JoinCheck]
    quality: QualityReport | None = None


def validate_space(spec: Spec, name: str) -> SpaceValidation:
    """Check columns and key, profile the columns, check the space's joins; write
    `ml.column_profile` and `ml.join_report` rows for this space. Raises on a bad spec or key;
    join problems are returned (see `raise_on_blocking`)."""
    warehouse = warehouse_of(spec)
    with warehouse.connect() as con:
        check_space_columns(con, spec, name)
        check_key(con, spec, name)
        profiles = profile_space(con, spec, name)
        joins = validate_joins(con, spec, space=name)
        warehouse.write_table(
            con,
            "column_profile",
            profiles_table(profiles),
            replace_where=f"space = {literal(name)}",
        )
        report = join_report_table(joins).append_column(
            "space", pa.array([name] * len(joins), pa.string())
        )
        warehouse.write_table(con, "join_report", report, replace_where=f"space = {literal(name)}")
    _warn(
        f"space {name}",
        [f"join {j.place}: {j.message}" for j in joins if j.status == "warn"]
        + [
            f"column {p.column}: {p.unparsed_count} value(s) are not {p.detected_type} "
            f"(e.g. {', '.join(repr(e) for e in p.unparsed_examples)}); read as missing"
            for p in profiles
            if p.unparsed_count and not p.excluded
        ],
    )
    for p in profiles:
        if p.excluded and p.role == "input":
            log.info("space %s: column %s excluded: %s", name, p.column, p.reason)
    return SpaceValidation(name, profiles, joins)


def validate(spec: Spec) -> list[SpaceValidation]:
    """Validate every space; stop with JoinValidationError when a join check fails. Then
    check each space's data against the quality suite learned when it was trained (failed
    expectations warn; see `ml.quality_results`)."""
    results = [validate_space(spec, name) for name in spec.training_order()]
    raise_on_blocking([j for r in results for j in r.joins])
    for result in results:
        report = check_space_quality(spec, result.space, result.profiles)
        result.quality = report
        if report.failed:
            _warn(
                f"space {result.space}",
                [
                    f"data quality: {len(report.failed)} of {report.evaluated} expectation(s) "
                    f"learned at training failed on the current data: "
                    f"{', '.join(report.failed)} (details in ml.quality_results)"
                ],
            )
    return results


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


def embed(spec: Spec, name: str, inputs: SpaceInputs | None = None) -> int:
    """Embed every current row of the space with the saved model; returns the row count.
    `inputs`: the rows as `Space.read_inputs` gave them for the current model (else read)."""
    space = Space.load(space_folder(spec, name))
    warehouse = warehouse_of(spec)
    if inputs is None:
        with warehouse.connect() as con:
            inputs = space.read_inputs(warehouse, con, spec)
    _warn(f"space {name}", inputs.drift_warnings(spec.spaces[name].table))
    embeddings = space.embed(inputs)
    if not np.isfinite(embeddings).all():
        raise PipelineError(
            f"space {name}: the model gives non-finite embeddings for "
            f"{int((~np.isfinite(embeddings)).any(axis=1).sum())} row(s); nothing was "
            f"written -> retrain the space (python -m pipeline train --space {name})"
        )
    table = space.embeddings_table(inputs, embeddings)
    with warehouse.connect() as con:
        warehouse.write_table(con, f"{name}_embeddings", table)
    return len(embeddings)


def neighbours(spec: Spec, name: str) -> int:
    """Write `ml.<name>_neighbours` from the stored embeddings and keep its index for
    `search` (see `pipeline.spaces.neighbour_table`); returns the rows written (0: none kept)."""
    return write_neighbours(warehouse_of(spec), spec, name, spec.keep_versions)


def _warn(where: str, messages: list[str], category: type[Warning] = DataWarning) -> None:
    """Log each message and raise it as a warning of `category` (the step goes on)."""
    for message in messages:
        log.warning("%s: %s", where, message)
        warnings.warn(f"{where}: {message}", category, stacklevel=3)


def train_target(
    spec: Spec, name: str, target: str, inputs: SpaceInputs | None = None
) -> Predictor:
    """Cross-fit the predictor candidates for `name.target` on the space's embeddings, its
    columns and its child statistics; keep the best (see `pipeline.predictors`). `inputs`:
    as for `embed`."""
    warehouse = warehouse_of(spec)
    started = dt.datetime.now(dt.UTC)
    space = Space.load(space_folder(spec, name))
    with warehouse.connect() as con:
        kind = target_type(con, spec, name, target)
        if inputs is None:
            inputs = space.read_inputs(warehouse, con, spec)
        else:
            rows_table_of(con, inputs.keys)
        embeddings = stored_embeddings(con, spec, name, space.version)
        values = target_column(con, spec, name, target)
        times = time_order(con, spec, name)
    if times is None and spec.spaces[name].time_column:
        _warn(
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
    _warn(f"space {name}", leaks, LeakageWarning)
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
    just_embedded: bool = False,
    inputs: SpaceInputs | None = None,
) -> int:
    """Score every row of the space (target known or not) and write the predictions table.
    `clock`: sums the seconds of each part (read inputs, embed, score, importance, OOD,
    build table, write). `just_embedded`: `embed` has just written every row's embedding
    from the same inputs (as in `run`), so they are read instead of computed again.
    `inputs`: as for `embed`."""
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
    with clock("read inputs"), warehouse.connect() as con:
        if inputs is None:
            inputs = space.read_inputs(warehouse, con, spec)
        elif just_embedded:
            rows_table_of(con, inputs.keys)
        stored = None
        if just_embedded:
            try:  # every row, embedded by this version
                stored = stored_embeddings(con, spec, name, space.version)
            except PipelineError:
                stored = None
    with clock("score"):
        labelled, outputs = out_of_fold(predictor, inputs.keys)
        known = np.zeros(inputs.n_rows, bool)
        known[labelled] = True
    scores = score_rows(space, predictor, inputs, clock, embeddings=stored, known=known)
    with clock("score"):
        raw, split = split_by_training(scores.raw, labelled, outputs)
    drift = inputs.drift_warnings(spec.spaces[name].table)
    _warn(f"space {name} predicting {target}", drift)
    with clock("build table"):
        table = predictions_table(
            predictor,
            inputs.keys,
            raw,
            None,
            split,
            scores.importance,
            drift,
            ood=(scores.ood, scores.farthest),
        )
    with clock("write"), warehouse.connect() as con:
        warehouse.write_table(con, predictions_name(name, target), table)
    return table.num_rows


def run(spec: Spec, progress: bool = True) -> dict[str, dict]:
    """The whole pipeline: validate, then bottom-up train + embed (+ neighbours), then
    predictors. Each space is read once: its embed, predictor and predict steps read the rows
    it was trained on."""
    validate(spec)
    summary: dict[str, dict] = {}
    shared: dict[str, SpaceInputs] = {}
    for name in spec.training_order():
        space, inputs = _train(spec, name, progress=progress)
        rows = embed(spec, name, inputs)
        neighbours(spec, name)
        if spec.spaces[name].targets:
            shared[name] = inputs
        del inputs
        summary[name] = {
            "version": space.version,
            "rows": rows,
            "losses": space.training.final_losses,
        }
    for name in spec.training_order():
        for target in spec.spaces[name].targets:
            predictor = train_target(spec, name, target, shared.get(name))
            predict(spec, name, target, just_embedded=True, inputs=shared.get(name))
            summary[name][f"{target}_metrics"] = predictor.metrics
    return summary
