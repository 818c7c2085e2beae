"""What the spec says about columns beyond keys: the time column of a table, how many child
rows a parent has, and columns that almost equal the target (leakage suspects)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.discovery.catalog import Table
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import INTEGER_TYPE, quote

TIME_TYPE = re.compile(r"^(DATE|TIMESTAMP.*)$")
TIME_WORDS = ("at", "date", "time", "created", "ordered", "opened", "started", "day", "ts")
"""Name parts that say a column is when the row happened."""
SUSPECT_SAMPLE = 50_000
"""Rows of the root the leakage scan reads (a seeded sample)."""
SUSPECT_SHARE = 0.98
"""A column is a suspect when its values tell the target on this share of the rows (or its
correlation with a numeric target is above it)."""


def time_column(table: Table, skipped: set[str]) -> str | None:
    """The column that says when a row happened: a date or timestamp, preferring names like
    `ordered_at`, `created_date`, then the first one."""
    times = [c for c, t in table.columns.items() if TIME_TYPE.match(t) and c not in skipped]
    if not times:
        return None

    def named(column: str) -> bool:
        parts = re.split(r"[^A-Za-z]+|(?<=[a-z])(?=[A-Z])", column)
        return any(p.lower() in TIME_WORDS for p in parts if p)

    return sorted(times, key=lambda c: (not named(c), list(table.columns).index(c)))[0]


@dataclass(frozen=True)
class ChildCounts:
    """Rows of a child table per parent key value (parents without children not counted)."""

    mean: float
    p95: int
    most: int


def child_counts(con: Connection, child: Table, foreign_key: list[str]) -> ChildCounts | None:
    columns = ", ".join(quote(c) for c in foreign_key)
    not_null = " and ".join(f"{quote(c)} is not null" for c in foreign_key)
    row = con.execute(
        f"select avg(n), quantile_disc(n, 0.95), max(n) from (select count(*) as n "
        f"from {child.sql} where {not_null} group by {columns})"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return ChildCounts(float(row[0]), int(row[1]), int(row[2]))


def max_length(counts: ChildCounts | None) -> int:
    """Child rows kept per parent: the 95th percentile rounded up to a power of two, 4-256
    (most parents keep every child; the longest are cut to their latest)."""
    if counts is None:
        return 64
    length = 4
    while length < counts.p95 and length < 256:
        length *= 2
    return length


def leakage_suspects(
    con: Connection, table: Table, target: str, key: list[str], skipped: set[str]
) -> dict[str, str]:
    """Columns of `table` that almost equal `target` on a sample (SUSPECT_SAMPLE labelled
    rows chosen by a hash of the key: the same data, the same rows): a value that tells the
    target on SUSPECT_SHARE of the rows (columns with fewer distinct values than half the
    rows), or a correlation above SUSPECT_SHARE with a numeric target. Column -> why."""
    keys = ", ".join(quote(c) for c in key)
    con.execute(
        f"create or replace temp table _init_sample as select * from {table.sql} "
        f"where {quote(target)} is not null order by hash({keys}), {keys} "
        f"limit {SUSPECT_SAMPLE}"
    )
    try:
        labelled = con.execute("select count(*) from _init_sample").fetchone()[0]
        if labelled < 20:
            return {}
        numeric_target = _numeric(table.columns[target])
        found = {}
        for column, column_type in table.columns.items():
            if column == target or column in skipped:
                continue
            why = _tells(con, column, column_type, target, numeric_target, labelled)
            if why:
                found[column] = why
        return found
    finally:
        con.execute("drop table if exists _init_sample")


def _numeric(column_type: str) -> bool:
    return (
        bool(INTEGER_TYPE.match(column_type))
        or column_type in ("DOUBLE", "FLOAT", "REAL")
        or (column_type.startswith("DECIMAL"))
    )


def _tells(con, column: str, column_type: str, target: str, numeric_target: bool, n: int):
    c, t = quote(column), quote(target)
    distinct = con.execute(f"select count(distinct {c}) from _init_sample").fetchone()[0]
    if numeric_target and _numeric(column_type):
        corr = con.execute(f"select corr({c}::double, {t}::double) from _init_sample").fetchone()
        if corr[0] is not None and abs(corr[0]) > SUSPECT_SHARE:
            return f"correlation {corr[0]:+.3f} with {target} on {n:,} labelled rows"
    target_distinct = con.execute(f"select count(distinct {t}) from _init_sample").fetchone()[0]
    if distinct > n / 2 or target_distinct > 50 or distinct < 2:
        return None
    told = con.execute(
        f"select sum(top) / {n} from (select max(k) as top from (select {c} as v, {t}, "
        f"count(*) as k from _init_sample group by all) group by v)"
    ).fetchone()[0]
    majority = con.execute(
        f"select max(k) / {n} from (select count(*) as k from _init_sample group by {t})"
    ).fetchone()[0]
    if told is not None and told >= SUSPECT_SHARE and told > majority + 0.01:
        return f"its value tells {target} on {told:.1%} of {n:,} labelled rows"
    return None
