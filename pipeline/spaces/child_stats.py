"""Statistics of a parent's child rows and referenced rows, computed in DuckDB: what a
GROUP BY sees, one grouped query per level, following a plan fitted once
(`pipeline.spaces.child_plans`).

Rows earlier than the space's `as_of` only, where it has one; rows referencing the same row
earlier in time only, where the space has a `time_column`.
"""

from __future__ import annotations

import numpy as np

from pipeline.spaces.child_features import (
    direct_statistics,
    lookup_statistics,
    stacked_statistics,
)
from pipeline.spaces.child_plans import LinkPlan, ReferencePlan, value_sql
from pipeline.spec import SpaceSpec, Spec
from pipeline.warehouse.connection import Connection, fetch_arrow, table_columns
from pipeline.warehouse.sql import qualified, quote


def child_statistics(
    con: Connection,
    spec: Spec,
    parent: str,
    rows_table: str,
    plans: list[LinkPlan],
    references: list[ReferencePlan] | tuple = (),
) -> np.ndarray:
    """[n_rows, n_features] float64 (NaN where a statistic is undefined, e.g. the mean of no
    children) for the rows of `rows_table` (`__row`, the parent key, its foreign keys and
    `as_of` if set), in `feature_names` order."""
    space = spec.spaces[parent]
    n_rows = con.execute(f"select count(*) from {rows_table}").fetchone()[0]
    now = f"max(epoch(r.{quote(space.as_of)}))" if space.as_of else "max(null)"
    blocks, stacked = [], []
    for plan in plans:
        children = (
            f"{qualified(plan.table)} c join {rows_table} r "
            f"on {_on(plan.foreign_key, space.key_columns, 'c', 'r')}"
            f"{_as_of(space.as_of, plan, 'c', 'and')}"
        )
        direct = direct_statistics(plan, plan.space, now, _missing(con, plan))
        blocks.append(_grouped(con, n_rows, [sql for _, sql in direct], f"from {children}"))
        for lookup in plan.lookups:
            aggregates = direct_statistics(
                lookup, "", now, _missing(con, lookup), alias="s", count=False
            )
            if aggregates:
                source = (
                    f"from {children} join {qualified(lookup.table)} s "
                    f"on {_on(lookup.foreign_key, lookup.key, 'c', 's')}"
                )
                block = _grouped(con, n_rows, [sql for _, sql in aggregates], source, count=False)
                blocks.append(block)
        for grandchild in plan.children:
            on_child = _on(grandchild.foreign_key, plan.key, "g", "c")
            prefix = f"{plan.space}/{grandchild.space}"
            aggregates = direct_statistics(grandchild, prefix, now, _missing(con, grandchild), "g")
            source = (
                f"from {children} join {qualified(grandchild.table)} g on {on_child}"
                f"{_as_of(space.as_of, grandchild, 'g', 'and')}"
            )
            blocks.append(_grouped(con, n_rows, [sql for _, sql in aggregates], source))
            stacked.append(_stacked_block(con, space.as_of, children, n_rows, plan, grandchild))
    blocks += stacked
    for reference in references:
        blocks += _reference_blocks(con, space, rows_table, n_rows, now, reference)
    if not blocks:
        return np.zeros((n_rows, 0))
    return np.concatenate(blocks, axis=1)


def _reference_blocks(
    con: Connection,
    space: SpaceSpec,
    rows_table: str,
    n_rows: int,
    now: str,
    reference: ReferencePlan,
) -> list[np.ndarray]:
    """The columns of a reference read through (see `ReferencePlan`), per row of
    `rows_table`."""
    lookup = reference.lookup
    joined = _on(lookup.foreign_key, lookup.key, "r", "s")
    found = np.zeros(n_rows, bool)  # rows whose foreign key finds a referenced row
    matched = f"select r.__row from {rows_table} r join {qualified(lookup.table)} s on {joined}"
    found[fetch_arrow(con, matched).column("__row").to_numpy()] = True
    blocks = []
    values = lookup_statistics(lookup, "", now, _missing(con, lookup))
    if values:
        source = f"from {rows_table} r join {qualified(lookup.table)} s on {joined}"
        blocks.append(_grouped(con, n_rows, [sql for _, sql in values], source, count=False))
    for child in reference.children:
        # the referenced row's children, through its key (= this row's foreign key); cut
        # at each row's as_of when they are dated, else summarised once per referenced row
        if space.as_of and child.time_column:
            aggregates = [
                sql for _, sql in direct_statistics(child, "", now, _missing(con, child), "g")
            ]
            on = _on(child.foreign_key, lookup.foreign_key, "g", "r")
            cut = _as_of(space.as_of, child, "g", "and")
            source = f"from {rows_table} r join {qualified(child.table)} g on {on}{cut}"
            blocks.append(_grouped(con, n_rows, aggregates, source))
            continue
        aggregates = [
            sql for _, sql in direct_statistics(child, "", "null", _missing(con, child), "g")
        ]
        keys = ", ".join(f"g.{quote(f)} as __k{i}" for i, f in enumerate(child.foreign_key))
        select = ", ".join(f"cast({sql} as double) as f{i}" for i, sql in enumerate(aggregates))
        per_row = (
            f"with per_key as (select {keys}, {select} from {qualified(child.table)} g "
            f"group by all) select r.__row, "
            + ", ".join(f"p.f{i}" for i in range(len(aggregates)))
            + f" from {rows_table} r join per_key p on "
            + " and ".join(f"p.__k{i} = r.{quote(f)}" for i, f in enumerate(lookup.foreign_key))
        )
        block = _placed(fetch_arrow(con, per_row), n_rows)
        block[:, 0] = np.nan_to_num(block[:, 0])
        blocks.append(block)
    blocks.append(_referrers(con, space, rows_table, n_rows, reference))
    for block in blocks:  # no referenced row: nothing is known of it, not "no children"
        block[~found] = np.nan
    return blocks


