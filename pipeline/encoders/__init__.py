"""Column types and their encoders: one module per type (`scalar`, `email`, `json`, ...), each
holding its codec, its encoder and the hints profiling uses to detect it.

Adding a type means adding one module here that defines `COLUMN_TYPE`, plus its test; the
registry below finds it by module name. Child sets and references live in `sets`.
"""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from pipeline.encoders.base import Codec, ColumnType

_NOT_TYPES = frozenset({"base", "sets"})
JUNK_TYPES = ("id",)
"""Types a column can be declared or detected as that are never encoded."""


@cache
def type_names() -> tuple[str, ...]:
    """Every encodable type, without importing the modules (torch loads on first use)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_TYPES))


def column_type(name: str) -> ColumnType:
    if name not in type_names():
        raise KeyError(f"unknown column type '{name}' (known: {', '.join(type_names())})")
    return import_module(f"{__name__}.{name}").COLUMN_TYPE


@cache
def column_types() -> tuple[ColumnType, ...]:
    """All types, in detection priority order."""
    return tuple(sorted((column_type(n) for n in type_names()), key=lambda t: t.priority))


def fit_codec(type_name: str, column: str, values: list) -> Codec:
    return column_type(type_name).codec.fit(column, values)


def codec_from_state(state: dict) -> Codec:
    """Rebuild a saved codec from its plain JSON state (no pickle)."""
    state = dict(state)
    type_name, column = state.pop("type"), state.pop("column")
    return column_type(type_name).codec.from_state(column, state)


def build_encoder(type_name: str, sizes: dict[str, int], d_model: int) -> nn.Module:
    return column_type(type_name).encoder(sizes, d_model)
