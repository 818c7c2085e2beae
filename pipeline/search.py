"""Nearest rows in a space, by key, with an optional per-input explanation."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.errors import PipelineError
from pipeline.runner import space_folder, warehouse_of
from pipeline.space import Space
from pipeline.spec import Spec
from pipeline.warehouse import quote, table_columns


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
    with warehouse.connect(read_only=True) as con:
        types = table_columns(con, table)
        if not types:
            raise PipelineError(f"{table} does not exist -> run python -m pipeline run first")
        match = " and ".join(f"{{a}}.{quote(c)} = cast(? as {types[c]})" for c in key_columns)
        keys = ", ".join(f"e.{quote(c)}" for c in key_columns)
        rows = con.execute(
            f"""
            with query as (select embedding from {warehouse.output_table(space + "_embeddings")} q
                           where {match.format(a="q")})
            select {keys}, array_cosine_similarity(e.embedding, query.embedding) as similarity
            from {warehouse.output_table(space + "_embeddings")} e, query
            where not ({match.format(a="e")})
            order by similarity desc, {keys} limit {int(k)}
            """,
            [*key, *key],
        ).fetchall()
        if (
            not rows
            and con.execute(
                f"select count(*) from {warehouse.output_table(space + '_embeddings')} q "
                f"where {match.format(a='q')}",
                key,
            ).fetchone()[0]
            == 0
        ):
            raise PipelineError(f"no row of {table} has key {', '.join(key)}")
        neighbours = [Neighbour(tuple(r[:-1]), float(r[-1])) for r in rows]
        if explain and neighbours:
            _explain(spec, space, con, warehouse, key, types, neighbours)
    return neighbours


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