def _referrers(
    con: Connection,
    space: SpaceSpec,
    rows_table: str,
    n_rows: int,
    reference: ReferencePlan,
) -> np.ndarray:
    """[n_rows, 1]: for each row of `rows_table`, the other rows of the space's whole table
    with the same foreign key (earlier ones only when the space has a time column; NaN for a
    row without a time or a foreign key), whichever rows `rows_table` holds."""
    foreign_key = [f"t.{quote(f)}" for f in reference.lookup.foreign_key]
    partition = ", ".join(foreign_key)
    null = " or ".join(f"{f} is null" for f in foreign_key)
    if reference.time_column:
        order = f"t.{quote(reference.time_column)}"
        null += f" or {order} is null"
        count = f"rank() over (partition by {partition} order by {order}) - 1"
    else:
        count = f"count(*) over (partition by {partition}) - 1"
    keys = ", ".join(f"t.{quote(k)}" for k in space.key_columns)
    on = " and ".join(f"w.{quote(k)} = r.{quote(k)}" for k in space.key_columns)
    counted = (
        f"select {keys}, case when {null} then null else {count} end as f0 "
        f"from {qualified(reference.referrer_table)} t"
    )
    sql = f"select r.__row, w.f0 from {rows_table} r join ({counted}) w on {on}"
    return _placed(fetch_arrow(con, sql), n_rows)


def _on(foreign_key: tuple[str, ...], key: list | tuple, child: str, parent: str) -> str:
    """Join condition from the child rows (alias `child`) to their parent rows."""
    return " and ".join(
        f"{child}.{quote(f)} = {parent}.{quote(k)}" for f, k in zip(foreign_key, key, strict=True)
    )


def _missing(con: Connection, plan: LinkPlan) -> set[str]:
    """Planned columns no longer in the table (read as NULL, like a missing input column)."""
    present = table_columns(con, plan.table)
    return {c.column for c in plan.columns if c.column not in present}


def _as_of(as_of: str | None, plan: LinkPlan, alias: str, joiner: str) -> str:
    """` <joiner> <alias>.time < r.as_of` when the parent has an `as_of` and the rows a time."""
    if not as_of or not plan.time_column:
        return ""
    return f" {joiner} {alias}.{quote(plan.time_column)} < r.{quote(as_of)}"


def _grouped(
    con: Connection,
    n_rows: int,
    aggregates: list[str],
    source: str,
    count: bool = True,
) -> np.ndarray:
    """Aggregates grouped by the parent row, placed in an [n_rows, k] matrix (NaN for parents
    without rows; with `count`, the first aggregate is a count: 0 for them)."""
    select = ", ".join(f"cast({sql} as double) as f{i}" for i, sql in enumerate(aggregates))
    out = _placed(fetch_arrow(con, f"select r.__row, {select} {source} group by r.__row"), n_rows)
    if count:
        out[:, 0] = np.nan_to_num(out[:, 0])
    return out


def _placed(table, n_rows: int) -> np.ndarray:
    """Columns `f0..fk` of a result keyed by `__row`, as an [n_rows, k] matrix (NaN: no row)."""
    features = [c for c in table.column_names if c != "__row"]
    out = np.full((n_rows, len(features)), np.nan)
    rows = table.column("__row").to_numpy()
    for i, name in enumerate(features):
        out[rows, i] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def _stacked_block(
    con: Connection,
    as_of: str | None,
    children: str,
    n_rows: int,
    plan: LinkPlan,
    grandchild: LinkPlan,
) -> np.ndarray:
    """Stacked statistics: per child row its grandchild count and sums (`children` is the
    SQL of the parent's child rows, aliased `c`, joined to their parent row `r`)."""
    missing = _missing(con, grandchild)
    sums = "".join(
        f", sum({value_sql(c, 'g', present=c.column not in missing)}) as __sum_{i}"
        for i, c in enumerate(grandchild.columns)
        if c.kind == "number"
    )
    child_key = ", ".join(f"c.{quote(k)} as __key_{i}" for i, k in enumerate(plan.key))
    per_child = (
        f"select r.__row, {child_key}, count(g.{quote(grandchild.foreign_key[0])}) as __n"
        f"{sums} from {children} left join {qualified(grandchild.table)} g "
        f"on {_on(grandchild.foreign_key, plan.key, 'g', 'c')}"
        f"{_as_of(as_of, grandchild, 'g', 'and')} group by all"
    )
    stacked = stacked_statistics(plan, grandchild, missing)
    select = ", ".join(f"cast({sql} as double) as f{i}" for i, (_, sql) in enumerate(stacked))
    return _placed(
        fetch_arrow(con, f"with pc as ({per_child}) select pc.__row, {select} from pc group by 1"),
        n_rows,
    )
