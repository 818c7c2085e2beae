"""Warehouse-native hierarchical embedding spaces: the core library (no Dagster here).

Heavy modules (torch, sklearn) load on first use, so `import pipeline.spec` stays fast.
"""

from importlib import import_module

from pipeline.errors import DataError, JoinValidationError, PipelineError, SpecError
from pipeline.spec import Spec, load_spec, parse_spec

_LAZY = {"Space": "pipeline.spaces.space", "Predictor": "pipeline.predictors"}

__all__ = [
    "DataError",
    "JoinValidationError",
    "PipelineError",
    "Predictor",
    "Space",
    "Spec",
    "SpecError",
    "load_spec",
    "parse_spec",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
