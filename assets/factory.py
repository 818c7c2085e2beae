"""Assets, blocking join checks, jobs and schedules generated from a spec.

Per space `s` (group `s`, keys under `ml/`): `s_profile` (with one blocking check per
relationship it reads), `s_space`, `s_embeddings`, and per target `t`: `s__t_predictor`,
`s__t_predictions`. Asset bodies call `pipeline.runner`; they only add Dagster metadata.
"""

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import dagster as dg

from assets.checks import (
    COLUMNS_CHECK,
    QUALITY_CHECK,
    columns_result,
    join_check_results,
    quality_result,
)
from assets.dbt import build_dbt_assets, dbt_resource
from assets.metadata import (
    metrics_metadata,
    output_table_metadata,
    profile_metadata,
    sphere_metadata,
    table_facts,
    training_metadata,
)
from assets.resources import SpacesResource
from pipeline import runner
from pipeline.spec import Spec, load_spec
from pipeline.understanding.data_quality import check_space_quality
from pipeline.understanding.joins import Link, links_of
from pipeline.warehouse.sql import table_parts

PREFIX = "ml"
POOL = "duckdb"
"""Concurrency pool of every asset that writes a DuckDB file warehouse (one writer at a time:
the file's lock); an attached warehouse (DuckLake, PostgreSQL) has no pool."""


def pool_of(spec: Spec) -> str | None:
    return POOL if spec.warehouse_is_file else None


def partitions_of(spec: Spec) -> dg.StaticPartitionsDefinition | None:
    """The slices of every space's rows (`partitions:` in the spec, by a hash of the key) as
    Dagster partitions of the embeddings and predictions; None when unpartitioned."""
    if spec.partitions <= 1:
        return None
    return dg.StaticPartitionsDefinition([str(i) for i in range(spec.partitions)])


def _partition(context: dg.AssetExecutionContext) -> int | None:
    return int(context.partition_key) if context.has_partition_key else None


def _every_partition(spec: Spec, key: dg.AssetKey) -> dg.AssetDep:
    """A dependency on every slice of a partitioned asset (a parent's slice pools the
    children of its rows, wherever their own keys hash to)."""
    mapping = dg.AllPartitionMapping() if partitions_of(spec) else None
    return dg.AssetDep(key, partition_mapping=mapping)


def asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([PREFIX, name])


def profile_key(space: str) -> dg.AssetKey:
    return asset_key(f"{space}_profile")


def space_key(space: str) -> dg.AssetKey:
    return asset_key(f"{space}_space")


def embeddings_key(space: str) -> dg.AssetKey:
    return asset_key(f"{space}_embeddings")


def neighbours_key(space: str) -> dg.AssetKey:
    return asset_key(f"{space}_neighbours")


def predictor_key(space: str, target: str) -> dg.AssetKey:
    return asset_key(f"{space}__{target}_predictor")


def predictions_key(space: str, target: str) -> dg.AssetKey:
    return asset_key(runner.predictions_name(space, target))


def join_checks_of(spec: Spec, space: str) -> dict[Link, str]:
    """Relationship -> check name for the joins `space` reads: its children and references.

    Names are `join_<parent>__<child>`, with the foreign key appended when a pair has two links.
    """
    links = links_of(spec, space)
    names: dict[Link, str] = {}
    for link in links:
        name = f"join_{link.parent}__{link.child}"
        if sum((o.parent, o.child) == (link.parent, link.child) for o in links) > 1:
            name += "__" + re.sub(r"\W+", "_", ", ".join(link.foreign_key))
        names[link] = name
    return names


def _staging_deps(
    spec: Spec, space: str, staging_keys: Mapping[str, dg.AssetKey]
) -> list[dg.AssetKey]:
    """dbt staging models named like the tables the profile reads (its own and its links')."""
    spaces = [space, *spec.dependencies(space)]
    tables = [table_parts(spec.spaces[s].table)[-1] for s in spaces]
    return [staging_keys[t] for t in dict.fromkeys(tables) if t in staging_keys]


