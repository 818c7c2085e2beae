"""Codecs: per-column statistics fitted once from the data, saved with the model, and used to
turn raw values into model inputs (and reconstruction targets) without refitting.

Every codec marks each value `present` or not (NULL, NaN, unparseable): missing data is a
state the model sees, never an imputed number.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

N_BINS = 16
MAX_VOCABULARY = 1000
TRUE_WORDS = {"true", "t", "yes", "y", "1", "1.0"}
FALSE_WORDS = {"false", "f", "no", "n", "0", "0.0"}


class Codec:
    """Base class. `n_classes` > 0: reconstruction target is a class index; 0: contrastive."""

    type: ClassVar[str]
    n_features: int = 0
    n_classes: int = 0

    def __init__(self, column: str) -> None:
        self.column = column

    def transform(self, values: list | np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def state(self) -> dict:
        return {"type": self.type, "column": self.column}


def _edges(finite: np.ndarray) -> np.ndarray:
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, N_BINS + 1)[1:-1]))
    return edges.astype(np.float64)


class ScalarCodec(Codec):
    """Numbers: z-score, robust, log and quantile transforms plus a quantile bin."""

    type = "scalar"
    n_features = 4

    def __init__(self, column: str, **stats: float | list) -> None:
        super().__init__(column)
        self.mean = float(stats["mean"])
        self.std = float(stats["std"])
        self.median = float(stats["median"])
        self.iqr = float(stats["iqr"])
        self.log_shift = float(stats["log_shift"])
        self.log_mean = float(stats["log_mean"])
        self.log_std = float(stats["log_std"])
        self.edges = np.asarray(stats["edges"], dtype=np.float64)
        self.n_classes = len(self.edges) + 1

    @classmethod
    def fit(cls, column: str, values: np.ndarray) -> ScalarCodec:
        x = np.asarray(values, dtype=np.float64)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            finite = np.zeros(1)
        q1, median, q3 = np.quantile(finite, [0.25, 0.5, 0.75])
        shift = -float(finite.min()) if finite.min() < 0 else 0.0
        logs = np.log1p(finite + shift)
        return cls(
            column,
            mean=float(finite.mean()),
            std=float(finite.std()) or 1.0,
            median=float(median),
            iqr=float(q3 - q1) or float(finite.std()) or 1.0,
            log_shift=shift,
            log_mean=float(logs.mean()),
            log_std=float(logs.std()) or 1.0,
            edges=_edges(finite).tolist(),
        )

    def transform(self, values: list | np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        present = np.isfinite(x)
        v = np.where(present, x, self.median)
        z = (v - self.mean) / self.std
        robust = (v - self.median) / self.iqr
        logz = (np.log1p(np.clip(v + self.log_shift, 0, None)) - self.log_mean) / self.log_std
        bins = np.searchsorted(self.edges, v, side="right")
        rank = (bins + 0.5) / self.n_classes
        features = np.clip(np.stack([z, robust, logz, rank], axis=1), -6, 6)
        return {
            "present": present,
            "features": np.where(present[:, None], features, 0).astype(np.float32),
            "target": np.where(present, bins, 0).astype(np.int64),
        }

    def state(self) -> dict:
        return {
            **super().state(),
            "mean": self.mean,
            "std": self.std,
            "median": self.median,
            "iqr": self.iqr,
            "log_shift": self.log_shift,
            "log_mean": self.log_mean,
            "log_std": self.log_std,
            "edges": self.edges.tolist(),
        }


class CategoryCodec(Codec):
    """Labels: a vocabulary (index 0 = rare or unseen) plus the value's sentence embedding."""

    type = "category"

    def __init__(self, column: str, vocabulary: list[str]) -> None:
        super().__init__(column)
        self.vocabulary = list(vocabulary)
        self.index = {value: i + 1 for i, value in enumerate(self.vocabulary)}
        self.n_classes = len(self.vocabulary) + 1

    @classmethod
    def fit(cls, column: str, values: list) -> CategoryCodec:
        labels = [cls.label(v) for v in values]
        counts: dict[str, int] = {}
        for label in labels:
            if label is not None:
                counts[label] = counts.get(label, 0) + 1
        min_count = 2 if len(labels) >= 200 else 1
        kept = sorted(
            (v for v, n in counts.items() if n >= min_count), key=lambda v: (-counts[v], v)
        )
        return cls(column, kept[:MAX_VOCABULARY])

    @staticmethod
    def label(value: object) -> str | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        text = str(value).strip()
        return text or None

    def labels(self, values: list) -> list[str | None]:
        return [self.label(v) for v in values]

    def transform(self, values: list) -> dict[str, np.ndarray]:
        labels = self.labels(values)
        present = np.array([label is not None for label in labels], dtype=bool)
        index = np.array([self.index.get(label, 0) for label in labels], dtype=np.int64)
        return {"present": present, "index": index, "target": index}

    def texts(self, values: list) -> list[str | None]:
        """The strings whose sentence embeddings feed the semantic path."""
        return self.labels(values)

    def state(self) -> dict:
        return {**super().state(), "vocabulary": self.vocabulary}


