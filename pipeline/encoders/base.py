"""What every column type provides: a codec (statistics fitted once, saved with the model) and
an encoder (values -> one `d_model` token), plus the hints profiling uses to detect the type.

Every codec marks each value `present` or not (NULL, NaN, unparseable): missing data is a
state the model sees, never an imputed number.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch import nn

N_BINS = 16


class Codec:
    """Base class. `n_classes` > 0: the reconstruction target is a class index; otherwise
    `target_dim` > 0 and the target is a fixed vector reconstructed by contrast (InfoNCE)."""

    type: ClassVar[str]
    n_features: int = 0
    n_classes: int = 0
    target_dim: int = 0
    semantic: ClassVar[bool] = False
    """True when the model also reads the MiniLM embedding of `texts(values)`."""

    def __init__(self, column: str) -> None:
        self.column = column

    @classmethod
    def fit(cls, column: str, values: list | np.ndarray) -> Codec:
        return cls(column)

    def transform(self, values: list | np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def texts(self, values: list) -> list[str | None]:
        raise NotImplementedError(f"{self.type} columns have no text")

    def sizes(self) -> dict[str, int]:
        """What the encoder needs to be built (saved with the model description)."""
        return {"n_features": self.n_features, "n_classes": self.n_classes}

    def state(self) -> dict:
        """Plain JSON that `from_state` turns back into this codec (a semantic codec also
        names the text encoder its values went through)."""
        state = {"type": self.type, "column": self.column}
        if self.semantic:
            from pipeline.encoders.text_vectors import MODEL_NAME

            state["text_model"] = MODEL_NAME
        return state

    @classmethod
    def from_state(cls, column: str, state: dict) -> Codec:
        return cls(column, **state)


@dataclass(frozen=True)
class ColumnType:
    """One column type as the rest of the project sees it.

    SQL templates use `{column}` (the quoted column) and `{value}` (the non-null value cast to
    VARCHAR and trimmed). Detection: `native` matches warehouse types that are this type;
    `looks_like` is a predicate over `{value}` whose share over the column's values is
    measured; lower `priority` wins when several types claim most values.
    """

    name: str
    codec: type[Codec]
    encoder: Callable[[dict[str, int], int], nn.Module]
    read_sql: str = "cast({column} as varchar)"
    reads_numbers: bool = False
    native: str | None = None
    looks_like: str | None = None
    priority: int = 100
    max_distinct: int | None = None
    """Claim a column only when it has at most this many distinct values (e.g. booleans)."""
    matches_values: Callable[[list[str]], bool] | None = None
    """For label-like columns: claim a column from its distinct values (e.g. ordinal scales)."""


def label(value: object) -> str | None:
    """A value as a trimmed string; None for NULL, NaN and blank."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def mlp(d_in: int, d_model: int) -> nn.Sequential:
    """The two-layer projection most encoders use: Linear, GELU, Linear."""
    return nn.Sequential(nn.Linear(d_in, d_model), nn.GELU(), nn.Linear(d_model, d_model))


def finite_values(values: np.ndarray) -> np.ndarray:
    """The finite numbers among `values` as float64 (a single 0 when there are none)."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    return finite if finite.size else np.zeros(1)


def quantile_edges(finite: np.ndarray) -> np.ndarray:
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return edges.astype(np.float64)


def vocabulary(labels: list[str | None], limit: int = 1000) -> list[str]:
    """Labels by frequency (ties alphabetical); singletons dropped on larger columns, so index
    0 (rare or unseen) is seen in training."""
    counts: dict[str, int] = {}
    for value in labels:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    min_count = 2 if len(labels) >= 200 else 1
    kept = sorted((v for v, n in counts.items() if n >= min_count), key=lambda v: (-counts[v], v))
    return kept[:limit]


def render(template: str, column: str = "", value: str = "") -> str:
    """Fill a ColumnType SQL template (plain replacement: templates hold regex braces)."""
    return template.replace("{column}", column).replace("{value}", value)
