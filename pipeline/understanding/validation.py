"""Checks of one space's own table: the columns the spec names exist, the key is unique and
never NULL. Relationships between spaces are checked in `joins`."""

from __future__ import annotations

from pipeline.errors import DataError, SpecError
from pipeline.spec import Spec
from pipeline.warehouse.connection import Connection, Warehouse, table_columns
from pipeline.warehouse.sql import qualified, quote


def check_space_columns(con: Connection, spec: Spec, name: str) -> None:
    """Every column the spec names for this space exists in its table."""
    space = spec.spaces[name]
    columns = table_columns(con, space.table)
    place = f"spaces.{name}"
    if not columns:
        raise SpecError(
            f"{place}.table",
            f"table or view '{space.table}' not found in {Warehouse.of(spec)}",
            "check the schema.table name or run the dbt models that build it",
        )

    def require(column: str, where: str) -> None:
        if column not in columns:
            raise SpecError(
                where,
                f"column '{column}' is not in {space.table}",
                f"known columns: {', '.join(columns)}",
            )

    for column in space.key_columns:
        require(column, f"{place}.key")
    for column in space.columns:
        require(column, f"{place}.columns.{column}")
    if space.as_of:
        require(space.as_of, f"{place}.as_of")
    if space.time_column:
        require(space.time_column, f"{place}.time_column")
    for i, ref in enumerate(space.references):
        for column in ref.foreign_key_columns:
            require(column, f"{place}.references[{i}].foreign_key")
    for i, child in enumerate(space.children):
        child_space = spec.spaces[child.space]
        child_columns = table_columns(con, child_space.table)
        for column in child.foreign_key_columns + ([child.order_by] if child.order_by else []):
            if child_columns and column not in child_columns:
                key = "foreign_key" if column in child.foreign_key_columns else "order_by"
                raise SpecError(
                    f"{place}.children[{i}].{key}",
                    f"column '{column}' is not in {child_space.table} (space {child.space})",
                    f"known columns: {', '.join(child_columns)}",
                )


def check_key(con: Connection, spec: Spec, name: str) -> None:
    """The key must be unique and never NULL."""
    space = spec.spaces[name]
    keys = ", ".join(quote(c) for c in space.key_columns)
    table = qualified(space.table)
    if con.execute(f"select count(*) from {table}").fetchone()[0] == 0:
        raise DataError(
            f"spaces.{name}.table: {space.table} is empty -> load it (or run the dbt models "
            "that fill it) before training, or leave the space out of the spec"
        )
    any_null = " or ".join(f"{quote(c)} is null" for c in space.key_columns)
    nulls = con.execute(f"select count(*) from {table} where {any_null}").fetchone()[0]
    if nulls:
        raise DataError(
            f"spaces.{name}.key: {nulls} row(s) of {space.table} have a NULL key "
            f"({', '.join(space.key_columns)}) -> filter them in a staging model "
            "or pick another key"
        )
    duplicated = con.execute(
        f"select {keys}, count(*) as n from {table} group by all having n > 1 "
        f"order by n desc limit 3"
    ).fetchall()
    if duplicated:
        total = con.execute(
            f"select count(*) from (select {keys} from {table} group by all having count(*) > 1)"
        ).fetchone()[0]
        examples = ", ".join(str(row[:-1] if len(row) > 2 else row[0]) for row in duplicated)
        raise DataError(
            f"spaces.{name}.key: '{', '.join(space.key_columns)}' is not unique in {space.table} "
            f"({total} duplicated value(s), e.g. {examples}) -> deduplicate in a staging model "
            "or declare a composite key (key: [a, b])"
        )
