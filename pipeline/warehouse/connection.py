"""DuckDB access: late connections, quoted identifiers, atomic table writes."""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.warehouse.sql import quote, split_table

log = logging.getLogger(__name__)

Connection = duckdb.DuckDBPyConnection
"""An open warehouse connection (the one database type other modules name)."""
DatabaseError = duckdb.Error
"""What the database raises (other modules catch this, never a driver's own class)."""


class WarehouseLockedError(PipelineError):
    """Another process holds the warehouse file's lock longer than we wait."""


LOCK_TIMEOUT_S = 60.0
"""How long a step waits for another process's lock on the warehouse before it gives up."""
MEMORY_LIMIT = "1GB"
"""DuckDB's memory per connection (its default is 80% of the machine): above it, DuckDB
evicts table pages it has written and spills joins, aggregates and sorts to disk, so the
pipeline's memory follows its batches, not the warehouse's size."""


class Warehouse:
    """A DuckDB file. Connections are opened per operation and always closed; a lock held by
    another process is waited for, with backoff, up to `lock_timeout_s`."""

    def __init__(
        self, path: str | Path, output_schema: str = "ml", lock_timeout_s: float = LOCK_TIMEOUT_S
    ) -> None:
        self.path = Path(path)
        self.output_schema = output_schema
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Connection]:
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"warehouse file {self.path} does not exist")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = self._open(read_only)
        try:
            yield con
        finally:
            con.close()

    def open(self, read_only: bool = False) -> Connection:
        """One connection that the caller closes (`connect` closes it for you)."""
        return self._open(read_only)

    def _open(self, read_only: bool) -> Connection:
        started, wait = time.monotonic(), 0.1
        while True:
            try:
                return duckdb.connect(
                    str(self.path), read_only=read_only, config={"memory_limit": MEMORY_LIMIT}
                )
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise
                waited = time.monotonic() - started
                if waited >= self.lock_timeout_s:
                    holder = re.search(r"held in (.+?)(?: by user|\. See|$)", str(error))
                    raise WarehouseLockedError(
                        f"warehouse {self.path} is locked by another process "
                        f"({holder.group(1) if holder else 'unknown'}); waited {waited:.0f} s -> "
                        "let it finish or close it (a Dagster run, dbt, a duckdb shell, a BI "
                        "tool with a write connection), then run this step again"
                    ) from error
                log.info("warehouse %s is locked by another process; retrying", self.path)
                time.sleep(min(wait, self.lock_timeout_s - waited + 0.01))
                wait = min(wait * 2, 5.0)

    def output_table(self, name: str) -> str:
        return f"{quote(self.output_schema)}.{quote(name)}"

    def table_exists(self, con: Connection, table: str) -> bool:
        schema, name = split_table(table)
        row = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [schema, name],
        ).fetchone()
        return bool(row and row[0])

    def write_table(
        self,
        con: Connection,
        name: str,
        data: pa.Table | pa.RecordBatchReader,
        replace_where: str = "",
    ) -> None:
        """Write `data` as output table `name` in one transaction (old or new, never half).
        A record batch reader is streamed into the table batch by batch.

        With `replace_where` (a SQL predicate), only the matching rows are replaced and the
        rest of the table is kept; the table is created if it does not exist yet.
        """
        target, view = self.output_table(name), f"__incoming_{name}"
        if replace_where and self.table_exists(con, f"{self.output_schema}.{name}"):
            # union by name: rows written by an older layout of the table are kept
            statement = (
                f"create or replace table {target} as "
                f"select * from {target} where not ({replace_where}) "
                f"union all by name select * from {quote(view)}"
            )
        else:
            statement = f"create or replace table {target} as select * from {quote(view)}"
        self.transaction(con, {view: data}, [statement])

    def append_rows(self, con: Connection, name: str, data: pa.Table) -> None:
        """Insert `data` into the existing output table `name` (columns matched by name) in
        one transaction."""
        self.transaction(
            con,
            {f"__incoming_{name}": data},
            [f"insert into {self.output_table(name)} by name select * from __incoming_{name}"],
        )

    def publish_pending(
        self,
        con: Connection,
        name: str,
        pending: str,
        keys: list[str],
        removed: pa.Table,
        replace: bool,
    ) -> None:
        """In one transaction, move the rows of output table `pending` into output table
        `name` and drop `pending`: with `replace` (or no table yet) they become the table;
        otherwise they replace the rows with their keys, and rows with a key of `removed` are
        deleted; every other row keeps everything it had."""
        target, source = self.output_table(name), self.output_table(pending)
        on = " and ".join(f"t.{quote(k)} = d.{quote(k)}" for k in keys)
        if replace or not self.table_exists(con, f"{self.output_schema}.{name}"):
            statements = [f"create or replace table {target} as select * from {source}"]
        else:
            statements = [
                f"delete from {target} t using {source} d where {on}",
                f"delete from {target} t using __removed d where {on}",
                f"insert into {target} by name select * from {source}",
            ]
        self.transaction(con, {"__removed": removed}, [*statements, f"drop table {source}"])

    def delete_rows(self, con: Connection, name: str, keys: list[str], removed: pa.Table) -> None:
        """Delete the rows of output table `name` whose key is in `removed` (one transaction)."""
        on = " and ".join(f"t.{quote(k)} = d.{quote(k)}" for k in keys)
        self.transaction(
            con,
            {"__removed": removed},
            [f"delete from {self.output_table(name)} t using __removed d where {on}"],
        )

    def transaction(
        self,
        con: Connection,
        views: dict[str, pa.Table | pa.RecordBatchReader],
        statements: list[str],
    ) -> None:
        """Run `statements` in one transaction (the output schema created first), with each
        Arrow table or reader of `views` registered under its name; rolled back on error."""
        for view, rows in views.items():
            con.register(view, rows)
        try:
            con.execute("begin transaction")
            con.execute(f"create schema if not exists {quote(self.output_schema)}")
            for statement in statements:
                con.execute(statement)
            con.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("rollback")
            raise
        finally:
            for view in views:
                con.unregister(view)


def table_columns(con: Connection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table or view, in table order; {} if it does not exist."""
    schema, name = split_table(table)
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        "where table_schema = ? and table_name = ? order by ordinal_position",
        [schema, name],
    ).fetchall()
    return {column: dtype for column, dtype in rows}


def fetch_arrow(con: Connection, query: str, params: list | None = None) -> pa.Table:
    """Run a query and return an Arrow table (works on DuckDB 1.x and 2.x)."""
    result = con.execute(query, params or [])
    if hasattr(result, "to_arrow_table"):
        return result.to_arrow_table()
    return result.fetch_arrow_table()
