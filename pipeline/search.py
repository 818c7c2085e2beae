"""Nearest rows in a space, by key, with an optional per-input explanation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.runner import space_folder, warehouse_of
from pipeline.spaces.neighbour_table import SavedIndex, index_folder
from pipeline.spaces.space import Space
from pipeline.spec import Spec
from pipeline.store.model_store import current_name
from pipeline.warehouse.connection import table_columns
from pipeline.warehouse.sql import quote

log = logging.getLogger(__name__)


@dataclass
class Neighbour:
    """A similar row: its key, cosine similarity and, with explain, what made it similar."""

    key: tuple
    similarity: float
    explanation: dict[str, float] = field(default_factory=dict)


def nearest(
    spec: Spec, space: str, key: list[str], k: int = 5, explain: bool = False
) -> list[Neighbour]:
    """The `k` rows most similar to the row with `key` (values as text, cast to the key types).

    With `explain`, each neighbour gets, per input token, how much the similarity drops
    when that token is masked in both rows (positive: that input makes them alike).
    """
    if space not in spec.spaces:
        raise PipelineError(f"unknown space {space} (known: {', '.join(spec.spaces)})")
    key_columns = spec.spaces[space].key_columns
    if len(key) != len(key_columns):
        raise PipelineError(
            f"space {space}: the key has {len(key_columns)} column(s) "
            f"({', '.join(key_columns)}), {len(key)} value(s) given"
        )
    warehouse = warehouse_of(spec)
    table = f"{spec.output_schema}.{space}_embeddings"
    source = warehouse.output_table(space + "_embeddings")
    with warehouse.connect(read_only=True) as con:
        types = table_columns(con, table)
        if not types:
            raise PipelineError(f"{table} does not exist -> run python -m pipeline run first")
        match = " and ".join(f"{{a}}.{quote(c)} = cast(? as {types[c]})" for c in key_columns)
        found = con.execute(
            f"select embedding from {source} q where {match.format(a='q')}", key
        ).fetchone()
        if found is None:
            raise PipelineError(f"no row of {table} has key {', '.join(key)}")
        saved = _current_index(spec, space, con, source)
        if saved is not None:
            rows = _indexed(saved, np.asarray(found[0], np.float32), key, types, con, k)
        else:
            keys = ", ".join(f"e.{quote(c)}" for c in key_columns)
            rows = con.execute(
                f"""
                with query as (select embedding from {source} q where {match.format(a="q")})
                select {keys},
                    list_cosine_similarity(e.embedding::float[], query.embedding::float[])
                    as similarity
                from {source} e, query
                where not ({match.format(a="e")})
                order by similarity desc, {keys} limit {int(k)}
                """,
                [*key, *key],
            ).fetchall()
        neighbours = [Neighbour(tuple(r[:-1]), float(r[-1])) for r in rows]
        if explain and neighbours:
            _explain(spec, space, con, warehouse, key, types, neighbours)
    return neighbours


def _current_index(spec: Spec, space: str, con, source: str) -> SavedIndex | None:
    """The space's saved neighbour index when it was built from the embeddings the table
    holds now (same space version and row count); else None, and `nearest` scans every row."""
    folder = index_folder(spec.artifacts, space)
    if not spec.neighbours(space) or current_name(folder) is None:
        return None
    try:
        saved = SavedIndex.load(folder, f"neighbours of {space}")
    except (PipelineError, RuntimeError, OSError) as error:
        log.warning(
            "space %s: the neighbour index cannot be read (%s); scanning every row", space, error
        )
        return None
    rows, version = con.execute(f"select count(*), max(space_version) from {source}").fetchone()
    if (rows, version) != (saved.rows, saved.space_version):
        log.warning(
            "space %s: the neighbour index is older than %s; scanning every row -> "
            "python -m pipeline embed --space %s writes both again",
            space,
            source,
            space,
        )
        return None
    return saved


def _indexed(saved: SavedIndex, vector: np.ndarray, key, types, con, k: int) -> list[tuple]:
    """The k nearest rows of `vector` in the index, the row with `key` itself left out."""
    own = tuple(
        con.execute(f"select cast(? as {types[c]})", [v]).fetchone()[0]
        for c, v in zip(saved.keys.column_names, key, strict=True)
    )
    similarities, rows = saved.index.search(vector[None], k + 1)
    found = saved.keys.take(pa.array(rows[0][rows[0] >= 0])).to_pylist()
    out = [
        (*row.values(), float(similarity))
        for row, similarity in zip(found, similarities[0], strict=False)
        if tuple(row.values()) != own
    ]
    return out[:k]


def _explain(spec, space, con, warehouse, key, types, neighbours) -> None:
    model = Space.load(space_folder(spec, space))
    inputs = model.read_inputs(warehouse, con, spec)
    position = {tuple(row.values()): i for i, row in enumerate(inputs.keys.to_pylist())}
    query_key = tuple(
        con.execute(f"select cast(? as {types[c]})", [v]).fetchone()[0]
        for c, v in zip(spec.spaces[space].key_columns, key, strict=True)
    )
    rows = np.array([position[query_key]] + [position[n.key] for n in neighbours])

    def similarities(hidden: int | None) -> np.ndarray:
        vectors = model.embed(inputs, hidden_token=hidden, rows=rows)
        return vectors[1:] @ vectors[0]

    full = similarities(None)
    for t, token in enumerate(model.model.tokens):
        drop = full - similarities(t)
        for neighbour, value in zip(neighbours, drop, strict=True):
            neighbour.explanation[token.name] = float(value)
