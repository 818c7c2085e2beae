"""What a warehouse holds, read from its catalog: tables, columns, row counts, and the keys
and foreign keys declared on them."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.warehouse.connection import Connection, DatabaseError, table_columns
from pipeline.warehouse.sql import quote

SYSTEM_SCHEMAS = {"information_schema", "pg_catalog", "pg_toast"}


@dataclass
class Table:
    """One table or view of the warehouse."""

    schema: str
    name: str
    columns: dict[str, str]
    """Column name -> DuckDB type, in table order."""
    rows: int
    declared_key: list[str] = field(default_factory=list)
    """The declared primary key (else the first declared unique constraint), if any."""

    @property
    def address(self) -> str:
        """`schema.table` as the spec's `table:` names it."""
        return f"{self.schema}.{self.name}"

    @property
    def sql(self) -> str:
        return f"{quote(self.schema)}.{quote(self.name)}"


@dataclass(frozen=True)
class DeclaredForeignKey:
    """A FOREIGN KEY constraint of the catalog: `table.columns` -> `referenced.key`."""

    table: str
    columns: tuple[str, ...]
    referenced: str
    key: tuple[str, ...]
    """Addresses (`schema.table`) of both tables."""


def read_catalog(
    con: Connection, schemas: list[str] | None, skipped: set[str]
) -> tuple[list[Table], list[DeclaredForeignKey]]:
    """Every table and view of the current database (in `schemas` when given), except the
    schemas in `skipped` (the pipeline's own output) and the system's, with the constraints
    declared on them. Sorted by address, so the same warehouse gives the same spec."""
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables "
        "where table_catalog = current_database() order by table_schema, table_name"
    ).fetchall()
    wanted = set(schemas) if schemas else None
    tables: list[Table] = []
    for schema, name in rows:
        if schema in SYSTEM_SCHEMAS or schema in skipped or name.startswith("__"):
            continue  # the pipeline's own scratch tables (`__space_rows`, ...) too
        if wanted is not None and schema not in wanted:
            continue
        table = Table(schema, name, {}, 0)
        table.columns = table_columns(con, table.sql)
        table.rows = int(con.execute(f"select count(*) from {table.sql}").fetchone()[0])
        tables.append(table)
    declared = _constraints(con, {t.address: t for t in tables})
    return tables, declared


def _constraints(con: Connection, by_address: dict[str, Table]) -> list[DeclaredForeignKey]:
    """Declared keys go onto their tables; declared foreign keys between two of the tables are
    returned. A warehouse that does not expose constraints (an attached PostgreSQL or lake)
    declares none: keys and relations are then found from the data."""
    try:
        rows = con.execute(
            "select schema_name, table_name, constraint_type, constraint_column_names, "
            "referenced_table, referenced_column_names from duckdb_constraints() "
            "where database_name = current_database() "
            "order by schema_name, table_name, constraint_index"
        ).fetchall()
    except DatabaseError:
        return []
    found: list[DeclaredForeignKey] = []
    for schema, name, kind, columns, referenced, key in rows:
        table = by_address.get(f"{schema}.{name}")
        if table is None:
            continue
        if kind == "PRIMARY KEY" or (kind == "UNIQUE" and not table.declared_key):
            table.declared_key = list(columns)
        elif kind == "FOREIGN KEY" and f"{schema}.{referenced}" in by_address:
            found.append(
                DeclaredForeignKey(
                    table.address, tuple(columns), f"{schema}.{referenced}", tuple(key)
                )
            )
    return found
