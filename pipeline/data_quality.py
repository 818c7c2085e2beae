"""Great Expectations reports: one suite per space, generated from the column profile.

Bounds (null rates, value ranges, accepted values of small categories) are learned from the
data the first time a space is checked and saved with the GX project under the artifacts
folder; later runs validate new data against them. Results go to `ml.quality_results`, and
Data Docs (one HTML site with every space) are rebuilt on every run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline.profiling import ColumnProfile
from pipeline.spec import Spec
from pipeline.warehouse import Warehouse, literal, qualified

MAX_ACCEPTED_VALUES = 20
NULL_RATE_SLACK = 0.05
log = logging.getLogger(__name__)


@dataclass
class QualityReport:
    """The outcome of one space's suite."""

    space: str
    success: bool
    evaluated: int
    failed: list[str]
    docs_index: Path | None


LABEL_TYPES = ("category", "boolean", "ordinal")


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def _expectations(gx, frame, profiles: list[ColumnProfile], key_columns: list[str]) -> list:
    """Expectations learned from the current data of the space."""
    expectations = []
    for column in key_columns:
        expectations += [gx.expectations.ExpectColumnValuesToNotBeNull(column=column)]
    if len(key_columns) == 1:
        expectations.append(gx.expectations.ExpectColumnValuesToBeUnique(column=key_columns[0]))
    else:
        expectations.append(
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=key_columns)
        )
    for p in profiles:
        if p.excluded or p.role not in ("input", "target"):
            continue
        mostly = max(0.0, 1.0 - p.null_fraction - NULL_RATE_SLACK)
        if mostly > 0:
            expectations.append(
                gx.expectations.ExpectColumnValuesToNotBeNull(
                    column=p.column, mostly=round(mostly, 4)
                )
            )
        if p.column in frame:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeOfType(
                    column=p.column, type_=str(frame[p.column].dtype)
                )
            )
        values = frame[p.column].dropna()
        if p.detected_type == "scalar" and len(values):
            numbers = values.astype(float)
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=p.column,
                    min_value=float(numbers.min()),
                    max_value=float(numbers.max()),
                    mostly=0.99,
                )
            )
        elif p.detected_type in LABEL_TYPES and 0 < p.distinct_count <= MAX_ACCEPTED_VALUES:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column=p.column, value_set=sorted({str(v) for v in values}), mostly=0.99
                )
            )
    return expectations


def check_space_quality(spec: Spec, name: str, profiles: list[ColumnProfile]) -> QualityReport:
    """Validate a space's table with its suite (created from the profile if it is new)."""
    import pandas as pd

    gx = _gx()
    space = spec.spaces[name]
    warehouse = Warehouse(spec.warehouse, spec.output_schema)
    with warehouse.connect() as con:
        frame = con.sql(f"select * from {qualified(space.table)}").df()
    for p in profiles:
        if p.column not in frame:
            continue
        if p.detected_type in LABEL_TYPES:
            frame[p.column] = frame[p.column].map(lambda v: v if v is None else str(v))
        elif p.detected_type == "scalar":  # numbers stored as strings: what does not parse is NaN
            frame[p.column] = pd.to_numeric(frame[p.column], errors="coerce")
    context = gx.get_context(mode="file", project_root_dir=str(Path(spec.artifacts) / "quality"))
    source = context.data_sources.add_or_update_pandas("warehouse")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(
        name
    )
    batch = next(
        (b for b in asset.batch_definitions if b.name == "whole_table"), None
    ) or asset.add_batch_definition_whole_dataframe("whole_table")
    try:
        suite = context.suites.get(name)
    except Exception:  # noqa: BLE001 - GX raises several types for "no such suite"
        suite = context.suites.add(gx.ExpectationSuite(name=name))
        for expectation in _expectations(gx, frame, profiles, space.key_columns):
            suite.add_expectation(expectation)
        log.info(
            "space %s: new data-quality suite with %d expectations", name, len(suite.expectations)
        )
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    outcome = next(iter(result.run_results.values()))
    rows, failed = [], []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for r in outcome.results:
        config = r.expectation_config
        column = config.kwargs.get("column") or ", ".join(config.kwargs.get("column_list", []))
        if not r.success:
            failed.append(f"{config.type}({column})")
        rows.append(
            {
                "space": name,
                "expectation": config.type,
                "column": column,
                "success": bool(r.success),
                "unexpected_count": r.result.get("unexpected_count"),
                "unexpected_percent": r.result.get("unexpected_percent"),
                "details": json.dumps(config.kwargs, default=str),
                "checked_at": now,
            }
        )
    docs = Path(spec.artifacts) / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    index = docs / "index.html"
    schema = pa.schema(
        [
            ("space", pa.string()),
            ("expectation", pa.string()),
            ("column", pa.string()),
            ("success", pa.bool_()),
            ("unexpected_count", pa.int64()),
            ("unexpected_percent", pa.float64()),
            ("details", pa.string()),
            ("checked_at", pa.timestamp("us")),
        ]
    )
    with warehouse.connect() as con:
        warehouse.write_table(
            con,
            "quality_results",
            pa.Table.from_pylist(rows, schema=schema),
            replace_where=f"space = {literal(name)}",
        )
    return QualityReport(
        name, bool(outcome.success), len(rows), failed, index if index.exists() else None
    )