def _profile_asset(
    spec: Spec, space: str, staging_keys: Mapping[str, dg.AssetKey]
) -> dg.AssetsDefinition:
    key = profile_key(space)
    checks = join_checks_of(spec, space)

    @dg.asset(
        key=key,
        group_name=space,
        deps=_staging_deps(spec, space, staging_keys),
        check_specs=[
            dg.AssetCheckSpec(
                name=name,
                asset=key,
                blocking=True,
                description=f"{link.child}.{', '.join(link.foreign_key)} -> {link.parent} "
                f"({link.kind}): "
                "coverage, orphans, null keys, key types",
            )
            for link, name in checks.items()
        ]
        + [
            dg.AssetCheckSpec(
                name=COLUMNS_CHECK,
                asset=key,
                blocking=False,
                description="Every input column's values parse as its detected type; warns "
                "with counts and examples of values read as missing (mixed columns).",
            ),
            dg.AssetCheckSpec(
                name=QUALITY_CHECK,
                asset=key,
                blocking=False,
                description="Great Expectations suite learned from the profile (keys, null "
                "rates, ranges, accepted values); links the Data Docs page.",
            ),
        ],
        pool=pool_of(spec),
        kinds={"duckdb"},
        description=f"Columns, key and joins of space `{space}` ({spec.spaces[space].table}); "
        "writes ml.column_profile and ml.join_report.",
    )
    def profile(spaces: SpacesResource) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        current = spaces.load_spec()
        validation = runner.validate_space(current, space)
        metadata = profile_metadata(validation.profiles)
        facts = table_facts(current, current.spaces[space].table)
        if facts:
            metadata["table_rows"] = dg.MetadataValue.int(facts[0])
        yield dg.MaterializeResult(metadata=metadata)
        yield from join_check_results(checks, validation.joins)
        yield columns_result(validation.profiles)
        yield quality_result(check_space_quality(current, space, validation.profiles))

    return profile


class TrainConfig(dg.Config):
    """How a space or predictor asset trains."""

    retrain: bool = True
    """False: keep the saved model unless it is missing, its spec changed, a space it reads
    was retrained or its inputs drifted (what the nightly job does)."""


def _space_asset(spec: Spec, space: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=space_key(space),
        group_name=space,
        deps=[profile_key(space), *(embeddings_key(d) for d in spec.dependencies(space))],
        code_version=spec.space_digest(space),
        pool=pool_of(spec),
        kinds={"pytorch"},
        description=f"The embedding space of `{space}`: self-supervised model saved under "
        "artifacts; writes ml.training_runs and ml.mutual_information.",
    )
    def trained_space(spaces: SpacesResource, config: TrainConfig) -> dg.MaterializeResult:
        current = spaces.load_spec()
        trained, reason = runner.train_if_needed(current, space, config.retrain, progress=False)
        if reason is None:
            return dg.MaterializeResult(
                metadata={
                    "version": dg.MetadataValue.text(trained.version),
                    "trained": dg.MetadataValue.text("no: the saved model is up to date"),
                },
                data_version=dg.DataVersion(trained.version),
            )
        metadata = training_metadata(trained.version, trained.training)
        metadata["trained"] = dg.MetadataValue.text(f"yes: {reason}")
        timeline = trained.folder / "timeline.json"
        if timeline.exists():
            metadata["timeline"] = dg.MetadataValue.path(str(timeline))
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(trained.version))

    return trained_space


def _embeddings_asset(spec: Spec, space: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=embeddings_key(space),
        group_name=space,
        deps=[
            space_key(space),
            *(_every_partition(spec, embeddings_key(d)) for d in spec.dependencies(space)),
        ],
        partitions_def=partitions_of(spec),
        pool=pool_of(spec),
        kinds={"duckdb"},
        description=f"{spec.output_schema}.{space}_embeddings: one embedding per current row "
        f"of {spec.spaces[space].table}, from the saved model.",
    )
    def embeddings(
        context: dg.AssetExecutionContext, spaces: SpacesResource
    ) -> dg.MaterializeResult:
        current = spaces.load_spec()
        rows = runner.embed(current, space, partition=_partition(context))
        table = f"{current.output_schema}.{space}_embeddings"
        metadata = output_table_metadata(current, table, rows)
        metadata.update(sphere_metadata(current, table))
        # the version of the model that wrote them: a retrained child marks the spaces that
        # pool its embeddings stale
        version = runner.current_space_version(current, space)
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))

    return embeddings


def _neighbours_asset(spec: Spec, space: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=neighbours_key(space),
        group_name=space,
        deps=[embeddings_key(space)],
        pool=pool_of(spec),
        kinds={"duckdb"},
        description=f"{spec.output_schema}.{space}_neighbours: the {spec.neighbours(space)} most "
        f"similar rows of every row of {space} (cosine, through an index of the stored "
        "embeddings, kept for `search`).",
    )
    def neighbours(spaces: SpacesResource) -> dg.MaterializeResult:
        current = spaces.load_spec()
        rows = runner.neighbours(current, space)
        table = f"{current.output_schema}.{space}_neighbours"
        return dg.MaterializeResult(metadata=output_table_metadata(current, table, rows))

    return neighbours


