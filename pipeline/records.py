"""A row described, not stored: a partial record (`{"city": "Lyon", "orders": [{...}]}`)
encoded through a saved space's codecs, what it leaves out masked as in training, and
embedded in that space without retraining."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline.encoders import column_type
from pipeline.errors import PipelineError
from pipeline.locations import space_folder
from pipeline.spaces.inputs import ChildSet, Reference, SpaceInputs
from pipeline.spaces.model import gather, token_specs
from pipeline.spaces.reads import encode_column, select_expression
from pipeline.spaces.space import Space
from pipeline.spec import Spec
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow, table_columns
from pipeline.warehouse.sql import qualified, quote


def record_inputs(
    model: Space, warehouse: Warehouse, con: Connection, spec: Spec, record: dict
) -> tuple[SpaceInputs, torch.Tensor]:
    """One row of inputs for `record` and which tokens [1, T] it leaves out (hidden). Columns
    by name; a child space by its name, as a list of records of that space (latest first:
    the first `max_length` are read); a reference by its foreign key column, as the
    referenced row's key."""
    name = model.name
    space = spec.spaces[name]
    columns = {c.column: c for c in model.codecs.values()}
    references = {ref.foreign_key_columns[0]: ref for ref in space.references}
    children = {child.space: child for child in space.children}
    unknown = [k for k in record if k not in columns and k not in references and k not in children]
    if unknown:
        raise PipelineError(
            f"space {name}: the record names {', '.join(unknown)}, which the space does not "
            f"read -> use its columns ({', '.join(columns) or 'none'}), child spaces "
            f"({', '.join(children) or 'none'}) or reference keys "
            f"({', '.join(references) or 'none'})"
        )
    raw = _column_values(con, space.table, {c: record[c] for c in columns if c in record}, columns)
    encoded = [
        encode_column(warehouse, con, codec, raw[column], keep=False)
        for column, codec in columns.items()
    ]
    child_sets = []
    for child in space.children:
        rows = record.get(child.space) or []
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise PipelineError(
                f"space {name}: '{child.space}' in the record must be a list of records of "
                f"space {child.space}"
            )
        child_model = Space.load(space_folder(spec, child.space))
        vectors = [record_embedding(child_model, warehouse, con, spec, r) for r in rows]
        dim = child_model.model.config["embedding_dim"]
        kept = min(len(vectors), child.max_length)  # the first ones: latest first, as read
        stacked = np.stack(vectors[:kept]) if kept else np.zeros((1, dim), np.float32)
        child_sets.append(
            ChildSet(
                child.space,
                child.max_length,
                torch.tensor([0, kept]),
                torch.from_numpy(stacked.astype(np.float32)),
                torch.tensor([len(vectors)]),
            )
        )
    widths = {t.name: t.dim for t in model.model.tokens if t.kind == "reference"}
    refs = [
        _reference(con, spec, ref, record.get(ref.foreign_key_columns[0]), widths)
        for ref in space.references
    ]
    keys = pa.table({k: pa.nulls(1) for k in space.key_columns})
    inputs = SpaceInputs(name, keys, encoded, child_sets, refs)
    if model.statistics is not None:  # computed in SQL from stored rows: unknown here, hidden
        values = np.full((1, len(model.statistics.names)), np.nan)
        inputs.statistics, inputs.statistics_values = model.statistics, values
        inputs.statistics_arrays = {
            k: torch.from_numpy(v) for k, v in model.statistics.transform(values).items()
        }
    specs = token_specs(inputs)
    hidden = torch.tensor(
        [[not _given(s.name, s.kind, set(record), references) for s in specs]], dtype=torch.bool
    )
    if bool(hidden.all()):
        raise PipelineError(f"space {name}: the record gives nothing the space reads")
    return inputs, hidden


def _given(token: str, kind: str, given: set[str], references: dict) -> bool:
    if kind == "statistics":
        return False
    if kind == "reference":
        return any(
            ref.space == token.split("__")[0] and fk in given for fk, ref in references.items()
        )
    return token.split("__")[0] in given


def record_embedding(
    model: Space,
    warehouse: Warehouse,
    con: Connection,
    spec: Spec,
    record: dict,
    also_hidden: int | None = None,
) -> np.ndarray:
    """The record's embedding [dim] in the space (`also_hidden`: one more token masked)."""
    inputs, hidden = record_inputs(model, warehouse, con, spec, record)
    if also_hidden is not None:
        hidden[0, also_hidden] = True
    with torch.no_grad():
        model.model.eval()
        content, present, flat = model.model.encode_tokens(gather(inputs, torch.tensor([0])))
        return model.model.embed_tokens(content, present, hidden, flat)[0].numpy()


def _column_values(con: Connection, table: str, given: dict, codecs: dict) -> dict:
    """Raw values of every column as the space reads them from its table: the given values
    cast to the table's types and read through the same SQL, the others NULL."""
    types = table_columns(con, table)
    raw: dict = {}
    for column, codec in codecs.items():
        numbers = column_type(codec.type).reads_numbers
        raw[column] = np.array([np.nan]) if numbers else [None]
    if not given:
        return raw
    casts = ", ".join(f"cast(? as {types.get(c, 'VARCHAR')}) as {quote(c)}" for c in given)
    reads = ", ".join(f"{select_expression(c, codecs[c].type)} as {quote(c)}" for c in given)
    try:
        row = fetch_arrow(con, f"select {reads} from (select {casts})", list(given.values()))
    except Exception as error:  # a value that the column's type cannot hold
        raise PipelineError(f"table {table}: the record's values do not fit ({error})") from None
    for column in given:
        values = row.column(column)
        if column_type(codecs[column].type).reads_numbers:
            raw[column] = values.to_numpy(zero_copy_only=False).astype(np.float64)
        else:
            raw[column] = values.to_pylist()
    return raw


def _reference(con: Connection, spec: Spec, ref, value, widths: dict[str, int]) -> Reference:
    """The referenced row's stored embedding (its key given), else an absent reference;
    `widths`: the saved model's reference tokens' widths, by token name."""
    table = f"{qualified(spec.output_schema)}.{quote(ref.space + '_embeddings')}"
    dim = widths.get(ref.space) or widths[f"{ref.space}__reference"]
    if value is None:
        return Reference(ref.space, torch.zeros(1, dim), torch.tensor([False]))
    if len(ref.foreign_key_columns) > 1:
        raise PipelineError(
            f"space {ref.space} is referenced by {', '.join(ref.foreign_key_columns)}: a record "
            "cannot name a reference of several columns yet -> leave it out (it is masked)"
        )
    key = spec.spaces[ref.space].key_columns[0]
    found = con.execute(f"select embedding from {table} where {quote(key)} = ?", [value]).fetchone()
    if found is None:
        raise PipelineError(
            f"space {ref.space}: no row has {key} = {value} (the record's "
            f"{ref.foreign_key_columns[0]})"
        )
    vector = torch.tensor(np.asarray(found[0], np.float32))[None]
    return Reference(ref.space, vector, torch.tensor([True]))
