"""Great Expectations reports: one suite per space, generated from the column profile.

Bounds (null rates, value ranges of numbers, the earliest time of timestamps, accepted
values of small categories) are learned from the data a space is trained on
(`learn_space_quality`, after training; or the first time a space is checked) and saved
with the GX project under the artifacts folder. A check validates the table's current data
against the suite learned before it, so it can fail: new data is never validated against
bounds learned from itself.

No table is copied into pandas. Bounds are learned, and every expectation that matters on
every row (keys unique and not null, null rates, value ranges, accepted values) is checked,
in DuckDB SQL over the whole table (`pipeline.understanding.quality_sql`). Great
Expectations (it cannot read DuckDB through SQLAlchemy) validates the whole suite on a
sample of at most `SAMPLE_ROWS` rows (the same rows every time, only the suite's columns):
that is its Data
Docs, and the source of what SQL does not compute (column types). In `ml.quality_results`
an expectation computed in SQL carries the exact SQL figures (`evaluated_on = 'table'`),
never the sample's; the others say `evaluated_on = 'sample'` and `evaluated_rows` is the
sample's size. A newly learned suite's expectations are written as `learned` rows, and
Data Docs (one HTML site with every space) are rebuilt on every check.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.spec import Spec
from pipeline.understanding.profiling import ColumnProfile
from pipeline.understanding.quality_page import render_quality_page
from pipeline.understanding.quality_sample import SAMPLE_ROWS, space_sample
from pipeline.understanding.quality_sql import (
    LABEL_TYPES,
    exact_check,
    exact_results,
    label_sql,
    read_sql,
)
from pipeline.warehouse.connection import Connection, Warehouse, table_columns
from pipeline.warehouse.sql import literal, qualified, quote

if TYPE_CHECKING:
    import pandas as pd

MAX_ACCEPTED_VALUES = 20
NULL_RATE_SLACK = 0.05
ON_TABLE, ON_SAMPLE = "table", "sample"
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


RANGE_TYPES = ("scalar", "timestamp")


def _gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def _content(profiles: list[ColumnProfile]) -> list[ColumnProfile]:
    """The columns the suite bounds beyond the key: the space's inputs and targets."""
    return [p for p in profiles if not p.excluded and p.role in ("input", "target")]


@dataclass
class _Bounds:
    """What the data a suite is learned from holds, computed in SQL over every row."""

    rows: int
    ranges: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    value_sets: dict[str, list[str]] = field(default_factory=dict)


def _learn_bounds(con: Connection, table: str, profiles: list[ColumnProfile]) -> _Bounds:
    """Ranges of numbers and timestamps and the values of small label columns (one scan)."""
    content = _content(profiles)
    ranged = [p for p in content if p.detected_type in RANGE_TYPES]
    labelled = [
        p.column
        for p in content
        if p.detected_type in LABEL_TYPES and 0 < p.distinct_count <= MAX_ACCEPTED_VALUES
    ]
    parts = ["count(*)"]
    for p in ranged:
        value = read_sql(p.column, p)
        parts += [f"min({value})", f"max({value})"]
    parts += [
        f"list(distinct {label_sql(c)}) filter (where {quote(c)} is not null)" for c in labelled
    ]
    found = con.execute(f"select {', '.join(parts)} from {qualified(table)}").fetchone()
    bounds = _Bounds(int(found[0]))
    for i, p in enumerate(ranged):
        low, high = found[1 + 2 * i], found[2 + 2 * i]
        if low is None:
            continue
        if p.detected_type == "timestamp":  # ISO text: the suite is JSON
            bounds.ranges[p.column] = (low.isoformat(), high.isoformat())
        else:
            bounds.ranges[p.column] = (float(low), float(high))
    for column, values in zip(labelled, found[1 + 2 * len(ranged) :], strict=True):
        if values and len(values) <= MAX_ACCEPTED_VALUES:
            bounds.value_sets[column] = sorted(values)
    return bounds


