"""DuckDB access: late connections, quoted identifiers, atomic table writes."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.spec import Spec
from pipeline.warehouse.backends import (
    ATTACHED,
    CONFLICT_RETRIES,
    EXTENSIONS,
    WarehouseSettingError,
    backend_of,
    extension_file,
    is_conflict,
    stored_select,
)
from pipeline.warehouse.sql import literal, quote, table_parts

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


_INSTANCES: dict[tuple, Connection] = {}
"""Per process, attached warehouse and read-only flag: the DuckDB instance it is attached to."""
_INSTANCES_LOCK = threading.Lock()


class Warehouse:
    """The warehouse (`pipeline.warehouse.backends`): a DuckDB file, or a DuckLake or
    PostgreSQL database attached to an in-memory DuckDB. Connections are opened per
    operation and always closed. A DuckDB file's lock held by another process is waited for,
    with backoff, up to `lock_timeout_s`; an attached warehouse has no file lock, and a
    write that conflicts with another writer's is retried (`transaction`)."""

    def __init__(
        self,
        location: str | Path,
        output_schema: str = "ml",
        lock_timeout_s: float = LOCK_TIMEOUT_S,
        options: dict | None = None,
    ) -> None:
        self.backend = backend_of(location, options)
        self.output_schema = output_schema
        self.lock_timeout_s = lock_timeout_s

    @classmethod
    def of(cls, spec: Spec, lock_timeout_s: float = LOCK_TIMEOUT_S) -> Warehouse:
        """The spec's warehouse (`warehouse:`, `warehouse_options`, `output_schema`)."""
        return cls(spec.warehouse, spec.output_schema, lock_timeout_s, spec.warehouse_options)

    @property
    def path(self) -> Path:
        """The DuckDB file (file backend only)."""
        return self.backend.path

    @property
    def name(self) -> str:
        """A short name for pages and messages: the file's name, else the location."""
        return self.path.name if self.backend.is_file else self.backend.display

    def __str__(self) -> str:
        return str(self.path) if self.backend.is_file else self.backend.display

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[Connection]:
        con = self.open(read_only)
        try:
            yield con
        finally:
            con.close()

    def open(self, read_only: bool = False) -> Connection:
        """One connection that the caller closes (`connect` closes it for you)."""
        if not self.backend.is_file:
            return self._attach(read_only)
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"warehouse file {self.path} does not exist")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self._open_file(read_only)

    def check(self) -> None:
        """Open and close the warehouse once: a wrong setting fails here, before any work."""
        with self.connect():
            pass

    def _attach(self, read_only: bool) -> Connection:
        """A new connection (a cursor) of this process's DuckDB instance that has the
        warehouse attached: loading the extensions and attaching (0.2-0.3 s) happen once per
        process, not per step; temp tables and registered views stay per connection."""
        self.backend.check_settings()
        options = tuple(sorted((k, str(v)) for k, v in self.backend.options.items()))
        key = (os.getpid(), self.backend.location, options, read_only)
        with _INSTANCES_LOCK:
            instance = _INSTANCES.get(key)
            if instance is None:
                instance = _INSTANCES[key] = self._attached_instance(read_only)
        con = instance.cursor()
        try:
            con.execute(f"use {quote(ATTACHED)}")
            if self.backend.refresh_sql:  # dbt or another process may have made tables
                con.execute(self.backend.refresh_sql)
        except duckdb.Error:  # the instance broke (e.g. the server restarted): a new one
            con.close()
            with _INSTANCES_LOCK:
                _INSTANCES.pop(key, None)
            return self._attach(read_only)
        return con

    def _attached_instance(self, read_only: bool) -> Connection:
        con = _duckdb(":memory:")
        try:
            for extension in self.backend.extensions:
                _load_extension(con, extension)
            con.execute(self.backend.attach_sql(read_only))
        except duckdb.Error as error:
            con.close()
            raise WarehouseSettingError(
                f"warehouse: cannot attach {self.backend.display}: {_first_line(error)} -> "
                "check the warehouse: setting (database name, host, port, user) and "
                "warehouse_options, and that the server is running"
            ) from None
        return con

    def _open_file(self, read_only: bool) -> Connection:
        started, wait = time.monotonic(), 0.1
        while True:
            try:
                return _duckdb(str(self.path), read_only)
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
        return table_exists(con, table)

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
        `name` and drop `pending`: with `replace` they become the table; otherwise they
        replace the rows with their keys, and rows with a key of `removed` are deleted; every
        other row keeps everything it had."""
        target, source = self.output_table(name), self.output_table(pending)
        on = " and ".join(f"t.{quote(k)} = d.{quote(k)}" for k in keys)
        if replace:  # renamed, not copied: a copy of MAP columns costs as much as the batches
            statements = [
                f"drop table if exists {target}",
                f"alter table {source} rename to {quote(name)}",
            ]
        else:  # created empty if missing: partitions publishing at once never replace it
            statements = [
                f"create table if not exists {target} as select * from {source} limit 0",
                f"delete from {target} t using {source} d where {on}",
                f"delete from {target} t using __removed d where {on}",
                f"insert into {target} by name select * from {source}",
                f"drop table {source}",
            ]
        self.transaction(con, {"__removed": removed}, statements)

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
        """Run `statements` in one transaction (the output schema created if missing), with each
        Arrow table or reader of `views` registered under its name (in the warehouse's types:
        `stored_select`); rolled back on error. On an attached warehouse, a transaction that
        conflicts with another writer's is run again (Arrow tables only: a reader is read
        once), up to `CONFLICT_RETRIES` times with backoff."""
        replayable = all(isinstance(rows, pa.Table) for rows in views.values())
        for attempt in range(CONFLICT_RETRIES + 1):
            registered = self._register(con, views)
            try:
                schema_missing = not con.execute(
                    "select count(*) from information_schema.schemata "
                    "where catalog_name = current_database() and schema_name = ?",
                    [self.output_schema],
                ).fetchone()[0]
                con.execute("begin transaction")
                if schema_missing:  # not on every write: a lake's writers then collide on it
                    con.execute(f"create schema if not exists {quote(self.output_schema)}")
                for statement in statements:
                    con.execute(statement)
                con.execute("commit")
                return
            except duckdb.Error as error:
                with contextlib.suppress(duckdb.Error):
                    con.execute("rollback")
                if not (replayable and is_conflict(str(error)) and attempt < CONFLICT_RETRIES):
                    raise
                log.info("write conflicted with another's (%s); retrying", _first_line(error))
                time.sleep((0.1 + 0.2 * random.random()) * 2**attempt)  # apart, not in step
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("rollback")
                raise
            finally:
                self._unregister(con, registered)

    def _register(
        self, con: Connection, views: dict[str, pa.Table | pa.RecordBatchReader]
    ) -> list[tuple[str, str | None]]:
        """Register each view; where the backend stores some types differently, the Arrow
        data go under `<view>__arrow` and `<view>` is a temp view that converts them."""
        registered = []
        for view, rows in views.items():
            if self.backend.fixed_arrays and self.backend.maps:
                con.register(view, rows)
                registered.append((view, None))
                continue
            raw = f"{view}__arrow"
            con.register(raw, rows)
            types = con.execute(f"select column_name, column_type from (describe {quote(raw)})")
            select = stored_select(raw, types.fetchall(), self.backend)
            con.execute(f"create or replace temp view {quote(view)} as {select}")
            registered.append((raw, view))
        return registered

    @staticmethod
    def _unregister(con: Connection, registered: list[tuple[str, str | None]]) -> None:
        for raw, view in registered:
            con.unregister(raw)
            if view is not None:
                con.execute(f"drop view if exists temp.main.{quote(view)}")


IN_WAREHOUSE = (
    "table_catalog = current_database() and table_schema = coalesce(?, current_schema()) "
    "and table_name = ?"
)
"""information_schema filter for one table of the warehouse (a bare name: the current schema,
`main` in a DuckDB file, `public` in PostgreSQL); other attached databases are not looked at."""


def table_params(table: str) -> list:
    """The parameters of `IN_WAREHOUSE` for `schema.table`."""
    parts = table_parts(table)
    return [parts[-2] if len(parts) > 1 else None, parts[-1]]


def table_exists(con: Connection, table: str) -> bool:
    """Whether `schema.table` (a table or view) is in the warehouse."""
    row = con.execute(
        f"select count(*) from information_schema.tables where {IN_WAREHOUSE}",
        table_params(table),
    ).fetchone()
    return bool(row and row[0])


def table_columns(con: Connection, table: str) -> dict[str, str]:
    """Column name -> DuckDB type of a table or view, in table order; {} if it does not exist."""
    rows = con.execute(
        "select column_name, data_type from information_schema.columns "
        f"where {IN_WAREHOUSE} order by ordinal_position",
        table_params(table),
    ).fetchall()
    return {column: dtype for column, dtype in rows}


def fetch_arrow(con: Connection, query: str, params: list | None = None) -> pa.Table:
    """Run a query and return an Arrow table (works on DuckDB 1.x and 2.x)."""
    result = con.execute(query, params or [])
    if hasattr(result, "to_arrow_table"):
        return result.to_arrow_table()
    return result.fetch_arrow_table()


def _duckdb(database: str, read_only: bool = False) -> Connection:
    """The one place a DuckDB connection is made (`Warehouse.open`)."""
    return duckdb.connect(database, read_only=read_only, config={"memory_limit": MEMORY_LIMIT})


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def install_extensions() -> None:
    """Install the DuckDB extensions of attached warehouses from their PyPI packages (where
    they are installed), so that dbt and a duckdb shell find them too; `make setup` runs it."""
    con = _duckdb(":memory:")
    try:
        for name in EXTENSIONS:
            if extension_file(name, duckdb.__version__) is not None:
                _load_extension(con, name)
    finally:
        con.close()


def _load_extension(con: Connection, name: str) -> None:
    """Load a DuckDB extension, installing it first from its PyPI package's file."""
    try:
        con.execute(f"load {name}")
        return
    except duckdb.Error:
        pass
    found = extension_file(name, duckdb.__version__)
    if found is None:
        raise WarehouseSettingError(
            f"warehouse: the DuckDB extension '{name}' is not installed -> pip install "
            f"duckdb-extension-{name}=={duckdb.__version__} (make setup installs it)"
        )
    con.execute(f"install {literal(str(found))}")
    con.execute(f"load {name}")
