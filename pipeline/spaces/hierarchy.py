"""Child sets (1:N) and references (N:1): read the related spaces' embeddings for each row.

A parent never joins its children's raw rows: it reads their finished embeddings from
`<output_schema>.<child>_embeddings`, so each parent row is seen exactly once.
"""

from __future__ import annotations

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.spaces.inputs import ChildSet, Reference
from pipeline.spec import ChildSpec, Spec
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow
from pipeline.warehouse.sql import qualified, quote
from pipeline.warehouse.vectors import vectors_of


def embeddings_table(spec: Spec, space: str) -> str:
    return f"{quote(spec.output_schema)}.{quote(f'{space}_embeddings')}"


def _require_embeddings(
    warehouse: Warehouse, con: Connection, spec: Spec, parent: str, space: str
) -> None:
    if not warehouse.table_exists(con, f"{spec.output_schema}.{space}_embeddings"):
        raise PipelineError(
            f"space {parent} reads {spec.output_schema}.{space}_embeddings, which does not exist "
            f"yet -> train and embed space {space} first (python -m pipeline run does it in order)"
        )


def link_name(link: ChildSpec) -> str:
    """A child link's name: its space and foreign key (two links may share a space)."""
    return f"{link.space}({', '.join(link.foreign_key_columns)})"


def read_versions(warehouse: Warehouse, con: Connection, spec: Spec, name: str) -> dict[str, str]:
    """The space version of the embeddings each child and referenced space of `name` holds
    now (several versions are joined with '+'; a table not written yet is left out)."""
    space = spec.spaces[name]
    found = {}
    for related in [c.space for c in space.children] + [r.space for r in space.references]:
        if related in found or not warehouse.table_exists(
            con, f"{spec.output_schema}.{related}_embeddings"
        ):
            continue
        rows = con.execute(
            f"select distinct space_version from {embeddings_table(spec, related)} "
            "order by space_version"
        ).fetchall()
        found[related] = "+".join(str(r[0]) for r in rows)
    return found


def read_children(
    warehouse: Warehouse,
    con: Connection,
    spec: Spec,
    name: str,
    rows_table: str,
    embeddings: dict[str, str] | None = None,
) -> list[ChildSet]:
    """Child embeddings per parent row (rows of `rows_table`, which holds __row and the key).
    `embeddings`: `link_name` -> a table to read the link's embeddings from instead of
    `ml.<child>_embeddings` (the children embedded as of their parent's `as_of`)."""
    space = spec.spaces[name]
    n_rows = con.execute(f"select count(*) from {rows_table}").fetchone()[0]
    sets = []
    for child in space.children:
        source = (embeddings or {}).get(link_name(child))
        if source is None:
            _require_embeddings(warehouse, con, spec, name, child.space)
            source = embeddings_table(spec, child.space)
        child_space = spec.spaces[child.space]
        on_parent = " and ".join(
            f"c.{quote(f)} = r.{quote(k)}"
            for f, k in zip(child.foreign_key_columns, space.key_columns, strict=True)
        )
        on_embedding = " and ".join(f"e.{quote(k)} = c.{quote(k)}" for k in child_space.key_columns)
        order_column = child.order_by or child_space.time_column
        child_keys = ", ".join(f"c.{quote(k)}" for k in child_space.key_columns)
        order = (
            f"c.{quote(order_column)} desc nulls last, {child_keys}" if order_column else child_keys
        )
        window = ""
        if space.as_of and child_space.time_column:
            window = f"where c.{quote(child_space.time_column)} < r.{quote(space.as_of)}"
        table = fetch_arrow(
            con,
            f"""
            with linked as (
                select r.__row, e.embedding,
                       row_number() over (partition by r.__row order by {order}) - 1 as position,
                       count(*) over (partition by r.__row) as n_children
                from {qualified(child_space.table)} c
                join {rows_table} r on {on_parent}
                join {source} e on {on_embedding}
                {window}
            )
            select __row, embedding, n_children from linked
            where position < {int(child.max_length)}
            order by __row, position
            """,
        )
        parent_rows = table.column("__row").to_numpy()
        per_parent = np.bincount(parent_rows, minlength=n_rows)
        offsets = np.concatenate([[0], np.cumsum(per_parent)])
        counts = np.zeros(n_rows, np.int64)
        counts[parent_rows] = table.column("n_children").to_numpy()
        vectors = vectors_of(table)
        if vectors.shape[1] == 0:
            vectors = np.zeros((0, _embedding_dim(con, spec, child.space)), np.float32)
        sets.append(
            ChildSet(
                space=child.space,
                max_length=child.max_length,
                offsets=torch.from_numpy(offsets.astype(np.int64)),
                embeddings=torch.from_numpy(vectors),
                counts=torch.from_numpy(counts),
            )
        )
    return sets


def read_references(
    warehouse: Warehouse, con: Connection, spec: Spec, name: str, rows_table: str
) -> list[Reference]:
    """The referenced rows' embeddings, aligned with the rows of `rows_table`."""
    space = spec.spaces[name]
    references = []
    n_rows = con.execute(f"select count(*) from {rows_table}").fetchone()[0]
    for ref in space.references:
        _require_embeddings(warehouse, con, spec, name, ref.space)
        ref_keys = spec.spaces[ref.space].key_columns
        on = " and ".join(
            f"e.{quote(k)} = r.{quote(f)}"
            for f, k in zip(ref.foreign_key_columns, ref_keys, strict=True)
        )
        table = fetch_arrow(
            con,
            f"select r.__row, e.embedding from {rows_table} r "
            f"join {embeddings_table(spec, ref.space)} e on {on} order by r.__row",
        )
        dim = _embedding_dim(con, spec, ref.space)
        vectors = np.zeros((n_rows, dim), np.float32)
        present = np.zeros(n_rows, bool)
        rows = table.column("__row").to_numpy()
        if len(rows):
            vectors[rows] = vectors_of(table)
            present[rows] = True
        references.append(
            Reference(ref.space, torch.from_numpy(vectors), torch.from_numpy(present))
        )
    return references


def _embedding_dim(con: Connection, spec: Spec, space: str) -> int:
    row = con.execute(
        f"select len(embedding) from {embeddings_table(spec, space)} limit 1"
    ).fetchone()
    return int(row[0]) if row else 1
