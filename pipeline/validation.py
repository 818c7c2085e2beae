"""Checks that need the data: keys unique and not null, columns exist, joins sound.

Join results become `ml.join_report` rows; an `error` status blocks training.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import duckdb
import pyarrow as pa

from pipeline.errors import DataError, JoinValidationError, SpecError
from pipeline.spec import Spec
from pipeline.warehouse import qualified, quote, table_columns

WARN_COVERAGE = 0.95


@dataclass(frozen=True)
class JoinCheck:
    """The health of one relationship: `child.foreign_key` -> `parent.key`."""

    place: str
    parent: str
    child: str
    kind: str
    foreign_key: str
    coverage: float | None
    parent_coverage: float | None
    orphans: int | None
    null_keys: int | None
    parent_key_type: str
    foreign_key_type: str
    declared_cardinality: str
    observed_cardinality: str | None
    kl_shift: float | None
    status: str
    message: str

    @property
    def name(self) -> str:
        return f"{self.parent}__{self.child}"

    @property
    def blocking(self) -> bool:
        return self.status == "error"


def check_space_columns(con: duckdb.DuckDBPyConnection, spec: Spec, name: str) -> None:
    """Every column the spec names for this space exists in its table."""
    space = spec.spaces[name]
    columns = table_columns(con, space.table)
    place = f"spaces.{name}"
    if not columns:
        raise SpecError(
            f"{place}.table",
            f"table or view '{space.table}' not found in {spec.warehouse}",
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


def check_key(con: duckdb.DuckDBPyConnection, spec: Spec, name: str) -> None:
    """The key must be unique and never NULL."""
    space = spec.spaces[name]
    keys = ", ".join(quote(c) for c in space.key_columns)
    table = qualified(space.table)
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


def _family(duckdb_type: str) -> str:
    if re.match(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$", duckdb_type):
        return "integer"
    if duckdb_type in ("VARCHAR", "UUID"):
        return "string"
    return duckdb_type


def validate_joins(
    con: duckdb.DuckDBPyConnection, spec: Spec, space: str | None = None
) -> list[JoinCheck]:
    """One JoinCheck per children and references link in the spec (or only the links that
    `space` reads: its children and its references)."""
    checks = []
    for name, space_spec in spec.spaces.items():
        if space is not None and name != space:
            continue
        for i, child in enumerate(space_spec.children):
            checks.append(
                _check_link(
                    con,
                    spec,
                    parent=name,
                    child=child.space,
                    kind="children",
                    foreign_key=child.foreign_key_columns,
                    place=f"spaces.{name}.children[{i}]",
                )
            )
        for i, ref in enumerate(space_spec.references):
            checks.append(
                _check_link(
                    con,
                    spec,
                    parent=ref.space,
                    child=name,
                    kind="references",
                    foreign_key=ref.foreign_key_columns,
                    place=f"spaces.{name}.references[{i}]",
                )
            )
    return checks


def _check_link(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    parent: str,
    child: str,
    kind: str,
    foreign_key: list[str],
    place: str,
) -> JoinCheck:
    parent_space, child_space = spec.spaces[parent], spec.spaces[child]
    parent_types = table_columns(con, parent_space.table)
    child_types = table_columns(con, child_space.table)
    key_types = [parent_types.get(k, "?") for k in parent_space.key_columns]
    fk_types = [child_types.get(f, "?") for f in foreign_key]
    declared = "1:N" if kind == "children" else "N:1"
    common = dict(
        place=place,
        parent=parent,
        child=child,
        kind=kind,
        foreign_key=", ".join(foreign_key),
        parent_key_type=", ".join(key_types),
        foreign_key_type=", ".join(fk_types),
        declared_cardinality=declared,
        kl_shift=None,
    )
    mismatched = [
        (f, ft, k, kt)
        for f, ft, k, kt in zip(
            foreign_key, fk_types, parent_space.key_columns, key_types, strict=True
        )
        if _family(ft) != _family(kt)
    ]
    if mismatched:
        f, ft, k, kt = mismatched[0]
        return JoinCheck(
            **common,
            coverage=None,
            parent_coverage=None,
            orphans=None,
            null_keys=None,
            observed_cardinality=None,
            status="error",
            message=(
                f"key types differ: {child}.{f} is {ft} but {parent}.{k} is {kt} -> cast it in "
                f"the staging model of {child_space.table}: cast({f} as {kt})"
            ),
        )

    def join_on(alias: str) -> str:
        return " and ".join(
            f"{alias}.{quote(f)} = p.{quote(k)}"
            for f, k in zip(foreign_key, parent_space.key_columns, strict=True)
        )

    on = join_on("c")
    fk_null = " or ".join(f"c.{quote(f)} is null" for f in foreign_key)
    first_key = quote(parent_space.key_columns[0])
    row = con.execute(
        f"""
        with links as (
            select ({fk_null}) as fk_null, p.{first_key} is not null as matched
            from {qualified(child_space.table)} c
            left join {qualified(parent_space.table)} p on {on}
        )
        select count(*) filter (where fk_null),
               count(*) filter (where not fk_null and not matched),
               count(*) filter (where matched),
               count(*) filter (where not fk_null)
        from links
        """
    ).fetchone()
    null_keys, orphans, matched, with_key = (int(v) for v in row)
    fk_list = ", ".join(f"c.{quote(f)}" for f in foreign_key)
    parents_linked, max_per_parent = con.execute(
        f"""
        select count(*), coalesce(max(n), 0) from (
            select {fk_list}, count(*) as n from {qualified(child_space.table)} c
            where not ({fk_null}) group by all
        ) g
        where exists (select 1 from {qualified(parent_space.table)} p where {join_on("g")})
        """
    ).fetchone()
    n_parents = con.execute(f"select count(*) from {qualified(parent_space.table)}").fetchone()[0]
    coverage = matched / with_key if with_key else 0.0
    parent_coverage = parents_linked / n_parents if n_parents else 0.0
    observed = ("1:N" if kind == "children" else "N:1") if max_per_parent > 1 else "1:1"
    status, problems = "ok", []
    if orphans:
        problems.append(f"{orphans} {child} row(s) point to no {parent} row")
    if null_keys:
        problems.append(f"{null_keys} {child} row(s) have a NULL {', '.join(foreign_key)}")
    if with_key == 0:
        status = "error"
        problems.append(f"no {child} row has a {', '.join(foreign_key)} value")
    elif coverage < spec.min_join_coverage:
        status = "error"
        problems.append(
            f"only {coverage:.0%} of {child} rows find their {parent} row "
            f"(min_join_coverage is {spec.min_join_coverage:.0%}) -> check the foreign key"
        )
    elif coverage < WARN_COVERAGE or null_keys:
        status = "warn"
    message = "; ".join(problems) if problems else "ok"
    return JoinCheck(
        **common,
        coverage=coverage,
        parent_coverage=parent_coverage,
        orphans=orphans,
        null_keys=null_keys,
        observed_cardinality=observed,
        status=status,
        message=message,
    )


def raise_on_blocking(checks: list[JoinCheck]) -> None:
    """Stop before training when any join check has status error."""
    failed = [c for c in checks if c.blocking]
    if failed:
        lines = "\n".join(
            f"  {c.place} ({c.parent} <- {c.child}.{c.foreign_key}): {c.message}" for c in failed
        )
        raise JoinValidationError(f"join validation failed, training stopped:\n{lines}")


def join_report_table(checks: list[JoinCheck]) -> pa.Table:
    """`ml.join_report` rows."""
    schema = pa.schema(
        [
            ("place", pa.string()),
            ("parent", pa.string()),
            ("child", pa.string()),
            ("kind", pa.string()),
            ("foreign_key", pa.string()),
            ("coverage", pa.float64()),
            ("parent_coverage", pa.float64()),
            ("orphans", pa.int64()),
            ("null_keys", pa.int64()),
            ("parent_key_type", pa.string()),
            ("foreign_key_type", pa.string()),
            ("declared_cardinality", pa.string()),
            ("observed_cardinality", pa.string()),
            ("kl_shift", pa.float64()),
            ("status", pa.string()),
            ("message", pa.string()),
        ]
    )
    return pa.Table.from_pylist([asdict(c) for c in checks], schema=schema)