def _expectations(
    gx, sample: pd.DataFrame, profiles: list[ColumnProfile], key_columns: list[str], bounds
) -> list:
    """Expectations learned from the current data of the space (types from the sample, the
    rest from `bounds` and the profile, which cover every row)."""
    expectations = []
    for column in key_columns:
        expectations += [gx.expectations.ExpectColumnValuesToNotBeNull(column=column)]
    if len(key_columns) == 1:
        expectations.append(gx.expectations.ExpectColumnValuesToBeUnique(column=key_columns[0]))
    else:
        expectations.append(
            gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=key_columns)
        )
    for p in _content(profiles):
        mostly = max(0.0, 1.0 - p.null_fraction - NULL_RATE_SLACK)
        if mostly > 0:
            expectations.append(
                gx.expectations.ExpectColumnValuesToNotBeNull(
                    column=p.column, mostly=round(mostly, 4)
                )
            )
        if p.column in sample:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeOfType(
                    column=p.column, type_=str(sample[p.column].dtype)
                )
            )
        if p.column in bounds.ranges:
            low, high = bounds.ranges[p.column]
            if p.detected_type == "timestamp":
                high = None  # new rows come later: only a time before the data's start fails
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(
                    column=p.column, min_value=low, max_value=high, mostly=0.99
                )
            )
        elif p.column in bounds.value_sets:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeInSet(
                    column=p.column, value_set=bounds.value_sets[p.column], mostly=0.99
                )
            )
    return expectations


def _suite_columns(configs: list, key_columns: list[str]) -> list[str]:
    """The key, then every column an expectation names, once each, in suite order."""
    columns = dict.fromkeys(key_columns)
    for config in configs:
        kwargs = config.kwargs
        columns.update(dict.fromkeys([kwargs["column"]] if "column" in kwargs else []))
        columns.update(dict.fromkeys(kwargs.get("column_list", [])))
    return list(columns)


def _context(gx, spec: Spec):
    return gx.get_context(mode="file", project_root_dir=str(Path(spec.artifacts) / "quality"))


def _docs_index(spec: Spec) -> Path:
    docs = Path(spec.artifacts) / "quality" / "gx" / "uncommitted" / "data_docs" / "local_site"
    return docs / "index.html"


SUITE_NOTES = (
    f"Data Docs validate a sample of at most {SAMPLE_ROWS} rows (the rows whose key hashes "
    "lowest). Keys, null rates, ranges and accepted values are also checked in SQL over "
    "every row: those exact counts are in the warehouse's quality_results table."
)


