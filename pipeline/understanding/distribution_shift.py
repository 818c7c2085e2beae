"""How differently parents with children and parents without are distributed: the largest
KL divergence over the parent's own columns (a join-report warning above 1.0)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from pipeline.encoders import column_type
from pipeline.spec import Spec
from pipeline.warehouse.connection import Connection, table_columns
from pipeline.warehouse.sql import qualified, quote

if TYPE_CHECKING:
    from pipeline.understanding.joins import Link

MIN_GROUP = 10


def distribution_shift(con: Connection, spec: Spec, link: Link) -> tuple[float | None, str | None]:
    """Largest KL divergence (nats), over the parent's plain columns, between parents with
    children and parents without: numbers in 10 quantile bins, labels as their 20 most common
    values. None when either group has fewer than MIN_GROUP rows."""
    parent_space, child_space = spec.spaces[link.parent], spec.spaces[link.child]
    structural = set(parent_space.key_columns) | {parent_space.as_of}
    for ref in parent_space.references:
        structural |= set(ref.foreign_key_columns)
    columns = {
        c: t
        for c, t in table_columns(con, parent_space.table).items()
        if c not in structural and not parent_space.column(c).target
    }
    con.execute(
        f"create or replace temp table __linked as select p.*, exists (select 1 from "
        f"{qualified(child_space.table)} c where {link.condition()}) as __has_children "
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
    if any(re.match(column_type(t).native, warehouse_type) for t in ("scalar", "timestamp")):
        return f"case when {q} is null then -1 else ntile(10) over (order by {q}) end"
    if warehouse_type in ("VARCHAR", "BOOLEAN"):
        return (
            f"case when {q} is null then '<null>' when {q} in (select {q} from __linked "
            f"group by {q} order by count(*) desc, {q} limit 20) then cast({q} as varchar) "
            "else '<other>' end"
        )
    return None
