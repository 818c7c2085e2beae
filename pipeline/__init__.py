"""Warehouse-native hierarchical embedding spaces: the core library (no Dagster here)."""

from pipeline.errors import DataError, JoinValidationError, PipelineError, SpecError
from pipeline.predictors import Predictor
from pipeline.space import Space
from pipeline.spec import Spec, load_spec, parse_spec

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
