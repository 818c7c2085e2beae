"""A target column in its own values: classes as the warehouse holds them (0/1 integers stay
0/1, booleans true/false, labels the labels), numbers for regression."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.encoders.base import label
from pipeline.encoders.boolean import BooleanCodec
from pipeline.errors import DataError

CLASS_TYPES = ("boolean", "category", "ordinal")
POSITIVE_LABELS = ("true", "1", "yes", "y", "t")
MIN_LABELLED = 10


@dataclass
class Target:
    """Labels of every row of a space, in row order; `y` is the class index (-1 unknown) or
    the value (NaN unknown)."""

    space: str
    column: str
    task: str
    y: np.ndarray
    arrow_type: pa.DataType
    classes: list | None = None
    """Class values in the target's own type (JSON-serialisable), sorted."""
    positive: int | None = None
    """Index of the positive class of a two-class target."""

    @property
    def known(self) -> np.ndarray:
        return self.y >= 0 if self.task == "classification" else np.isfinite(self.y)


def class_text(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_target(space: str, column: str, target_type: str, values: pa.ChunkedArray) -> Target:
    """The target of each row from the column as read from the warehouse (row order)."""
    arrow_type = values.type
    raw = values.to_pylist()
    if target_type not in CLASS_TYPES:
        y = np.array([_number(v) for v in raw], np.float64)
        target = Target(space, column, "regression", y, pa.float64())
        _require_labels(target)
        return target
    if target_type == "boolean" and not (pa.types.is_boolean(arrow_type) or _numeric(arrow_type)):
        # 'yes'/'no', 'Y'/'N' strings: the classes are the labels as written, trimmed
        raw = [label(v) if BooleanCodec.parse(v) is not None else None for v in raw]
    else:
        raw = [None if label(v) is None else (v.strip() if isinstance(v, str) else v) for v in raw]
    if _numeric(arrow_type):
        raw = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in raw]
    if any(v is not None and not isinstance(v, bool | int | float | str) for v in raw):
        raw = [None if v is None else str(v) for v in raw]  # decimals, dates: as text
        arrow_type = pa.string()
    classes = sorted({v for v in raw if v is not None}, key=lambda v: (class_text(v), v))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(v, -1) if v is not None else -1 for v in raw], np.int64)
    target = Target(space, column, "classification", y, arrow_type, classes=classes)
    _require_labels(target)
    if len(classes) == 2:
        texts = [class_text(c).lower() for c in classes]
        positive = next((i for i, t in enumerate(texts) if t in POSITIVE_LABELS), None)
        if positive is None:
            positive = int(np.argmin(np.bincount(y[y >= 0], minlength=2)))
        target.positive = positive
    return target


def _numeric(arrow_type: pa.DataType) -> bool:
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def _number(value: object) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _require_labels(target: Target) -> None:
    n_known = int(target.known.sum())
    place = f"spaces.{target.space}.columns.{target.column}"
    if n_known < MIN_LABELLED:
        raise DataError(
            f"{place}: only {n_known} rows have a target value; a predictor needs at least "
            f"{MIN_LABELLED} -> label more rows or drop target: true"
        )
    if target.task == "classification" and len(target.classes) < 2:
        raise DataError(
            f"{place}: every known target is '{class_text(target.classes[0])}'; "
            "a predictor needs at least two classes"
        )
