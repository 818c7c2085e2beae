"""Sentence embeddings of distinct text values, cached in the warehouse: each distinct value
is embedded once per warehouse (`pipeline.encoders.text_vectors`) and stored in
`<output_schema>.text_embedding_cache` under the encoder's `MODEL_NAME`; later runs read it
back."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from pipeline.encoders.text_vectors import MODEL_NAME, TEXT_DIM, encode
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow
from pipeline.warehouse.vectors import vectors_of

CACHE_TABLE = "text_embedding_cache"
log = logging.getLogger(__name__)


def cached_embeddings(
    warehouse: Warehouse, con: Connection, texts: list[str], keep: bool = True
) -> np.ndarray:
    """Embeddings of `texts` (in order), computing only the values not cached yet; `keep`:
    cache those (a search's query text is not kept, and its connection may be read-only)."""
    distinct = sorted(set(texts))
    if not distinct:
        return np.zeros((0, TEXT_DIM), dtype=np.float32)
    cache = warehouse.output_table(CACHE_TABLE)
    found: dict[str, np.ndarray] = {}
    if warehouse.table_exists(con, f"{warehouse.output_schema}.{CACHE_TABLE}"):
        con.register("__wanted_texts", pa.table({"text": distinct}))
        try:
            table = fetch_arrow(
                con,
                f"select c.text, c.embedding from {cache} c join __wanted_texts w using (text) "
                "where c.model = ?",
                [MODEL_NAME],
            )
        finally:
            con.unregister("__wanted_texts")
        values = table.column("text").to_pylist()
        vectors = vectors_of(table, width=TEXT_DIM)
        found = dict(zip(values, vectors, strict=True))
    missing = [t for t in distinct if t not in found]
    if missing:
        log.info("embedding %d new distinct text values with %s", len(missing), MODEL_NAME)
        vectors = encode(missing)
        found.update(zip(missing, vectors, strict=True))
        new_rows = pa.table(
            {
                "text": pa.array(missing, pa.string()),
                "model": pa.array([MODEL_NAME] * len(missing), pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), pa.float32()), TEXT_DIM
                ),
            }
        )
        if keep:
            _append_cache(warehouse, con, new_rows)
    return np.stack([found[t] for t in texts]) if texts else np.zeros((0, TEXT_DIM), np.float32)


def _append_cache(warehouse: Warehouse, con: Connection, rows: pa.Table) -> None:
    cache = warehouse.output_table(CACHE_TABLE)
    vector = f"float[{TEXT_DIM}]" if warehouse.backend.fixed_arrays else "float[]"
    warehouse.transaction(
        con,
        {"__new_texts": rows},
        [
            f"create table if not exists {cache} (text varchar, model varchar, embedding {vector})",
            f"insert into {cache} select * from __new_texts",
        ],
    )
