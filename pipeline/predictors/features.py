"""What a predictor reads for each row: the space's embedding, and for tree models the
parent's own columns and its child statistics as they are (no normalisation needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.encoders import column_type
from pipeline.spaces.inputs import SpaceInputs, table_column


@dataclass
class PredictorFeatures:
    """Shape: embeddings [n, d]; table [n, f] (NaN where missing)."""

    embeddings: np.ndarray
    table: np.ndarray
    names: list[str]
    """Column of `table`: a parent column's name, or a child statistic's address."""
    groups: list[str]
    """What each table column belongs to, as feature importance names it: the parent column,
    or the child table (`orders`) for its statistics."""
    categorical: list[int]
    """Columns of `table` holding class indices (0: rare or unseen label)."""
    inputs: SpaceInputs | None = None
    """The space's inputs, for a candidate that runs the space model itself (fine-tuning)."""
    rows: np.ndarray | None = None
    """Rows of `inputs` these features describe, in order (None: all of them)."""
    hidden_token: int | None = None
    """A token of the space left out of every row (importance by masking)."""

    def input_rows(self) -> np.ndarray:
        """Indices into `inputs` of these rows."""
        return np.arange(self.n_rows) if self.rows is None else self.rows

    @property
    def n_rows(self) -> int:
        return len(self.embeddings)


def predictor_features(
    inputs: SpaceInputs, embeddings: np.ndarray, hidden_token: int | None = None
) -> PredictorFeatures:
    """Embeddings plus numbers, times and label indices of the parent's columns (through the
    space's codecs) and the raw child statistics; `hidden_token`: the token `embeddings` were
    computed without."""
    n = inputs.n_rows
    blocks, names, groups, categorical = [], [], [], []
    for column in inputs.columns:
        kind = column.codec.type
        numbers = column_type(kind).reads_numbers
        if not table_column(kind) or (numbers and column.raw is None):
            continue  # text, email, url, json, vectors: the embedding carries them
        if numbers:
            values = np.asarray(column.raw, np.float64)
        else:
            present = column.arrays["present"].numpy()
            values = np.where(present, column.arrays["target"].numpy(), np.nan).astype(np.float64)
            categorical.append(len(names))
        blocks.append(values.reshape(n, 1))
        names.append(column.name)
        groups.append(column.name)
    if inputs.statistics is not None:
        blocks.append(inputs.statistics_values)
        names += inputs.statistics.names
        groups += [name.split("/", 1)[0] for name in inputs.statistics.names]
    table = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0))
    return PredictorFeatures(
        np.asarray(embeddings, np.float32),
        table,
        names,
        groups,
        categorical,
        inputs=inputs,
        hidden_token=hidden_token,
    )
