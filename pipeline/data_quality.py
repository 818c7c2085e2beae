"""Great Expectations reports: one suite per space, generated from the column profile.

Bounds (null rates, value ranges, accepted values of small categories) are learned from the
data a space is trained on (`learn_space_quality`, after training; or the first time a space
is checked) and saved with the GX project under the artifacts folder. A check validates the
table's current data against the suite learned before it, so it can fail: new data is never
validated against bounds learned from itself. Results go to `ml.quality_results` (a newly
learned suite's expectations as `learned` rows), and Data Docs (one HTML site with every
space) are rebuilt on every check.
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
from pipeline.quality_page import render_quality_page
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
    """The Great Expectations Data Docs site (styled from public CDNs: needs a network)."""
    learned: int = 0
    """Expectations learned from this data (nothing validated yet: the next check will)."""
    page: Path | None = None
    """The self-contained report page of every space (opens without a network)."""


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


def _frame(spec: Spec, name: str, profiles: list[ColumnProfile]):
    """The space's table as pandas, label columns as text and numbers as numbers."""
    import pandas as pd

    warehouse = Warehouse(spec.warehouse, spec.output_schema)
    with warehouse.connect() as con:
        frame = con.sql(f"select * from {qualified(spec.spaces[name].table)}").df()
    for p in profiles:
        if p.column not in frame:
            continue
        if p.detected_type in LABEL_TYPES:
            frame[p.column] = frame[p.column].map(lambda v: v if v is None else str(v))
        elif p.detected_type == "scalar":  # numbers stored as strings: what does not parse is NaN
            frame[p.column] = pd.to_numeric(frame[p.column], errors="coerce")
    return frame


def _context(gx, spec: Spec):
    return gx.get_context(mode="file", project_root_dir=str(Path(spec.artifacts) / "quality"))


def _docs_index(spec: Spec) -> Path:
    docs = Path(spec.artifacts) / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    return docs / "index.html"


def learn_space_quality(spec: Spec, name: str, profiles: list[ColumnProfile]) -> QualityReport:
    """(Re)learn the space's suite from its current data; the next check validates against
    it. Writes the learned expectations to `ml.quality_results` as `learned` rows."""
    gx = _gx()
    frame = _frame(spec, name, profiles)
    context = _context(gx, spec)
    suite = gx.ExpectationSuite(name=name)
    for expectation in _expectations(gx, frame, profiles, spec.spaces[name].key_columns):
        suite.add_expectation(expectation)
    suite = context.suites.add_or_update(suite)
    log.info(
        "space %s: data-quality suite learned (%d expectations)", name, len(suite.expectations)
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [
        _row(name, config.type, config.kwargs, "learned", None, None, None, now)
        for config in (e.configuration for e in suite.expectations)
    ]
    page = _write_results(spec, name, rows)
    index = _docs_index(spec)
    if not index.exists():  # later checks update the site page by page
        context.build_data_docs()
    return QualityReport(name, True, 0, [], index if index.exists() else None, len(rows), page)


def check_space_quality(spec: Spec, name: str, profiles: list[ColumnProfile]) -> QualityReport:
    """Validate the space's current data with the suite learned before (learn one first if
    the space has none: then nothing is validated until the next check)."""
    gx = _gx()
    context = _context(gx, spec)
    try:
        suite = context.suites.get(name)
    except Exception:  # noqa: BLE001 - GX raises several types for "no such suite"
        return learn_space_quality(spec, name, profiles)
    frame = _frame(spec, name, profiles)
    source = context.data_sources.add_or_update_pandas("warehouse")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(
        name
    )
    batch = next(
        (b for b in asset.batch_definitions if b.name == "whole_table"), None
    ) or asset.add_batch_definition_whole_dataframe("whole_table")
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
        if not r.success:
            failed.append(f"{config.type}({_column(config.kwargs)})")
        rows.append(
            _row(
                name,
                config.type,
                config.kwargs,
                "passed" if r.success else "failed",
                bool(r.success),
                r.result.get("unexpected_count"),
                r.result.get("unexpected_percent"),
                now,
            )
        )
    page = _write_results(spec, name, rows)
    index = _docs_index(spec)
    return QualityReport(
        name, bool(outcome.success), len(rows), failed, index if index.exists() else None, 0, page
    )


def _column(kwargs: dict) -> str:
    return kwargs.get("column") or ", ".join(kwargs.get("column_list", []))


def _row(name, expectation, kwargs, status, success, unexpected, percent, now) -> dict:
    return {
        "space": name,
        "expectation": expectation,
        "column": _column(kwargs),
        "status": status,
        "success": success,
        "unexpected_count": unexpected,
        "unexpected_percent": percent,
        "details": json.dumps(kwargs, default=str),
        "checked_at": now,
    }


RESULTS_SCHEMA = pa.schema(
    [
        ("space", pa.string()),
        ("expectation", pa.string()),
        ("column", pa.string()),
        ("status", pa.string()),
        ("success", pa.bool_()),
        ("unexpected_count", pa.int64()),
        ("unexpected_percent", pa.float64()),
        ("details", pa.string()),
        ("checked_at", pa.timestamp("us")),
    ]
)


def _write_results(spec: Spec, name: str, rows: list[dict]) -> Path:
    """Replace the space's rows of `ml.quality_results`, then rewrite the report page."""
    warehouse = Warehouse(spec.warehouse, spec.output_schema)
    with warehouse.connect() as con:
        warehouse.write_table(
            con,
            "quality_results",
            pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA),
            replace_where=f"space = {literal(name)}",
        )
    return render_quality_page(spec)
