"""Embedding columns read from the warehouse as NumPy matrices."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def vectors_of(
    data: pa.RecordBatch | pa.Table | pa.Array | pa.ChunkedArray,
    column: str = "embedding",
    width: int = 0,
) -> np.ndarray:
    """[n, d] float32 of a list column (FLOAT[d], or FLOAT[] / DOUBLE[] as a lake or
    PostgreSQL stores it) of a batch or table (`column`), or of the column itself: a
    writable copy. No rows: [0, width]."""
    values = data if isinstance(data, pa.Array | pa.ChunkedArray) else data.column(column)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if len(values) == 0:
        return np.zeros((0, width), np.float32)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return flat.astype(np.float32).reshape(len(values), -1)
