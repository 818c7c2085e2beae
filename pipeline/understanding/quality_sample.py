"""The bounded sample Great Expectations validates: at most `SAMPLE_ROWS` rows of a space's
table, the same ones every time, read as the quality suite reads them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.spec import Spec
from pipeline.understanding.profiling import ColumnProfile
from pipeline.understanding.quality_sql import read_sql
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import lowest_hash_rows, qualified, quote

if TYPE_CHECKING:
    import pandas as pd

SAMPLE_ROWS = 10_000
"""The most rows Great Expectations validates per space: memory is bounded by this."""


def sample_frame(
    con: Connection,
    table: str,
    key_columns: list[str],
    columns: dict[str, str],
    rows: int = SAMPLE_ROWS,
) -> pd.DataFrame:
    """At most `rows` rows of `table` as pandas, the same ones every time (those whose key
    hashes lowest), holding only `columns` (name -> SQL expression over the table)."""
    if rows < 1 or not key_columns or not columns:
        raise ValueError(
            f"sample of {table}: need rows >= 1, key columns and columns; got rows={rows}, "
            f"key_columns={key_columns}, columns={list(columns)}"
        )
    select = ", ".join(f"{sql} as {quote(name)}" for name, sql in columns.items())
    return con.sql(
        f"select {select} from {qualified(table)} {lowest_hash_rows(key_columns, rows)}"
    ).df()


def space_sample(
    con: Connection,
    spec: Spec,
    name: str,
    columns: list[str],
    profiles: list[ColumnProfile],
) -> pd.DataFrame:
    """The space's sample for GX: `columns` read as the suite reads them."""
    space = spec.spaces[name]
    by_column = {p.column: p for p in profiles}
    reads = {c: read_sql(c, by_column.get(c)) for c in columns}
    return sample_frame(con, space.table, space.key_columns, reads)
