"""Nearest rows in a space: to a stored row (by key), to a described row (a partial record,
or a text), with an optional per-input explanation."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from pipeline.encoders.text_vectors import encode as encode_texts
from pipeline.errors import PipelineError
from pipeline.records import record_embedding
from pipeline.runner import space_folder, warehouse_of
from pipeline.spaces.neighbour_table import SavedIndex, index_folder
from pipeline.spaces.reads import select_expression
from pipeline.spaces.space import Space
from pipeline.spec import Spec
from pipeline.store.model_store import current_name
from pipeline.warehouse.connection import table_columns
from pipeline.warehouse.sql import qualified, quote
from pipeline.warehouse.text_cache import cached_embeddings

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
        own = _typed_key(con, types, key_columns, key)
        saved = _current_index(spec, space, con, source)
        if saved is not None:
            rows = _indexed(saved, np.asarray(found[0], np.float32), own, k)
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
            model = Space.load(space_folder(spec, space))

            def query(inputs, position, hidden):
                row = np.array([position[own]])
                return model.embed(inputs, hidden_token=hidden, rows=row)[0]

            _explain(spec, model, con, warehouse, query, neighbours)
    return neighbours


def nearest_to_record(
    spec: Spec, space: str, record: dict, k: int = 5, explain: bool = False
) -> list[Neighbour]:
    """The `k` rows most similar to a described row: `record` names some of the space's
    columns (values as in its table), child spaces (lists of their records) and reference
    keys; everything it leaves out is masked, as in training. The saved model, no retraining."""
    if space not in spec.spaces:
        raise PipelineError(f"unknown space {space} (known: {', '.join(spec.spaces)})")
    if not isinstance(record, dict) or not record:
        raise PipelineError(f"space {space}: --row must be a JSON object naming some columns")
    warehouse = warehouse_of(spec)
    source = warehouse.output_table(space + "_embeddings")
    model = Space.load(space_folder(spec, space))
    with warehouse.connect(read_only=True) as con:
        if not table_columns(con, f"{spec.output_schema}.{space}_embeddings"):
            raise PipelineError(f"{source} does not exist -> run python -m pipeline run first")
        vector = record_embedding(model, warehouse, con, spec, record)
        saved = _current_index(spec, space, con, source)
        if saved is not None:
            similarities, found = saved.index.search(vector[None].astype(np.float32), k)
            keys = saved.keys.take(pa.array(found[0][found[0] >= 0])).to_pylist()
            rows = [
                (*row.values(), float(s)) for row, s in zip(keys, similarities[0], strict=False)
            ]
        else:
            names = ", ".join(quote(c) for c in spec.spaces[space].key_columns)
            rows = con.execute(
                f"select {names}, list_cosine_similarity(embedding::float[], ?::float[]) as s "
                f"from {source} order by s desc, {names} limit {int(k)}",
                [vector.tolist()],
            ).fetchall()
        neighbours = [Neighbour(tuple(r[:-1]), float(r[-1])) for r in rows]
        if explain and neighbours:

            def query(inputs, position, hidden):
                return record_embedding(model, warehouse, con, spec, record, also_hidden=hidden)

            _explain(spec, model, con, warehouse, query, neighbours)
    return neighbours


def nearest_to_text(
    spec: Spec, space: str, text: str, k: int = 5, explain: bool = False
) -> list[Neighbour]:
    """The `k` rows whose text columns read most like `text`: cosine similarity of the text's
    vector and each row's text values' vectors (the encoder the space was trained with,
    read from the warehouse's cache of it), the best of the row's text columns; with
    `explain`, each text column's similarity. Reads the table in batches."""
    if space not in spec.spaces:
        raise PipelineError(f"unknown space {space} (known: {', '.join(spec.spaces)})")
    model = Space.load(space_folder(spec, space))
    codecs = [codec for codec in model.codecs.values() if codec.type == "text"]
    if not codecs:
        raise PipelineError(
            f"space {space} has no text column -> search it with --row (a partial record)"
        )
    query = encode_texts([text])[0]
    keys = spec.spaces[space].key_columns
    reads = [f"{select_expression(c.column, c.type)} as {quote(c.column)}" for c in codecs]
    warehouse = warehouse_of(spec)
    best: list[tuple[float, tuple, dict]] = []
    with warehouse.connect(read_only=True) as con, contextlib.closing(con.cursor()) as lookups:
        rows = con.execute(
            f"select {', '.join(quote(c) for c in keys)}, {', '.join(reads)} "
            f"from {qualified(spec.spaces[space].table)} "
            f"order by {', '.join(quote(c) for c in keys)}"  # the same order every time
        )
        while batch := rows.fetchmany(TEXT_BATCH):
            scores = np.full((len(batch), len(codecs)), -np.inf)
            for j, codec in enumerate(codecs):
                values = codec.texts([row[len(keys) + j] for row in batch])
                present = [i for i, v in enumerate(values) if v is not None]
                if present:
                    texts = [values[i] for i in present]
                    vectors = cached_embeddings(warehouse, lookups, texts, keep=False)
                    scores[present, j] = vectors @ query
            top = np.max(scores, axis=1)
            for i in np.argsort(-top, kind="stable")[:k]:
                if np.isfinite(top[i]):
                    similarity = {
                        c.column: float(v)
                        for c, v in zip(codecs, scores[i], strict=True)
                        if np.isfinite(v)
                    }
                    best.append((float(top[i]), tuple(batch[i][: len(keys)]), similarity))
            best = sorted(best, key=lambda b: (-b[0], b[1]))[:k]
    return [
        Neighbour(key, similarity, dict(columns) if explain else {})
        for similarity, key, columns in best
    ]


TEXT_BATCH = 100_000
"""Rows read at a time by a text search."""


def _typed_key(con, types: dict, key_columns: list[str], key: list[str]) -> tuple:
    return tuple(
        con.execute(f"select cast(? as {types[c]})", [v]).fetchone()[0]
        for c, v in zip(key_columns, key, strict=True)
    )


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


def _indexed(saved: SavedIndex, vector: np.ndarray, own: tuple | None, k: int) -> list[tuple]:
    """The k nearest rows of `vector` in the index, the row with key `own` (if any) left out."""
    similarities, rows = saved.index.search(vector[None].astype(np.float32), k + 1)
    found = saved.keys.take(pa.array(rows[0][rows[0] >= 0])).to_pylist()
    out = [
        (*row.values(), float(similarity))
        for row, similarity in zip(found, similarities[0], strict=False)
        if tuple(row.values()) != own
    ]
    return out[:k]


def _explain(spec, model: Space, con, warehouse, query, neighbours) -> None:
    """Per input token, how much each neighbour's similarity drops when the token is masked
    in both rows; `query(inputs, position, hidden)` is the query row's embedding with token
    `hidden` (or none) masked."""
    inputs = model.read_inputs(warehouse, con, spec)
    position = {tuple(row.values()): i for i, row in enumerate(inputs.keys.to_pylist())}
    rows = np.array([position[n.key] for n in neighbours])

    def similarities(hidden: int | None) -> np.ndarray:
        vectors = model.embed(inputs, hidden_token=hidden, rows=rows)
        return vectors @ query(inputs, position, hidden)

    full = similarities(None)
    for t, token in enumerate(model.model.tokens):
        drop = full - similarities(t)
        for neighbour, value in zip(neighbours, drop, strict=True):
            neighbour.explanation[token.name] = float(value)