def learn_space_quality(spec: Spec, name: str, profiles: list[ColumnProfile]) -> QualityReport:
    """(Re)learn the space's suite from its current data; the next check validates against
    it. Writes the learned expectations to `ml.quality_results` as `learned` rows."""
    gx = _gx()
    space = spec.spaces[name]
    columns = list(dict.fromkeys([*space.key_columns, *(p.column for p in _content(profiles))]))
    with Warehouse.of(spec).connect() as con:
        bounds = _learn_bounds(con, space.table, profiles)
        sample = space_sample(con, spec, name, columns, profiles)
    context = _context(gx, spec)
    expectations = list(_expectations(gx, sample, profiles, space.key_columns, bounds))
    # given whole to the suite: `add_expectation` deep-copies the suite's expectations on
    # every call (seconds for a wide table)
    suite = gx.ExpectationSuite(name=name, notes=SUITE_NOTES, expectations=expectations)
    suite = context.suites.add_or_update(suite)
    log.info(
        "space %s: data-quality suite learned (%d expectations)", name, len(suite.expectations)
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = []
    by_column = {p.column: p for p in profiles}
    for config in (e.configuration for e in suite.expectations):
        exact = exact_check(config, by_column) is not None
        on, evaluated = (ON_TABLE, bounds.rows) if exact else (ON_SAMPLE, len(sample))
        rows.append(_row(name, config, "learned", None, None, None, on, evaluated, now))
    page = _write_results(spec, name, rows)
    index = _docs_index(spec)
    if not index.exists():  # later checks update the site page by page
        context.build_data_docs()
    return QualityReport(name, True, 0, [], index if index.exists() else None, len(rows), page)


def _validate_sample(gx, context, name: str, suite, sample: pd.DataFrame) -> dict[str, Any]:
    """Run the suite on the sample with GX (updating Data Docs); results by expectation id."""
    source = context.data_sources.add_or_update_pandas("warehouse")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(
        name
    )
    batch = next(
        (b for b in asset.batch_definitions if b.name == ON_SAMPLE), None
    ) or asset.add_batch_definition_whole_dataframe(ON_SAMPLE)
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
    result = checkpoint.run(batch_parameters={"dataframe": sample})
    outcome = next(iter(result.run_results.values()))
    return {r.expectation_config.id: r for r in outcome.results}


def check_space_quality(spec: Spec, name: str, profiles: list[ColumnProfile]) -> QualityReport:
    """Validate the space's current data with the suite learned before (learn one first if
    the space has none: then nothing is validated until the next check)."""
    gx = _gx()
    context = _context(gx, spec)
    try:
        suite = context.suites.get(name)
    except Exception:  # noqa: BLE001 - GX raises several types for "no such suite"
        return learn_space_quality(spec, name, profiles)
    space = spec.spaces[name]
    configs = [e.configuration for e in suite.expectations]
    with Warehouse.of(spec).connect() as con:
        exact = exact_results(con, space.table, configs, profiles)
        present = table_columns(con, space.table)
        columns = [c for c in _suite_columns(configs, space.key_columns) if c in present]
        sample = space_sample(con, spec, name, columns, profiles)
    sampled = _validate_sample(gx, context, name, suite, sample)
    rows, failed = [], []
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for config, computed in zip(configs, exact, strict=True):
        if computed is not None:
            success, unexpected, percent = (
                computed.success,
                computed.unexpected_count,
                computed.unexpected_percent,
            )
            on, evaluated, error = ON_TABLE, computed.rows, computed.error
        else:
            r = sampled.get(config.id)
            success = bool(r and r.success)
            unexpected = r.result.get("unexpected_count") if r else None
            percent = r.result.get("unexpected_percent") if r else None
            on, evaluated = ON_SAMPLE, len(sample)
            error = None if r else "Great Expectations returned no result"
            if r and r.exception_info.get("raised_exception"):
                error = r.exception_info.get("exception_message")
        if not success:
            failed.append(f"{config.type}({_column(config.kwargs)})")
        status = "passed" if success else "failed"
        rows.append(
            _row(name, config, status, success, unexpected, percent, on, evaluated, now, error)
        )
    page = _write_results(spec, name, rows)
    index = _docs_index(spec)
    return QualityReport(
        name, not failed, len(rows), failed, index if index.exists() else None, 0, page
    )


def _column(kwargs: dict) -> str:
    return kwargs.get("column") or ", ".join(kwargs.get("column_list", []))


def _row(
    name: str,
    config,
    status: str,
    success: bool | None,
    unexpected: int | None,
    percent: float | None,
    evaluated_on: str,
    evaluated_rows: int,
    now: dt.datetime,
    error: str | None = None,
) -> dict:
    details = dict(config.kwargs) | ({"error": error} if error else {})
    return {
        "space": name,
        "expectation": config.type,
        "column": _column(config.kwargs),
        "status": status,
        "success": success,
        "unexpected_count": unexpected,
        "unexpected_percent": percent,
        "evaluated_on": evaluated_on,
        "evaluated_rows": evaluated_rows,
        "details": json.dumps(details, default=str),
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
        ("evaluated_on", pa.string()),
        ("evaluated_rows", pa.int64()),
        ("details", pa.string()),
        ("checked_at", pa.timestamp("us")),
    ]
)


def _write_results(spec: Spec, name: str, rows: list[dict]) -> Path:
    """Replace the space's rows of `ml.quality_results`, then rewrite the report page."""
    warehouse = Warehouse.of(spec)
    with warehouse.connect() as con:
        warehouse.write_table(
            con,
            "quality_results",
            pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA),
            replace_where=f"space = {literal(name)}",
        )
    return render_quality_page(spec)