class EmailCodec(CategoryCodec):
    """Email addresses: the local part is dropped; the domain is a category."""

    type = "email"

    @staticmethod
    def label(value: object) -> str | None:
        text = CategoryCodec.label(value)
        if text is None or "@" not in text:
            return None
        return text.rsplit("@", 1)[1].lower()


class BooleanCodec(Codec):
    """True/false, yes/no, 1/0."""

    type = "boolean"
    n_classes = 2

    @classmethod
    def fit(cls, column: str, values: list) -> BooleanCodec:
        return cls(column)

    @staticmethod
    def parse(value: object) -> bool | None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        if isinstance(value, bool | np.bool_):
            return bool(value)
        word = str(value).strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return None

    def transform(self, values: list) -> dict[str, np.ndarray]:
        parsed = [self.parse(v) for v in values]
        present = np.array([p is not None for p in parsed], dtype=bool)
        index = np.array([1 if p else 0 for p in parsed], dtype=np.int64)
        return {"present": present, "index": index, "target": index}


class TimestampCodec(Codec):
    """Times (given as epoch seconds): linear year, cyclical parts, and a quantile bin."""

    type = "timestamp"
    n_features = 9

    def __init__(self, column: str, mean: float, std: float, edges: list[float]) -> None:
        super().__init__(column)
        self.mean, self.std = float(mean), float(std)
        self.edges = np.asarray(edges, dtype=np.float64)
        self.n_classes = len(self.edges) + 1

    @classmethod
    def fit(cls, column: str, values: np.ndarray) -> TimestampCodec:
        x = np.asarray(values, dtype=np.float64)
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            finite = np.zeros(1)
        return cls(
            column, float(finite.mean()), float(finite.std()) or 1.0, _edges(finite).tolist()
        )

    def transform(self, values: list | np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(values, dtype=np.float64)
        present = np.isfinite(x)
        t = np.where(present, x, self.mean)
        day = t / 86400.0
        parts = [np.clip((t - self.mean) / self.std, -6, 6)]
        for period, phase in ((365.2425, day), (7.0, day + 3), (1.0, day), (30.436875, day)):
            angle = 2 * np.pi * (phase % period) / period
            parts += [np.sin(angle), np.cos(angle)]
        features = np.stack(parts, axis=1)
        bins = np.searchsorted(self.edges, t, side="right")
        return {
            "present": present,
            "features": np.where(present[:, None], features, 0).astype(np.float32),
            "target": np.where(present, bins, 0).astype(np.int64),
        }

    def state(self) -> dict:
        return {**super().state(), "mean": self.mean, "std": self.std, "edges": self.edges.tolist()}


class TextCodec(Codec):
    """Free text: the MiniLM embedding of the value (computed once, cached in the warehouse)."""

    type = "text"

    @classmethod
    def fit(cls, column: str, values: list) -> TextCodec:
        return cls(column)

    def texts(self, values: list) -> list[str | None]:
        return [CategoryCodec.label(v) for v in values]

    def transform(self, values: list) -> dict[str, np.ndarray]:
        present = np.array([t is not None for t in self.texts(values)], dtype=bool)
        return {"present": present}


CODECS: dict[str, type[Codec]] = {
    codec.type: codec
    for codec in (ScalarCodec, CategoryCodec, EmailCodec, BooleanCodec, TimestampCodec, TextCodec)
}
SEMANTIC_TYPES = ("category", "email", "text")


def fit_codec(column_type: str, column: str, values: list | np.ndarray) -> Codec:
    return CODECS[column_type].fit(column, values)


def codec_from_state(state: dict) -> Codec:
    """Rebuild a saved codec (plain JSON state, no pickle)."""
    state = dict(state)
    codec_type, column = state.pop("type"), state.pop("column")
    cls = CODECS[codec_type]
    if cls in (ScalarCodec,):
        return cls(column, **state)
    if cls is TimestampCodec:
        return cls(column, state["mean"], state["std"], state["edges"])
    if cls in (CategoryCodec, EmailCodec):
        return cls(column, state["vocabulary"])
    return cls(column)
