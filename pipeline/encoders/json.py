"""JSON documents (JSON/STRUCT/MAP columns or strings holding an object or array), flattened
into parts: which paths are present, the numbers at the common paths, and the MiniLM
embedding of the leaf values as `path: value` text.

Paths use slash addresses (`shipping/address/city`), as in the spec and in errors.
"""

from __future__ import annotations

import json
import math

import numpy as np
import torch
from torch import nn

from pipeline.encoders.base import Codec, ColumnType, label, mlp
from pipeline.encoders.text_vectors import TEXT_DIM

MAX_PATHS = 16
MAX_DEPTH = 3
MAX_TEXT = 400


def parse_document(value: object) -> dict | list | None:
    if isinstance(value, dict | list):
        return value
    text = label(value)
    if text is None or text[0] not in "{[":
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict | list) else None


def leaves(document: dict | list, prefix: str = "", depth: int = 0) -> dict[str, object]:
    """Path -> leaf value; arrays count as one leaf holding their length below MAX_DEPTH."""
    if isinstance(document, list):
        return {prefix or "[]": len(document)}
    found: dict[str, object] = {}
    for key, value in document.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, dict) and depth + 1 < MAX_DEPTH:
            found.update(leaves(value, path, depth + 1))
        elif isinstance(value, dict | list):
            found[path] = len(value)
        else:
            found[path] = value
    return found


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


class JsonCodec(Codec):
    """Features per kept path: present (0/1) and, for numeric paths, the z-scored number."""

    type = "json"
    semantic = True
    target_dim = TEXT_DIM

    def __init__(self, column: str, paths: list[str], numeric: dict[str, list[float]]) -> None:
        super().__init__(column)
        self.paths = list(paths)
        self.numeric = {p: (float(m), float(s)) for p, (m, s) in numeric.items()}
        self.n_features = 2 * len(self.paths) + 1

    @classmethod
    def fit(cls, column: str, values: list) -> JsonCodec:
        documents = [d for v in values if (d := parse_document(v)) is not None]
        counts: dict[str, int] = {}
        numbers: dict[str, list[float]] = {}
        for document in documents:
            for path, value in leaves(document).items():
                counts[path] = counts.get(path, 0) + 1
                if (number := _number(value)) is not None:
                    numbers.setdefault(path, []).append(number)
        common = [p for p, n in counts.items() if n >= max(1, 0.05 * len(documents))]
        paths = sorted(common, key=lambda p: (-counts[p], p))[:MAX_PATHS]
        numeric = {
            p: [float(np.mean(numbers[p])), float(np.std(numbers[p])) or 1.0]
            for p in paths
            if len(numbers.get(p, ())) >= 0.8 * counts[p]
        }
        return cls(column, paths, numeric)

    def texts(self, values: list) -> list[str | None]:
        texts = []
        for value in values:
            document = parse_document(value)
            if document is None:
                texts.append(None)
                continue
            parts = [f"{p}: {v}" for p, v in leaves(document).items() if v is not None]
            texts.append("; ".join(parts)[:MAX_TEXT] or "{}")
        return texts

    def transform(self, values: list) -> dict[str, np.ndarray]:
        documents = [parse_document(v) for v in values]
        features = np.zeros((len(documents), self.n_features), dtype=np.float32)
        for row, document in enumerate(documents):
            if document is None:
                continue
            found = leaves(document)
            features[row, -1] = math.log1p(len(found))
            for i, path in enumerate(self.paths):
                if path not in found:
                    continue
                features[row, 2 * i] = 1.0
                if path in self.numeric and (number := _number(found[path])) is not None:
                    mean, std = self.numeric[path]
                    features[row, 2 * i + 1] = np.clip((number - mean) / std, -6, 6)
        present = np.array([d is not None for d in documents], dtype=bool)
        return {"present": present, "features": features}

    def sizes(self) -> dict[str, int]:
        return {"n_features": self.n_features}

    def state(self) -> dict:
        return {
            **super().state(),
            "paths": self.paths,
            "numeric": {p: list(v) for p, v in self.numeric.items()},
        }


class JsonEncoder(nn.Module):
    def __init__(self, n_features: int, d_model: int) -> None:
        super().__init__()
        self.structure = nn.Linear(n_features, d_model)
        self.content = mlp(TEXT_DIM, d_model)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.structure(batch["features"]) + self.content(batch["text"])


COLUMN_TYPE = ColumnType(
    name="json",
    codec=JsonCodec,
    encoder=lambda sizes, d_model: JsonEncoder(sizes["n_features"], d_model),
    read_sql="try_cast({column} as json)::varchar",
    native=r"^(JSON|STRUCT.*|MAP.*)$",
    looks_like="left({value}, 1) in ('{', '[') and json_valid({value})",
    priority=70,
)
