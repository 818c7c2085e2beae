"""Checks that need the data: keys unique and not null, columns exist, joins sound.

Join results become `ml.join_report` rows; an `error` status blocks training.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from pipeline.errors import DataError, JoinValidationError, SpecError
from pipeline.spec import Spec
from pipeline.warehouse import qualified, quote, table_columns

WARN_COVERAGE = 0.95
WARN_KL = 1.0
MIN_GROUP = 10
N_EXAMPLES = 3


@dataclass(frozen=True)
class JoinCheck:
    """The health of one relationship: `child.foreign_key` -> `parent.key`.

    `coverage`: share of child rows (with a key) that find their parent; `parent_coverage`:
    share of parents with at least one child. `kl_shift`: how differently parents with and
    without children are distributed (max over `kl_column`'s columns, nats).
    """

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
    orphan_examples: list[str] = field(default_factory=list)
    null_key_examples: list[str] = field(default_factory=list)
    duplicated_parent_keys: int | None = None
    kl_column: str | None = None
    excluded_by_as_of: int | None = None

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
    declared = _declared_cardinality(spec, parent, child, kind, foreign_key)
    common = dict(
        place=place,
        parent=parent,
        child=child,
        kind=kind,
        foreign_key=", ".join(foreign_key),
        parent_key_type=", ".join(key_types),
        foreign_key_type=", ".join(fk_types),
        declared_cardinality=declared,
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
            kl_shift=None,
            status="error",
            message=(
                f"key types differ: {child}.{f} is {ft} but {parent}.{k} is {kt} -> cast it in "
                f"the staging model of {child_space.table}: cast({quote(f)} as {kt})"
            ),
        )
    parent_table, child_table = qualified(parent_space.table), qualified(child_space.table)
    pairs = list(zip(foreign_key, parent_space.key_columns, strict=True))
    on = " and ".join(f"c.{quote(f)} = p.{quote(k)}" for f, k in pairs)
    fk_null = " or ".join(f"c.{quote(f)} is null" for f in foreign_key)
    fk_list = ", ".join(f"c.{quote(f)}" for f in foreign_key)
    row = con.execute(
        f"""
        with links as (
            select ({fk_null}) as fk_null,
                   exists (select 1 from {parent_table} p where {on}) as matched
            from {child_table} c
        )
        select count(*) filter (where fk_null),
               count(*) filter (where not fk_null and not matched),
               count(*) filter (where matched),
               count(*) filter (where not fk_null)
        from links
        """
    ).fetchone()
    null_keys, orphans, matched, with_key = (int(v) for v in row)
    parent_keys = ", ".join(quote(k) for k in parent_space.key_columns)
    duplicated = con.execute(
        f"select count(*) from (select {parent_keys} from {parent_table} "
        "group by all having count(*) > 1)"
    ).fetchone()[0]
    parents_linked, max_per_parent = con.execute(
        f"""
        select count(*), coalesce(max(n), 0) from (
            select {fk_list}, count(*) as n from {child_table} c
            where not ({fk_null}) group by all
        ) c
        where exists (select 1 from {parent_table} p where {on})
        """
    ).fetchone()
    n_parents = con.execute(f"select count(*) from {parent_table}").fetchone()[0]
    coverage = matched / with_key if with_key else 0.0
    parent_coverage = parents_linked / n_parents if n_parents else 0.0
    observed = ("1:N" if kind == "children" else "N:1") if max_per_parent > 1 else "1:1"
    orphan_examples = _examples(
        con,
        f"select distinct {fk_list} from {child_table} c where not ({fk_null}) "
        f"and not exists (select 1 from {parent_table} p where {on}) order by all",
    )
    child_keys = ", ".join(f"c.{quote(k)}" for k in child_space.key_columns)
    null_key_examples = _examples(
        con, f"select {child_keys} from {child_table} c where {fk_null} order by all"
    )
    kl, kl_column = distribution_shift(con, spec, parent, child, foreign_key)
    excluded_by_as_of = _excluded_by_as_of(con, spec, parent, child, kind, foreign_key)

    status, problems = "ok", []
    if duplicated:
        status = "error"
        problems.append(
            f"{duplicated} {parent} key value(s) appear more than once in {parent_space.table}, "
            "so joins would multiply rows -> deduplicate it in staging"
        )
    if orphans:
        problems.append(
            f"{orphans} {child} row(s) point to no {parent} row (e.g. {', '.join(orphan_examples)})"
        )
    if null_keys:
        problems.append(
            f"{null_keys} {child} row(s) have a NULL {', '.join(foreign_key)} "
            f"(e.g. {child} {', '.join(null_key_examples)})"
        )
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
        status = "warn" if status == "ok" else status
    if declared == "1:1" and max_per_parent > 1:
        status = "error"
        problems.append(
            f"declared 1:1 but up to {max_per_parent} {child} rows share one {parent} "
            "-> declare the relationship 1:N (children) / N:1 (references), or deduplicate"
        )
    if kl is not None and kl > WARN_KL:
        status = "warn" if status == "ok" else status
        problems.append(
            f"{parent} rows with and without {child} differ (KL {kl:.2f} on {kl_column}); "
            "rows without children are not like the others"
        )
    if excluded_by_as_of:
        problems.append(
            f"{excluded_by_as_of} {child} row(s) at or after {parent}'s as_of are left out"
        )
    summary = f"{coverage:.0%} of {child} rows find a {parent}; {parent_coverage:.0%} of {parent} "
    summary += f"rows have {child}"
    message = "; ".join(problems) if problems else "ok"
    return JoinCheck(
        **common,
        coverage=coverage,
        parent_coverage=parent_coverage,
        orphans=orphans,
        null_keys=null_keys,
        observed_cardinality=observed,
        kl_shift=kl,
        status=status,
        message=f"{message} ({summary})",
        orphan_examples=orphan_examples,
        null_key_examples=null_key_examples,
        duplicated_parent_keys=int(duplicated),
        kl_column=kl_column,
        excluded_by_as_of=excluded_by_as_of,
    )


def _declared_cardinality(
    spec: Spec, parent: str, child: str, kind: str, foreign_key: list[str]
) -> str:
    if kind == "children":
        links = spec.spaces[parent].children
    else:
        links = [r for r in spec.spaces[child].references if r.space == parent]
    for link in links:
        if (kind == "references" or link.space == child) and link.foreign_key_columns == (
            foreign_key
        ):
            return link.cardinality
    return "1:N" if kind == "children" else "N:1"


def _examples(con: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    rows = con.execute(f"{query} limit {N_EXAMPLES}").fetchall()
    return [str(r[0] if len(r) == 1 else tuple(r))[:60] for r in rows]


def _excluded_by_as_of(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    parent: str,
    child: str,
    kind: str,
    foreign_key: list[str],
) -> int | None:
    """Child rows that are never aggregated because they are not before the parent's as_of
    (a NULL time counts as not before)."""
    parent_space, child_space = spec.spaces[parent], spec.spaces[child]
    if kind != "children" or not parent_space.as_of or not child_space.time_column:
        return None
    on = " and ".join(
        f"c.{quote(f)} = p.{quote(k)}"
        for f, k in zip(foreign_key, parent_space.key_columns, strict=True)
    )
    time, as_of = quote(child_space.time_column), quote(parent_space.as_of)
    return int(
        con.execute(
            f"select count(*) from {qualified(child_space.table)} c "
            f"join {qualified(parent_space.table)} p on {on} "
            f"where not coalesce(c.{time} < p.{as_of}, false)"
        ).fetchone()[0]
    )


def distribution_shift(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    parent: str,
    child: str,
    foreign_key: list[str],
) -> tuple[float | None, str | None]:
    """Largest KL divergence (nats), over the parent's plain columns, between parents with
    children and parents without: numbers in 10 quantile bins, labels as their 20 most common
    values. None when either group has fewer than MIN_GROUP rows."""
    parent_space, child_space = spec.spaces[parent], spec.spaces[child]
    structural = set(parent_space.key_columns) | {parent_space.as_of}
    for ref in parent_space.references:
        structural |= set(ref.foreign_key_columns)
    columns = {
        c: t
        for c, t in table_columns(con, parent_space.table).items()
        if c not in structural and not parent_space.column(c).target
    }
    on = " and ".join(
        f"c.{quote(f)} = p.{quote(k)}"
        for f, k in zip(foreign_key, parent_space.key_columns, strict=True)
    )
    con.execute(
        f"create or replace temp table __linked as select p.*, exists (select 1 from "
        f"{qualified(child_space.table)} c where {on}) as __has_children "
        f"from {qualified(parent_space.table)} p"
    )
    try:
        n_with, n_without = con.execute(
            "select count(*) filter (where __has_children), "
            "count(*) filter (where not __has_children) from __linked"
        ).fetchone()
        if min(n_with, n_without) < MIN_GROUP:
            return None, None
        worst: tuple[float | None, str | None] = (None, None)
        for column, warehouse_type in columns.items():
            bucket = _bucket_expression(column, warehouse_type)
            if bucket is None:
                continue
            rows = con.execute(
                "select b, count(*) filter (where __has_children), "
                "count(*) filter (where not __has_children) "
                f"from (select {bucket} as b, __has_children from __linked) group by b"
            ).fetchall()
            with_children = np.array([r[1] for r in rows], dtype=np.float64) + 0.5
            without = np.array([r[2] for r in rows], dtype=np.float64) + 0.5
            p, q = with_children / with_children.sum(), without / without.sum()
            kl = float(np.sum(p * np.log(p / q)))
            if worst[0] is None or kl > worst[0]:
                worst = (round(kl, 4), column)
        return worst
    finally:
        con.execute("drop table if exists __linked")


def _bucket_expression(column: str, warehouse_type: str) -> str | None:
    q = quote(column)
    if _family(warehouse_type) == "integer" or re.match(
        r"^(FLOAT|DOUBLE|REAL|DECIMAL.*|DATE|TIMESTAMP.*)$", warehouse_type
    ):
        return f"case when {q} is null then -1 else ntile(10) over (order by {q}) end"
    if warehouse_type in ("VARCHAR", "BOOLEAN"):
        return (
            f"case when {q} is null then '<null>' when {q} in (select {q} from __linked "
            f"group by {q} order by count(*) desc, {q} limit 20) then cast({q} as varchar) "
            "else '<other>' end"
        )
    return None


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
            ("orphan_examples", pa.list_(pa.string())),
            ("null_key_examples", pa.list_(pa.string())),
            ("duplicated_parent_keys", pa.int64()),
            ("kl_column", pa.string()),
            ("excluded_by_as_of", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([asdict(c) for c in checks], schema=schema)
