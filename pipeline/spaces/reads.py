"""Read a space's rows from the warehouse and turn them into model inputs.

Rows are always in key order. Codecs are fitted here the first time (`codecs=None`) and
reused afterwards, so new rows go through the statistics the model was trained with.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline.encoders import column_type, fit_codec
from pipeline.encoders.base import Codec, render
from pipeline.encoders.text_vectors import TEXT_DIM
from pipeline.spaces.child_features import ChildStatistics
from pipeline.spaces.child_plans import (
    plan_references,
    plan_statistics,
    referenced_spaces,
)
from pipeline.spaces.child_stats import child_statistics
from pipeline.spaces.hierarchy import read_children, read_references
from pipeline.spaces.inputs import ColumnInput, SpaceInputs, table_column
from pipeline.spec import Spec
from pipeline.understanding.profiling import ColumnProfile, stored_profiles
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow, table_columns
from pipeline.warehouse.sql import lowest_hash_rows, qualified, quote
from pipeline.warehouse.text_cache import cached_embeddings

ROWS_TABLE = "__space_rows"


def select_expression(column: str, type_name: str) -> str:
    """How a column of this type is read from its table (what its codec encodes)."""
    return render(column_type(type_name).read_sql, column=quote(column))


def create_rows_table(con: Connection, spec: Spec, name: str, only: str | None = None) -> None:
    """A temp table `__space_rows(__row, key..., foreign keys..., as_of)` in key order: every
    row of the space's table, or those whose key is in the table `only`."""
    space = spec.spaces[name]
    keys = ", ".join(quote(k) for k in space.key_columns)
    extra = [c for r in space.references for c in r.foreign_key_columns]
    if space.as_of:
        extra.append(space.as_of)
    extra = [c for c in dict.fromkeys(extra) if c not in space.key_columns]
    extra_sql = "".join(f", {quote(c)}" for c in extra)
    where = ""
    if only is not None:
        on = " and ".join(f"o.{quote(k)} = t.{quote(k)}" for k in space.key_columns)
        where = f" where exists (select 1 from {only} o where {on})"
    con.execute(
        f"create or replace temp table {ROWS_TABLE} as "
        f"select (row_number() over (order by {keys}) - 1)::bigint as __row, {keys}{extra_sql} "
        f"from {qualified(space.table)} t{where}"
    )


SAMPLE_TABLE = "__sampled_rows"


def sample_rows(con: Connection, spec: Spec, name: str, rows: int, seed: int) -> str:
    """A temp table of the keys of `rows` rows of the space's table, chosen by a hash of the
    key and `seed` (the same rows for the same data and seed); returns its name."""
    key_columns = spec.spaces[name].key_columns
    keys = ", ".join(quote(k) for k in key_columns)
    con.execute(
        f"create or replace temp table {SAMPLE_TABLE} as select {keys} "
        f"from {qualified(spec.spaces[name].table)} {lowest_hash_rows(key_columns, rows, seed)}"
    )
    return SAMPLE_TABLE


