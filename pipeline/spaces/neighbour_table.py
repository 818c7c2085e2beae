"""`ml.<space>_neighbours`: every row's k nearest other rows of its space (key, neighbour
key, rank, similarity), found through an index of the stored embeddings (the embed step's
`ml.<space>_embeddings`) and written in batches; the index is kept as a model set beside
the space (`<artifacts>/<space>/neighbours`) so that `search` queries it instead of
scanning every row. This module builds both whole; `pipeline.spaces.neighbour_upkeep` keeps
them up to date for the rows embedded again.

    <space>_neighbours: <key columns>, neighbour_<key column>..., rank (1 = nearest),
                        similarity (cosine), space_version
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.spaces import neighbours as index_settings
from pipeline.spaces.neighbours import INDEX_FILE, NeighbourIndex
from pipeline.spaces.row_fingerprints import FINGERPRINT
from pipeline.spec import Spec
from pipeline.store import model_store
from pipeline.warehouse.connection import Warehouse, fetch_arrow, table_columns
from pipeline.warehouse.sql import quote
from pipeline.warehouse.vectors import vectors_of

FOLDER = "neighbours"
KEYS_FILE = "keys.arrow"
META_FILE = "neighbours.json"
READ_BATCH_ROWS = 65_536
LIVE = "__live"
"""Keys-file column: whether the id's row is still in the index."""


def table_name(name: str) -> str:
    return f"{name}_neighbours"


def neighbour_column(key: str) -> str:
    return f"neighbour_{key}"


def index_folder(artifacts: Path, name: str) -> Path:
    return Path(artifacts) / name / FOLDER


@dataclass
class SavedIndex:
    """A space's saved neighbour index: the index, the key of each of its row ids (id i is
    row i of `keys`; a row removed since is still there, not in the index), and the space
    version and live row count of the embeddings it was built from."""

    index: NeighbourIndex
    keys: pa.Table
    space_version: str
    rows: int

    @classmethod
    def load(cls, folder: Path, what: str) -> SavedIndex:
        path = model_store.current_set(folder, what, check=False)
        meta = json.loads((path / META_FILE).read_text())
        keys = read_keys(path)
        keys = keys.select([c for c in keys.column_names if c not in (FINGERPRINT, LIVE)])
        return cls(NeighbourIndex.load(path), keys, meta["space_version"], meta["rows"])


def read_keys(path: Path) -> pa.Table:
    """The saved keys file of a set: key columns per row id, with `row_fingerprint` and
    `__live` where the set keeps them."""
    return pa.ipc.open_file(pa.memory_map(str(path / KEYS_FILE))).read_all()


