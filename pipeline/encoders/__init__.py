"""Column types and their encoders: one module per type (`scalar`, `email`, `json`, ...), each
holding its codec, its encoder and the hints profiling uses to detect it.

Adding a type means adding one module here that defines `COLUMN_TYPE`, plus its test; the
registry below finds it by module name. Child sets and references live in `sets`, the static
MiniLM token vectors that text-like types share in `text_vectors`.
"""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from pipeline.encoders.base import Codec, ColumnType

_NOT_TYPES = frozenset({"base", "sets", "text_vectors"})
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
    state.pop("text_model", None)  # checked by `stale_text_codecs`
    return column_type(type_name).codec.from_state(column, state)


LEGACY_TEXT_MODEL = "all-MiniLM-L6-v2"
"""The text encoder of codecs saved before they named theirs (the transformer per value)."""


def stale_text_codecs(states: dict[str, dict]) -> dict[str, str]:
    """Column -> the text encoder of each saved semantic codec whose values went through
    another encoder than this version's (its model was trained on other vectors)."""
    from pipeline.encoders.text_vectors import MODEL_NAME

    return {
        column: state.get("text_model", LEGACY_TEXT_MODEL)
        for column, state in states.items()
        if column_type(state["type"]).codec.semantic
        and state.get("text_model", LEGACY_TEXT_MODEL) != MODEL_NAME
    }


def build_encoder(type_name: str, sizes: dict[str, int], d_model: int) -> nn.Module:
    return column_type(type_name).encoder(sizes, d_model)