def rows_table_of(con: Connection, keys: pa.Table) -> None:
    """`__space_rows(__row, key...)` from keys already read in row order: a step given the
    inputs another step read joins on the same rows (their keys, not the table's current
    order)."""
    rows = keys.append_column("__row", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
    con.register("__space_rows_given", rows)
    try:
        con.execute(f"create or replace temp table {ROWS_TABLE} as from __space_rows_given")
    finally:
        con.unregister("__space_rows_given")


def read_in_row_order(con: Connection, spec: Spec, name: str, select: str) -> pa.Table:
    """`select` (SQL over the space's table aliased `t`) for every row, in `__space_rows`
    order (see `create_rows_table`)."""
    space = spec.spaces[name]
    on = " and ".join(f"t.{quote(k)} = r.{quote(k)}" for k in space.key_columns)
    return fetch_arrow(
        con,
        f"select {select} from {qualified(space.table)} t "
        f"join {ROWS_TABLE} r on {on} order by r.__row",
    )


def read_space_inputs(
    warehouse: Warehouse,
    con: Connection,
    spec: Spec,
    name: str,
    profiles: list[ColumnProfile] | None = None,
    codecs: dict[str, Codec] | None = None,
    statistics: ChildStatistics | None = None,
    child_embeddings: dict[str, str] | None = None,
    only: str | None = None,
    tokens: bool = True,
) -> SpaceInputs:
    """Read and encode a space's inputs. Give `profiles` to fit codecs and child statistics,
    or the fitted `codecs` and `statistics` (None: the space had no children).
    `child_embeddings`: see `read_children`; `only`: see `create_rows_table`;
    `tokens=False`: only what a model beside the stored embedding reads
    (`inputs.table_column` columns and the child statistics; no text vectors, child sets or
    references), for fitted codecs."""
    space = spec.spaces[name]
    create_rows_table(con, spec, name, only)
    keys_sql = ", ".join(quote(k) for k in space.key_columns)
    keys = fetch_arrow(con, f"select {keys_sql} from {ROWS_TABLE} order by __row")
    if codecs is None:
        assert profiles is not None, "profiles are needed to fit codecs"
        wanted = {p.column: p.detected_type for p in profiles if p.is_input}
    else:
        wanted = {column: codec.type for column, codec in codecs.items()}
        if not tokens:
            wanted = {column: kind for column, kind in wanted.items() if table_column(kind)}
    present_columns = table_columns(con, space.table)
    missing = [c for c in wanted if c not in present_columns]
    readable = {c: t for c, t in wanted.items() if c in present_columns}
    values: dict[str, list | np.ndarray] = {}
    if readable:
        select = ", ".join(f"{select_expression(c, t)} as {quote(c)}" for c, t in readable.items())
        table = read_in_row_order(con, spec, name, select)
        for column, type_name in readable.items():
            array = table.column(column)
            if column_type(type_name).reads_numbers:
                values[column] = array.to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                values[column] = array.to_pylist()
    columns = []
    for column, type_name in wanted.items():
        raw = values.get(column)
        if raw is None:
            raw = (
                np.full(keys.num_rows, np.nan)
                if column_type(type_name).reads_numbers
                else [None] * keys.num_rows
            )
        codec = codecs[column] if codecs is not None else fit_codec(type_name, column, raw)
        columns.append(encode_column(warehouse, con, codec, raw, text=tokens))
        columns[-1].raw = raw
    children, references = [], []
    if tokens:
        children = read_children(warehouse, con, spec, name, ROWS_TABLE, child_embeddings)
        references = read_references(warehouse, con, spec, name, ROWS_TABLE)
    inputs = SpaceInputs(
        name, keys, columns, children, references, missing_columns=missing, tokens=tokens
    )
    if codecs is None and (space.children or space.references):
        profiles_of = {
            s: stored_profiles(con, spec, s) for s in sorted(referenced_spaces(spec, name))
        }
        plans = plan_statistics(con, spec, name, profiles_of)
        references = plan_references(con, spec, name, profiles_of)
        values = child_statistics(con, spec, name, ROWS_TABLE, plans, references)
        statistics = ChildStatistics.fit(plans, values, references)
    elif statistics is not None:
        values = child_statistics(
            con, spec, name, ROWS_TABLE, statistics.plans, statistics.references
        )
    if statistics is not None:
        inputs.statistics, inputs.statistics_values = statistics, values
        inputs.statistics_arrays = {
            k: torch.from_numpy(v) for k, v in statistics.transform(values).items()
        }
    return inputs


def encode_column(
    warehouse: Warehouse,
    con: Connection,
    codec: Codec,
    raw: list | np.ndarray,
    keep: bool = True,
    text: bool = True,
) -> ColumnInput:
    """Values as read, through a fitted codec (text through the cached MiniLM vectors; `keep`:
    cache the vectors of new text values; `text=False`: no text vectors)."""
    arrays = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in codec.transform(raw).items()}
    text_vectors = None
    if codec.semantic and text:
        texts = codec.texts(raw)
        distinct = sorted({t for t in texts if t is not None})
        position = {t: i + 1 for i, t in enumerate(distinct)}
        vectors = cached_embeddings(warehouse, con, distinct, keep)
        text_vectors = torch.from_numpy(
            np.concatenate([np.zeros((1, TEXT_DIM), np.float32), vectors], axis=0)
        )
        arrays["text_row"] = torch.tensor([position.get(t, 0) for t in texts], dtype=torch.long)
    return ColumnInput(codec.column, codec, arrays, text_vectors)