def _read_index(
    warehouse: Warehouse, spec: Spec, name: str
) -> tuple[NeighbourIndex, pa.Table, str] | None:
    """The index of the stored embeddings (added in key order: id i is the i-th key), the
    keys file's table (keys, their fingerprints where the table has them, all live) and the
    space version; None when the space has no embeddings yet."""
    keys = spec.spaces[name].key_columns
    order = ", ".join(quote(k) for k in keys)
    source = warehouse.output_table(f"{name}_embeddings")
    with warehouse.connect() as con:
        table = f"{spec.output_schema}.{name}_embeddings"
        if not warehouse.table_exists(con, table):
            return None
        n, version = con.execute(f"select count(*), max(space_version) from {source}").fetchone()
        if not n:
            return None
        kept = [*keys, FINGERPRINT] if FINGERPRINT in table_columns(con, table) else keys
        sample = None
        if (
            n > index_settings.EXACT_UP_TO
        ):  # the inverted file's centres: every stride-th row in key order
            stride = max(1, n // NeighbourIndex.training_rows(n))
            sample = vectors_of(
                fetch_arrow(
                    con,
                    f"select embedding from (select embedding, row_number() over (order by "
                    f"{order}) - 1 as i from {source}) where i % {stride} = 0 order by i",
                )
            )
        dim = con.execute(f"select len(embedding) from {source} limit 1").fetchone()[0]
        index = NeighbourIndex.empty(int(dim), n, sample, spec.seed)
        columns = ", ".join(quote(c) for c in kept)
        reader = con.execute(f"select {columns}, embedding from {source} order by {order}")
        key_batches = []
        for batch in reader.to_arrow_reader(READ_BATCH_ROWS):
            index.add(vectors_of(batch))
            key_batches.append(batch.select(kept))
    key_table = pa.Table.from_batches(key_batches).combine_chunks()
    if FINGERPRINT in kept:
        key_table = key_table.append_column(LIVE, pa.array(np.ones(len(key_table), bool)))
    return index, key_table, version


def neighbour_batch(
    keys: pa.Table,
    rows: np.ndarray,
    similarities: np.ndarray,
    found: np.ndarray,
    version: str,
) -> pa.RecordBatch:
    """The table's rows for indexed rows `rows` (ids) and their neighbours `found` [n, k]
    with `similarities`; `keys` (key columns only) holds the key of each id. An inverted
    file can find fewer rows than asked for (-1, always last): left out."""
    names = keys.column_names
    width = found.shape[1]
    found_any = found.reshape(-1) >= 0
    own = keys.take(pa.array(np.repeat(rows, width)[found_any]))
    theirs = keys.take(pa.array(found.reshape(-1)[found_any]))
    ranks = np.tile(np.arange(1, width + 1, dtype=np.int32), len(rows))[found_any]
    return pa.RecordBatch.from_arrays(
        [
            *(c.combine_chunks() for c in own.columns),
            *(c.combine_chunks() for c in theirs.columns),
            pa.array(ranks),
            pa.array(similarities.reshape(-1)[found_any].astype(np.float32)),
            pa.array([version] * int(found_any.sum()), pa.string()),
        ],
        names=[
            *names,
            *(neighbour_column(c) for c in names),
            "rank",
            "similarity",
            "space_version",
        ],
    )


def _batches(
    index: NeighbourIndex, keys: pa.Table, k: int, version: str
) -> Iterator[pa.RecordBatch]:
    for rows, similarities, found in index.every_row(k):
        yield neighbour_batch(keys, rows, similarities, found, version)


def build_neighbours(warehouse: Warehouse, spec: Spec, name: str, keep: int) -> int:
    """Build the index of the space's stored embeddings, write every row's nearest rows as
    `ml.<name>_neighbours` (replaced in one transaction) and keep the index for `search`;
    returns the rows written (0 when the space keeps no neighbours or has no embeddings)."""
    k = spec.neighbours(name)
    built = _read_index(warehouse, spec, name) if k else None
    if built is None:
        return 0
    index, key_file, version = built
    keys = key_file.select(spec.spaces[name].key_columns)
    batches = _batches(index, keys, k, version)
    first = next(batches, None)
    if first is None:  # one row: no other row to be near
        return 0
    written = [0]

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in itertools.chain([first], batches):
            written[0] += batch.num_rows
            yield batch

    reader = pa.RecordBatchReader.from_batches(first.schema, counted())
    with warehouse.connect() as con:
        warehouse.write_table(con, table_name(name), reader)
    meta = {
        "space_version": version,
        "rows": index.n_rows,
        "exact": index.exact,
        "k": k,
        "ids": index.n_rows,
        "built_rows": index.n_rows,
        "changed_since_build": 0,
        "fingerprints": LIVE in key_file.column_names,
    }
    save_index(index, key_file, meta, index_folder(spec.artifacts, name), keep)
    return written[0]


def save_index(index: NeighbourIndex, keys: pa.Table, meta: dict, folder: Path, keep: int) -> None:
    """The index, its keys file and `meta` as the space's new current neighbours set."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, keys.schema) as writer:
        writer.write_table(keys)
    key_bytes = sink.getvalue().to_pybytes()
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True).encode() + key_bytes)
    files = {
        INDEX_FILE: index.write,
        KEYS_FILE: key_bytes,
        META_FILE: json.dumps(meta).encode(),
    }
    model_store.write_set(folder, files, digest.hexdigest()[:12], keep)
