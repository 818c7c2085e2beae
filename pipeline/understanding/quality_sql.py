"""Expectations computed exactly in DuckDB SQL over every row of a table: the columns as the
suite reads them (numbers, timestamps and labels by their detected type), and the counts of
considered and unexpected rows of each expectation GX would otherwise see only on a sample
(not null, unique, compound unique, in set, between).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from pipeline.encoders import column_type
from pipeline.encoders.base import render
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import Connection, table_columns
from pipeline.warehouse.sql import literal, qualified, quote

LABEL_TYPES = ("category", "boolean", "ordinal")


def number_sql(column: str) -> str:
    return render(column_type("scalar").read_sql, column=quote(column))


def timestamp_sql(column: str) -> str:
    epoch = render(column_type("timestamp").read_sql, column=quote(column))
    return f"make_timestamp(cast(round(({epoch}) * 1000000) as bigint))"


def label_sql(column: str) -> str:
    return f"cast({quote(column)} as varchar)"


def read_sql(column: str, profile: ColumnProfile | None) -> str:
    """A column as the suite reads it (SQL): inputs and targets as numbers, timestamps or
    text by their detected type (values that do not parse are NULL, as the model reads
    them); keys and other columns as stored."""
    if profile is None or profile.excluded or profile.role not in ("input", "target"):
        return quote(column)
    if profile.detected_type == "scalar":
        return number_sql(column)
    if profile.detected_type == "timestamp":
        return timestamp_sql(column)
    if profile.detected_type in LABEL_TYPES:
        return label_sql(column)
    return quote(column)


@dataclass(frozen=True)
class _Check:
    """How SQL counts one expectation: the rows it considers and, among them, the unexpected
    ones; a uniqueness check has `keys` instead (unexpected: rows whose keys repeat)."""

    columns: list[str]
    considered: str
    unexpected: str = ""
    keys: str = ""
    mostly: float = 1.0


def _bound(value: Any) -> tuple[str, str] | None:
    """A range bound as (scalar or timestamp, SQL literal); None when SQL cannot compare it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if not math.isfinite(value):
            return None
        return "scalar", f"cast('{float(value)!r}' as double)"  # a bare literal is a DECIMAL
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, dt.date) and getattr(value, "tzinfo", None) is None:
        return "timestamp", f"cast({literal(value.isoformat())} as timestamp)"
    return None


def _range_check(kwargs: dict, mostly: float) -> _Check | None:
    column = kwargs["column"]
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    bounds = {name: _bound(v) for name, v in (("low", low), ("high", high)) if v is not None}
    if not bounds or None in bounds.values():
        return None
    kinds = {kind for kind, _ in bounds.values()}
    if len(kinds) != 1:
        return None
    value = number_sql(column) if kinds == {"scalar"} else timestamp_sql(column)
    outside = []
    if "low" in bounds:
        outside.append(f"{value} {'<=' if kwargs.get('strict_min') else '<'} {bounds['low'][1]}")
    if "high" in bounds:
        outside.append(f"{value} {'>=' if kwargs.get('strict_max') else '>'} {bounds['high'][1]}")
    return _Check([column], f"{value} is not null", " or ".join(outside), mostly=mostly)


def exact_check(config, profiles: dict[str, ColumnProfile]) -> _Check | None:
    """The SQL for an expectation the suite learns; None for the others (GX on the sample)."""
    kwargs = config.kwargs
    if kwargs.get("row_condition"):
        return None
    mostly = float(kwargs.get("mostly", 1.0))
    column = kwargs.get("column")
    if config.type == "expect_column_values_to_not_be_null":
        value = read_sql(column, profiles.get(column))
        return _Check([column], "true", f"{value} is null", mostly=mostly)
    if config.type == "expect_column_values_to_be_unique":
        return _Check([column], f"{quote(column)} is not null", keys=quote(column), mostly=mostly)
    if config.type == "expect_compound_columns_to_be_unique":
        columns = list(kwargs["column_list"])
        nulls = [f"{quote(c)} is null" for c in columns]
        considered = {
            "all_values_are_missing": f"not ({' and '.join(nulls)})",
            "any_value_is_missing": f"not ({' or '.join(nulls)})",
            "never": "true",
        }.get(kwargs.get("ignore_row_if", "all_values_are_missing"))
        if considered is None:
            return None
        keys = ", ".join(quote(c) for c in columns)
        return _Check(columns, considered, keys=keys, mostly=mostly)
    if config.type == "expect_column_values_to_be_in_set":
        value = label_sql(column)
        accepted = ", ".join(literal(str(v)) for v in kwargs.get("value_set") or [])
        unexpected = f"{value} not in ({accepted})" if accepted else "true"
        return _Check([column], f"{value} is not null", unexpected, mostly=mostly)
    if config.type == "expect_column_values_to_be_between":
        return _range_check(kwargs, mostly)
    return None


@dataclass(frozen=True)
class ExactResult:
    """An expectation computed in SQL over every row of the table (GX's meaning: unexpected
    rows among those considered, the percent of them, `mostly` met)."""

    success: bool
    unexpected_count: int | None
    unexpected_percent: float | None
    rows: int
    error: str | None = None


def _outcome(considered: int, unexpected: int, mostly: float, rows: int) -> ExactResult:
    if considered == 0:  # vacuously true, as in GX
        return ExactResult(True, unexpected, None, rows)
    success = (considered - unexpected) / considered >= mostly
    return ExactResult(success, unexpected, 100.0 * unexpected / considered, rows)


def exact_results(
    con: Connection, table: str, configs: list, profiles: list[ColumnProfile]
) -> list[ExactResult | None]:
    """Each expectation SQL computes, over every row of `table`, in `configs` order (None
    for the others): the row checks in one scan, each uniqueness check in a grouped one."""
    present = set(table_columns(con, table))
    by_column = {p.column: p for p in profiles}
    checks = [exact_check(c, by_column) for c in configs]
    ready = [c is not None and set(c.columns) <= present for c in checks]
    parts = ["count(*)"]
    for check, ok in zip(checks, ready, strict=True):
        if ok and not check.keys:
            parts += [
                f"count(*) filter (where {check.considered})",
                f"count(*) filter (where ({check.considered}) and ({check.unexpected}))",
            ]
    counts = iter(con.execute(f"select {', '.join(parts)} from {qualified(table)}").fetchone())
    rows = int(next(counts))
    results: list[ExactResult | None] = []
    for check, ok in zip(checks, ready, strict=True):
        if check is None:
            results.append(None)
        elif not ok:
            missing = ", ".join(c for c in check.columns if c not in present)
            error = f"column(s) {missing} not in {table}: relearn the suite (retrain)"
            results.append(ExactResult(False, None, None, rows, error))
        elif check.keys:
            considered, unexpected = con.execute(
                f"with key_counts as (select count(*) as n from {qualified(table)} "
                f"where {check.considered} group by {check.keys}) "
                "select coalesce(sum(n), 0), coalesce(sum(n) filter (where n > 1), 0) "
                "from key_counts"
            ).fetchone()
            results.append(_outcome(int(considered), int(unexpected), check.mostly, rows))
        else:
            considered, unexpected = int(next(counts)), int(next(counts))
            results.append(_outcome(considered, unexpected, check.mostly, rows))
    return results
