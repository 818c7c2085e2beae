"""What a space's model reads for every row of its table, in key order: the encoded
columns, the child sets (1:N), the references (N:1) and the child statistics. Plain data:
`pipeline.spaces.reads` fills it from the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from pipeline.encoders import column_type
from pipeline.encoders.base import Codec

if TYPE_CHECKING:
    from pipeline.spaces.child_features import ChildStatistics

TABLE_TYPES = ("category", "ordinal", "boolean")
"""Column types read as class indices by a model beside the embedding (numbers are read as
they are; text, emails, URLs, JSON and vectors reach it through the embedding alone)."""

LIST_ITEM_BYTES = 64
"""What a value read into a Python list holds, about (a small str or float object and its
pointer)."""


def table_column(type_name: str) -> bool:
    """Whether a model beside the embedding (the tree predictors) reads a column of this
    type itself: numbers as they are, labels as class indices."""
    return column_type(type_name).reads_numbers or type_name in TABLE_TYPES


def _nbytes(array: torch.Tensor | np.ndarray | int | None) -> int:
    if array is None:
        return 0
    if isinstance(array, int):
        return array
    if isinstance(array, torch.Tensor):
        return array.element_size() * array.nelement()
    return int(array.nbytes)


@dataclass
class ChildSet:
    """The children of every parent row, packed: rows of `embeddings` between offsets[i] and
    offsets[i+1] belong to parent i, latest first when the child is time-ordered."""

    space: str
    max_length: int
    offsets: torch.Tensor
    embeddings: torch.Tensor
    counts: torch.Tensor

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]


@dataclass
class Reference:
    """The referenced row's embedding for every row (zeros where absent)."""

    space: str
    embeddings: torch.Tensor
    present: torch.Tensor

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]


@dataclass
class ColumnInput:
    """One input column of a space, encoded for the model."""

    name: str
    codec: Codec
    arrays: dict[str, torch.Tensor]
    text_vectors: torch.Tensor | None = None
    raw: list | np.ndarray | None = None
    """The values as read (numbers as float64 with NaN), for predictors that read columns."""


@dataclass
class SpaceInputs:
    """Everything the space model reads for every row of its table, in key order."""

    space: str
    keys: pa.Table
    columns: list[ColumnInput]
    children: list[ChildSet] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)
    statistics: ChildStatistics | None = None
    statistics_values: np.ndarray | None = None
    """Child statistics as computed in SQL [n_rows, n_features] (NaN where undefined)."""
    statistics_arrays: dict[str, torch.Tensor] = field(default_factory=dict)
    """`features` and `defined`, normalised by `statistics` (model inputs)."""
    missing_columns: list[str] = field(default_factory=list)
    new_columns: list[str] = field(default_factory=list)
    tokens: bool = True
    """False: read for a model beside the stored embedding (`table_column` columns and the
    child statistics alone): the space model cannot run on these inputs."""

    def drift_warnings(self, table: str) -> list[str]:
        """Schema drift since training, in words: what was missing or new and what was done."""
        return [
            f"column {c} is missing from {table}; "
            "read as NULL until it is back or the space is retrained"
            for c in self.missing_columns
        ] + [
            f"column {c} is new in {table} since the space was trained; not used until retrained"
            for c in self.new_columns
        ]

    @property
    def n_rows(self) -> int:
        return self.keys.num_rows

    def nbytes(self) -> int:
        """Memory the inputs hold: their arrays, and the values as read (a Python list of
        values counted at `LIST_ITEM_BYTES` an item)."""
        arrays: list = [self.statistics_values, *self.statistics_arrays.values()]
        for column in self.columns:
            arrays += [*column.arrays.values(), column.text_vectors]
            if isinstance(column.raw, list):
                arrays.append(len(column.raw) * LIST_ITEM_BYTES)
            else:
                arrays.append(column.raw)
        for child in self.children:
            arrays += [child.offsets, child.embeddings, child.counts]
        for reference in self.references:
            arrays += [reference.embeddings, reference.present]
        return self.keys.nbytes + sum(_nbytes(a) for a in arrays)

    def statistics_groups(self) -> list[tuple[str, np.ndarray]]:
        """(child or referenced space, indices of its statistics) per space that has any."""
        if self.statistics is None:
            return []
        first = [n.split("/", 1)[0] for n in self.statistics.names]
        groups = [(g, np.flatnonzero([f == g for f in first])) for g in self.statistics.groups()]
        return [(g, indices) for g, indices in groups if len(indices)]
