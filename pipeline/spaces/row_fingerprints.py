"""Row fingerprints, computed in SQL: what a row's embedding and predictions depend on.

A row's fingerprint hashes its own columns, the fingerprints of its children (summed and
counted per parent, so their order does not matter), and so down to grandchildren, and the
fingerprint of each row it references. A row whose fingerprint is the one stored beside its
embedding has the same inputs as when it was embedded: `embed` and `predict` skip it.
"""

from __future__ import annotations

import hashlib

import pyarrow as pa

from pipeline.spaces.reads import ROWS_TABLE
from pipeline.spec import Spec
from pipeline.warehouse.connection import Connection, fetch_arrow
from pipeline.warehouse.sql import qualified, quote

FINGERPRINTS_TABLE = "__fingerprints"
FINGERPRINT = "row_fingerprint"
"""The column of `ml.<space>_embeddings` and of the predictions tables that holds it."""


def fingerprint_query(spec: Spec, name: str, carry: list[str] | None = None) -> str:
    """SQL: one row per row of the space's table, `carry` columns (default: the key) and
    `row_fingerprint` (UBIGINT)."""
    space = spec.spaces[name]
    carried = carry if carry is not None else space.key_columns
    parts = ["hash(t)"]
    joins = []
    for i, link in enumerate(space.children):
        alias = f"c{i}"
        fk = link.foreign_key_columns
        fk_sql = ", ".join(quote(c) for c in fk)
        on = " and ".join(
            f"{alias}.{quote(f)} = t.{quote(k)}" for f, k in zip(fk, space.key_columns, strict=True)
        )
        joins.append(
            f"left join (select {fk_sql}, sum({FINGERPRINT}::hugeint) as s, count(*) as n "
            f"from ({fingerprint_query(spec, link.space, fk)}) group by {fk_sql}) {alias} on {on}"
        )
        parts += [f"{alias}.s", f"{alias}.n"]
    for i, ref in enumerate(space.references):
        alias = f"r{i}"
        target_key = spec.spaces[ref.space].key_columns
        on = " and ".join(
            f"{alias}.{quote(k)} = t.{quote(f)}"
            for f, k in zip(ref.foreign_key_columns, target_key, strict=True)
        )
        joins.append(f"left join ({fingerprint_query(spec, ref.space)}) {alias} on {on}")
        parts.append(f"{alias}.{FINGERPRINT}")
    select = ", ".join(f"t.{quote(c)}" for c in carried)
    joined = "".join(f" {j}" for j in joins)
    return (
        f"select {select}, hash({', '.join(parts)}) as {FINGERPRINT} "
        f"from {qualified(space.table)} t{joined}"
    )


def write_fingerprints(con: Connection, spec: Spec, name: str) -> None:
    """The temp table `__fingerprints(key..., row_fingerprint)` of every current row."""
    con.execute(
        f"create or replace temp table {FINGERPRINTS_TABLE} as {fingerprint_query(spec, name)}"
    )


def fingerprints_in_row_order(
    con: Connection, spec: Spec, name: str, source: str = FINGERPRINTS_TABLE
) -> pa.ChunkedArray:
    """The fingerprint of each row of `__space_rows`, in its order, from `source` (key
    columns and `row_fingerprint`)."""
    on = " and ".join(f"f.{quote(k)} = r.{quote(k)}" for k in spec.spaces[name].key_columns)
    return fetch_arrow(
        con,
        f"select f.{FINGERPRINT} from {ROWS_TABLE} r join {source} f on {on} order by r.__row",
    ).column(0)


def tables_digest(con: Connection, spec: Spec, name: str) -> str:
    """A hash of the contents of the space's table and of every table it joins to (its
    children's and its references'): what validating the space reads."""
    space = spec.spaces[name]
    tables = [space.table] + [spec.spaces[d].table for d in spec.dependencies(name)]
    parts = [
        con.execute(
            f"select sum(hash(t)::hugeint)::varchar, count(*) from {qualified(table)} t"
        ).fetchone()
        for table in dict.fromkeys(tables)
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]
