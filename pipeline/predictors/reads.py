"""What the predictor steps read from the warehouse beside the space's inputs: the stored
embeddings and the target in the space's row order, the rows' times, and which rows have
an out-of-fold output from training."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipeline.encoders import column_type
from pipeline.encoders.base import render
from pipeline.errors import PipelineError
from pipeline.predictors import Predictor
from pipeline.spaces.hierarchy import embeddings_table
from pipeline.spaces.reads import ROWS_TABLE, read_in_row_order
from pipeline.spaces.row_fingerprints import FINGERPRINT
from pipeline.spec import Spec
from pipeline.understanding.profiling import stored_profiles
from pipeline.warehouse.connection import Connection, fetch_arrow
from pipeline.warehouse.sql import literal, quote
from pipeline.warehouse.vectors import vectors_of


def stored_embeddings(con: Connection, spec: Spec, name: str, version: str) -> np.ndarray:
    """The stored embeddings of a space, in key order; every row must have one, embedded by
    the space's current `version`."""
    keys = spec.spaces[name].key_columns
    on = " and ".join(f"e.{quote(k)} = r.{quote(k)}" for k in keys)
    table = fetch_arrow(
        con,
        f"select r.__row, e.embedding, e.space_version from {ROWS_TABLE} r left join "
        f"{embeddings_table(spec, name)} e on {on} order by r.__row",
    )
    column = table.column("embedding")
    stale = sum(v not in (None, version) for v in table.column("space_version").to_pylist())
    if column.null_count or stale:
        raise PipelineError(
            f"space {name}: {column.null_count} row(s) have no embedding and {stale} were "
            f"embedded by another version of the space than the current {version} -> run "
            f"python -m pipeline embed --space {name}"
        )
    flat = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(len(table), -1)


def current_embeddings(
    con: Connection, spec: Spec, name: str, version: str, fingerprints: str
) -> np.ndarray | None:
    """The stored embeddings of `__space_rows` in row order when every row has one that the
    space's `version` computed from the row's current inputs (its `row_fingerprint` as in the
    table `fingerprints`: key columns and fingerprint); else None (they are to be computed)."""
    keys = spec.spaces[name].key_columns
    on_rows = " and ".join(f"f.{quote(k)} = r.{quote(k)}" for k in keys)
    on_stored = " and ".join(f"e.{quote(k)} = r.{quote(k)}" for k in keys)
    table = fetch_arrow(
        con,
        f"select e.embedding from {ROWS_TABLE} r join {fingerprints} f on {on_rows} "
        f"left join {embeddings_table(spec, name)} e on {on_stored} "
        f"and e.space_version = {literal(version)} and e.{FINGERPRINT} = f.{FINGERPRINT} "
        "order by r.__row",
    )
    n_rows = con.execute(f"select count(*) from {ROWS_TABLE}").fetchone()[0]
    column = table.column("embedding")
    if table.num_rows != n_rows or column.null_count:
        return None
    return vectors_of(table)


def target_column(con: Connection, spec: Spec, name: str, target: str) -> pa.ChunkedArray:
    """The target column as stored (its own type), in row order."""
    return read_in_row_order(con, spec, name, f"t.{quote(target)}").column(0)


def time_order(con: Connection, spec: Spec, name: str) -> np.ndarray | None:
    """Epoch seconds of the space's `time_column` in row order (NULL last); None without a
    time column or when none of its values reads as a time."""
    space = spec.spaces[name]
    if not space.time_column:
        return None
    epoch = render(column_type("timestamp").read_sql, column=f"t.{quote(space.time_column)}")
    column = read_in_row_order(con, spec, name, epoch).column(0).to_pylist()
    times = np.array([np.inf if t is None else t for t in column], np.float64)
    if not np.isfinite(times).any():
        return None
    return times


def target_type(con: Connection, spec: Spec, name: str, target: str) -> str:
    """The target column's detected type, from the space's stored column profile."""
    for p in stored_profiles(con, spec, name):
        if p.column == target:
            return p.detected_type
    raise PipelineError(f"space {name}: target column {target} not found")


def out_of_fold(predictor: Predictor, keys: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The rows labelled at training (matched by key, a hash join) and their out-of-fold
    outputs [rows, outputs]: what they are given instead of the fold models' mean."""
    none = np.zeros(0, np.int64), np.zeros((0, 1))
    stored = predictor.out_of_fold
    if stored is None or keys.num_rows == 0 or stored.num_rows == 0:
        return none
    names = keys.column_names
    try:
        stored_keys = stored.select(names).cast(keys.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        return none  # keys of another type than at training: no row matches
    matched = keys.append_column("__row", pa.array(np.arange(keys.num_rows))).join(
        stored_keys.append_column("__stored", pa.array(np.arange(stored.num_rows))),
        keys=names,
        join_type="inner",
    )
    outputs = stored.column("raw").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    outputs = outputs.reshape(stored.num_rows, -1)[matched.column("__stored").to_numpy()]
    return matched.column("__row").to_numpy(), outputs


def split_by_training(
    raw: np.ndarray, labelled: np.ndarray, outputs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rows labelled at training get their out-of-fold output (`train`); the rest keep the
    fold models' mean (`unlabelled`)."""
    split = np.full(len(raw), "unlabelled", dtype=object)
    raw = raw.copy()
    raw[labelled] = outputs if raw.ndim > 1 else outputs[:, 0]
    split[labelled] = "train"
    return raw, split
