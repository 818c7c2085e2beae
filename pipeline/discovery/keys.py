"""A table's key, found in the data: unique and not null, preferring a declared primary key,
then the names that say "key of this table", then any single column, then the fewest columns
together."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from pipeline.discovery.catalog import Table
from pipeline.discovery.names import names_own_key, says_key
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import INTEGER_TYPE, quote

KEY_TYPE = re.compile(r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|VARCHAR|UUID)$")
"""Types a single-column key can have (not floats, times or nested values)."""
PART_TYPE = re.compile(
    r"^(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|VARCHAR|UUID|DATE|TIMESTAMP.*)$"
)
"""Types a column of a composite key can have: dates and times too (`(station, hour)`)."""
MAX_PARTS = 3
"""Columns a composite key may have."""
APPROX_SHARE = 0.5
"""A column (or columns) whose approximate distinct count is under this share of the rows is
not tried as a key: DuckDB's approx_count_distinct was seen 17% under the exact count on
10,554 unique values, so only the exact count decides."""
PART_CANDIDATES = 6
"""Columns tried together for a composite key, the likeliest first."""


@dataclass(frozen=True)
class FoundKey:
    columns: list[str]
    how: str
    """Why it was chosen, written as a comment beside the key in the spec."""


def find_key(con: Connection, table: Table) -> FoundKey | None:
    """The table's key, or None when no column or up to MAX_PARTS columns are unique and not
    null together."""
    if table.declared_key:
        return FoundKey(list(table.declared_key), "declared primary key")
    if table.rows == 0:
        return None
    counted = [c for c, t in table.columns.items() if PART_TYPE.match(t)]
    if not counted:
        return None
    counts = con.execute(
        "select "
        + ", ".join(f"count({quote(c)}), approx_count_distinct({quote(c)})" for c in counted)
        + f" from {table.sql}"
    ).fetchone()
    nonnull = {c: counts[2 * i] for i, c in enumerate(counted)}
    distinct = {c: counts[2 * i + 1] for i, c in enumerate(counted)}
    full = [c for c in counted if nonnull[c] == table.rows]

    def rank(column: str) -> tuple:
        own, keyish = names_own_key(column, table.name), says_key(column)
        integer = bool(INTEGER_TYPE.match(table.columns[column]))
        return (not own, not keyish, not integer, list(table.columns).index(column))

    singles = [
        c
        for c in full
        if KEY_TYPE.match(table.columns[c]) and distinct[c] >= APPROX_SHARE * table.rows
    ]
    named = [c for c in singles if says_key(c)]
    for column in sorted(named, key=rank):
        if _unique(con, table, [column]):
            reason = "named like its key" if names_own_key(column, table.name) else "unique"
            return FoundKey([column], f"{reason}, not null ({table.rows:,} rows)")
    keyish = [c for c in full if says_key(c)]
    found = _composite(con, table, keyish, distinct, rank)
    if found:
        return found
    for column in sorted((c for c in singles if c not in named), key=rank):
        if _unique(con, table, [column]):
            return FoundKey([column], f"unique, not null ({table.rows:,} rows)")
    return _composite(con, table, full, distinct, rank)


def _composite(con, table: Table, columns: list[str], distinct: dict, rank) -> FoundKey | None:
    """The fewest of `columns` (at most MAX_PARTS, the PART_CANDIDATES likeliest) that are
    unique together."""
    parts = sorted(columns, key=lambda c: (not says_key(c), -distinct[c], rank(c)))
    parts = parts[:PART_CANDIDATES]
    for size in range(2, MAX_PARTS + 1):
        for combination in itertools.combinations(parts, size):
            bound = 1
            for column in combination:
                bound *= max(distinct[column], 1)
            if bound < APPROX_SHARE * table.rows:  # cannot tell every row apart
                continue
            ordered = [c for c in table.columns if c in combination]
            if _unique(con, table, ordered):
                return FoundKey(ordered, f"unique together, not null ({table.rows:,} rows)")
    return None


def _unique(con: Connection, table: Table, columns: list[str]) -> bool:
    names = ", ".join(quote(c) for c in columns)
    distinct = con.execute(f"select count(*) from (select distinct {names} from {table.sql})")
    return int(distinct.fetchone()[0]) == table.rows
