"""Materialization metadata: markdown tables and facts read back from the warehouse."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dagster as dg
import numpy as np

from pipeline.errors import PipelineError
from pipeline.reports import markdown_image, mutual_information_png, sphere_png, timeline_png
from pipeline.spaces.training import TrainingResult
from pipeline.spec import Spec
from pipeline.understanding.joins import JoinCheck
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import IN_WAREHOUSE, DatabaseError, Warehouse, table_params
from pipeline.warehouse.sql import qualified

log = logging.getLogger(__name__)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def table_facts(spec: Spec, table: str) -> tuple[int, dg.TableSchema] | None:
    """Row count and column schema of `schema.table`, from a short read-only connection.

    Best effort: None when the file is busy (another process is writing it).
    """
    try:
        con = Warehouse.of(spec, lock_timeout_s=0).open(read_only=True)
    except (DatabaseError, PipelineError) as error:
        log.warning("could not read %s for metadata: %s", table, error)
        return None
    try:
        (rows,) = con.execute(f"select count(*) from {qualified(table)}").fetchone()
        columns = con.execute(
            "select column_name, data_type, is_nullable from information_schema.columns "
            f"where {IN_WAREHOUSE} order by ordinal_position",
            table_params(table),
        ).fetchall()
    finally:
        con.close()
    column_schema = dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=column,
                type=dtype,
                constraints=dg.TableColumnConstraints(nullable=nullable == "YES"),
            )
            for column, dtype, nullable in columns
        ]
    )
    return int(rows), column_schema


def output_table_metadata(spec: Spec, table: str, written: int) -> dict[str, dg.MetadataValue]:
    """Standard table metadata of a table the pipeline brought up to date: name, row count,
    schema, and the rows this materialization wrote (only the changed ones)."""
    metadata = {
        "dagster/table_name": dg.MetadataValue.text(table),
        "rows_written": dg.MetadataValue.int(written),
    }
    facts = table_facts(spec, table)
    if facts:
        metadata["dagster/row_count"] = dg.MetadataValue.int(facts[0])
        metadata["dagster/column_schema"] = dg.MetadataValue.table_schema(facts[1])
    return metadata


def profile_metadata(profiles: list[ColumnProfile]) -> dict[str, dg.MetadataValue]:
    excluded = [p for p in profiles if p.excluded]
    return {
        "columns": dg.MetadataValue.int(len(profiles)),
        "input_columns": dg.MetadataValue.int(sum(p.is_input for p in profiles)),
        "excluded_count": dg.MetadataValue.int(len(excluded)),
        "excluded_columns": dg.MetadataValue.md(
            markdown_table(
                ["column", "detected type", "role", "reason"],
                [(p.column, p.detected_type, p.role, p.reason) for p in excluded],
            )
            if excluded
            else "no column excluded"
        ),
        "column_profile": dg.MetadataValue.md(
            markdown_table(
                ["column", "type", "role", "null fraction", "distinct", "unparsed", "excluded"],
                [
                    (
                        p.column,
                        p.detected_type,
                        p.role,
                        f"{p.null_fraction:.3f}",
                        p.distinct_count,
                        p.unparsed_count,
                        p.excluded,
                    )
                    for p in profiles
                ],
            )
        ),
    }


def join_metadata(join: JoinCheck) -> dict[str, dg.MetadataValue]:
    def number(value: float | int | None) -> dg.MetadataValue:
        if value is None:
            return dg.MetadataValue.null()
        if isinstance(value, int):
            return dg.MetadataValue.int(value)
        return dg.MetadataValue.float(float(value))

    return {
        "status": dg.MetadataValue.text(join.status),
        "message": dg.MetadataValue.text(join.message),
        "foreign_key": dg.MetadataValue.text(join.foreign_key),
        "coverage": number(join.coverage),
        "parent_coverage": number(join.parent_coverage),
        "orphans": number(join.orphans),
        "null_keys": number(join.null_keys),
        "parent_key_type": dg.MetadataValue.text(join.parent_key_type),
        "foreign_key_type": dg.MetadataValue.text(join.foreign_key_type),
        "declared_cardinality": dg.MetadataValue.text(join.declared_cardinality),
        "observed_cardinality": dg.MetadataValue.text(join.observed_cardinality or "unknown"),
        "duplicated_parent_keys": number(join.duplicated_parent_keys),
        "kl_shift": number(join.kl_shift),
        "kl_column": dg.MetadataValue.text(join.kl_column or "none"),
        "excluded_by_as_of": number(join.excluded_by_as_of),
        "orphan_examples": dg.MetadataValue.text(", ".join(join.orphan_examples) or "none"),
        "null_key_examples": dg.MetadataValue.text(", ".join(join.null_key_examples) or "none"),
    }


def training_metadata(version: str, training: TrainingResult) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {
        "version": dg.MetadataValue.text(version),
        "steps": dg.MetadataValue.int(int(training.steps_done)),
        "epochs": dg.MetadataValue.float(float(training.epochs)),
        "final_losses": dg.MetadataValue.json(training.final_losses),
        "mutual_information_bits": dg.MetadataValue.md(
            markdown_table(
                ["column", "bits"],
                sorted(
                    ((c, f"{b:.3f}") for c, b in training.mutual_information.items()),
                    key=lambda row: -float(row[1]),
                ),
            )
        ),
        "failures": dg.MetadataValue.text(", ".join(training.failures) or "none"),
        "corrective_actions": dg.MetadataValue.text(
            ", ".join(training.corrective_actions) or "none"
        ),
    }
    for name, value in training.final_losses.items():
        metadata[f"loss_{name}"] = dg.MetadataValue.float(float(value))
    # numbers show inline (the plots need "Show Markdown": Dagster has no image metadata)
    # and the UI plots each of them across materializations
    for column, bits in sorted(training.mutual_information.items()):
        metadata[f"mutual_information/{column}"] = dg.MetadataValue.float(float(bits))
    metadata["training_plot"] = dg.MetadataValue.md(
        markdown_image(timeline_png(training.timeline, "training losses"), "training losses")
    )
    metadata["mutual_information_plot"] = dg.MetadataValue.md(
        markdown_image(
            mutual_information_png(training.mutual_information, "mutual information"),
            "mutual information",
        )
    )
    return metadata


def sphere_metadata(spec: Spec, table: str) -> dict[str, dg.MetadataValue]:
    """The rows' embedding_3d as an inline PNG (best effort, like table_facts)."""
    try:
        con = Warehouse.of(spec, lock_timeout_s=0).open(read_only=True)
    except (DatabaseError, PipelineError) as error:
        log.info("no 3-d plot for %s: %s", table, error)
        return {}
    try:
        rows = con.execute(f"select embedding_3d from {qualified(table)}").fetchall()
    finally:
        con.close()
    points = np.array([r[0] for r in rows], np.float32)
    return {"sphere_3d": dg.MetadataValue.md(markdown_image(sphere_png(points, table), table))}


def metrics_metadata(metrics: dict) -> dict[str, dg.MetadataValue]:
    """Every predictor metric as a number (so the UI can plot it across runs), the chosen
    candidate and validation scheme as text, and every candidate's score as a table."""
    metadata: dict[str, dg.MetadataValue] = {}
    for name, value in metrics.items():
        if isinstance(value, bool | str):
            metadata[name] = dg.MetadataValue.text(str(value))
        elif isinstance(value, int):
            metadata[name] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            metadata[name] = dg.MetadataValue.float(value)
        elif name == "candidates":
            rows = "\n".join(
                f"| {c['name']} | {c['metric']} | {c['score']:.4f} | {c['seconds']:.1f} |"
                for c in value
            )
            metadata[name] = dg.MetadataValue.md(
                "| candidate | out-of-fold metric | score | seconds |\n|---|---|---|---|\n" + rows
            )
    return metadata
