"""`ml.training_runs`: one row per training run of a space or a predictor."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pyarrow as pa

from pipeline.spaces.training import TrainingResult
from pipeline.warehouse.connection import Warehouse
from pipeline.warehouse.sql import literal


def record_run(
    warehouse: Warehouse,
    con,
    kind: str,
    name: str,
    target: str | None,
    version: str,
    result: TrainingResult,
    timeline: Path | None,
    metrics: dict,
    read_versions: dict[str, str] | None = None,
    warnings_raised: list[str] | None = None,
    record: dict | None = None,
) -> None:
    """One row of `ml.training_runs`. A space's record comes from its `TrainingResult`; a
    predictor passes `record` (epochs, steps, losses, hyperparameters of the chosen
    candidate)."""
    summary = result.summary() if result.choices else {}
    record = record or {}
    run_id = uuid.uuid4().hex[:12]
    row = {
        "run_id": run_id,
        "kind": kind,
        "space": name,
        "target": target,
        "version": version,
        "read_versions": json.dumps(read_versions or {}),
        "started_at": dt.datetime.fromtimestamp(result.started_at, dt.UTC).replace(tzinfo=None),
        "finished_at": dt.datetime.fromtimestamp(result.finished_at, dt.UTC).replace(tzinfo=None),
        "epochs": float(record.get("epochs", result.epochs)),
        "steps": int(record.get("steps", result.steps_done)),
        "losses": json.dumps(record.get("losses", result.final_losses)),
        "metrics": json.dumps(metrics),
        "hyperparameters": json.dumps(record.get("hyperparameters", summary.get("choices", {}))),
        "detected_failures": list(result.failures),
        "corrective_actions": list(result.corrective_actions),
        "warnings": list(warnings_raised if warnings_raised is not None else result.warnings),
        "timeline_path": str(timeline) if timeline else None,
    }
    schema = pa.schema(
        [
            ("run_id", pa.string()),
            ("kind", pa.string()),
            ("space", pa.string()),
            ("target", pa.string()),
            ("version", pa.string()),
            ("read_versions", pa.string()),
            ("started_at", pa.timestamp("us")),
            ("finished_at", pa.timestamp("us")),
            ("epochs", pa.float64()),
            ("steps", pa.int64()),
            ("losses", pa.string()),
            ("metrics", pa.string()),
            ("hyperparameters", pa.string()),
            ("detected_failures", pa.list_(pa.string())),
            ("corrective_actions", pa.list_(pa.string())),
            ("warnings", pa.list_(pa.string())),
            ("timeline_path", pa.string()),
        ]
    )
    warehouse.write_table(
        con,
        "training_runs",
        pa.Table.from_pylist([row], schema=schema),
        replace_where=f"run_id = {literal(run_id)}",
    )