def _predictor_asset(spec: Spec, space: str, target: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=predictor_key(space, target),
        group_name=space,
        deps=[embeddings_key(space)],
        pool=pool_of(spec),
        kinds={"pytorch"},
        description=(
            f"Predictor of {space}.{target}: candidates cross-fitted on the `{space}` "
            "embeddings, columns and child statistics; the best out-of-fold score kept."
        ),
    )
    def predictor(spaces: SpacesResource, config: TrainConfig) -> dg.MaterializeResult:
        trained, reason = runner.train_target_if_needed(
            spaces.load_spec(), space, target, config.retrain
        )
        metadata = metrics_metadata(trained.metrics)
        metadata["trained"] = dg.MetadataValue.text(
            f"yes: {reason}" if reason else "no: the saved predictor is up to date"
        )
        metadata["version"] = dg.MetadataValue.text(trained.version)
        metadata["task"] = dg.MetadataValue.text(trained.task)
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(trained.version))

    return predictor


def _predictions_asset(spec: Spec, space: str, target: str) -> dg.AssetsDefinition:
    table = f"{spec.output_schema}.{runner.predictions_name(space, target)}"

    @dg.asset(
        key=predictions_key(space, target),
        group_name=space,
        deps=[predictor_key(space, target), embeddings_key(space)],
        partitions_def=partitions_of(spec),
        pool=pool_of(spec),
        kinds={"duckdb"},
        description=f"{table}: every row of {spec.spaces[space].table} "
        "scored, target known or not.",
    )
    def predictions(
        context: dg.AssetExecutionContext, spaces: SpacesResource
    ) -> dg.MaterializeResult:
        current = spaces.load_spec()
        rows = runner.predict(current, space, target, partition=_partition(context))
        written = f"{current.output_schema}.{runner.predictions_name(space, target)}"
        return dg.MaterializeResult(metadata=output_table_metadata(current, written, rows))

    return predictions


def space_assets(
    spec: Spec, staging_keys: Mapping[str, dg.AssetKey] | None = None
) -> list[dg.AssetsDefinition]:
    """Every asset of every space, bottom-up. `staging_keys`: dbt model name -> asset key."""
    staging_keys = staging_keys or {}
    built: list[dg.AssetsDefinition] = []
    for space in spec.training_order():
        built += [
            _profile_asset(spec, space, staging_keys),
            _space_asset(spec, space),
            _embeddings_asset(spec, space),
        ]
        if spec.neighbours(space):
            built.append(_neighbours_asset(spec, space))
        for target in spec.spaces[space].targets:
            built += [
                _predictor_asset(spec, space, target),
                _predictions_asset(spec, space, target),
            ]
    return built


def schedules(spec: Spec) -> list[dg.ScheduleDefinition]:
    """Nightly `bring_up_to_date` (what `run` does: profile and the blocking join checks,
    train only the spaces and predictors that need it, embed and score the rows that changed,
    rebuild the marts) and weekly `retrain_all` (everything, models retrained)."""
    if partitions_of(spec):
        return []  # a partitioned graph is brought up to date by a backfill (README)
    models = [space_key(s) for s in spec.spaces] + [
        predictor_key(s, t) for s in spec.spaces for t in spec.spaces[s].targets
    ]
    bring_up_to_date = dg.define_asset_job(
        "bring_up_to_date",
        selection=dg.AssetSelection.all(),
        config={"ops": {"__".join(key.path): {"config": {"retrain": False}} for key in models}},
        description="Profile and check every space's joins (blocking); train the spaces and "
        "predictors whose model is missing, whose spec changed or whose inputs drifted; "
        "embed and score the rows that changed; rebuild the marts.",
    )
    retrain_all = dg.define_asset_job(
        "retrain_all",
        selection=dg.AssetSelection.all(),
        description="dbt staging, validation, every space and predictor retrained, marts.",
    )
    return [
        dg.ScheduleDefinition(
            name="nightly_bring_up_to_date", job=bring_up_to_date, cron_schedule="0 2 * * *"
        ),
        dg.ScheduleDefinition(
            name="weekly_retrain_all", job=retrain_all, cron_schedule="0 4 * * 0"
        ),
    ]


def build_definitions(spec_path: str | Path) -> dg.Definitions:
    """The whole code location for one spec file (read once here, for the graph only)."""
    spec_path = Path(spec_path).resolve()
    spec = load_spec(spec_path)
    dbt_defs = build_dbt_assets(pool_of(spec))
    staging_keys = {key.path[-1]: key for key in dbt_defs[0].keys}
    nightly_and_weekly = schedules(spec)
    return dg.Definitions(
        assets=[*dbt_defs, *space_assets(spec, staging_keys)],
        jobs=[schedule.job for schedule in nightly_and_weekly],
        schedules=nightly_and_weekly,
        resources={"spaces": SpacesResource(spec_path=str(spec_path)), "dbt": dbt_resource()},
        # a DuckDB file has one writer; an attached warehouse runs independent steps at once
        executor=dg.in_process_executor if spec.warehouse_is_file else dg.multiprocess_executor,
    )
