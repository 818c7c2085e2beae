"""Where a spec's things live: its warehouse, its model folders, its output tables' names."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec import Spec
from pipeline.store.artifacts import load_json
from pipeline.store.model_store import current_set
from pipeline.warehouse.connection import Warehouse


def warehouse_of(spec: Spec) -> Warehouse:
    return Warehouse.of(spec)


def space_folder(spec: Spec, name: str) -> Path:
    return Path(spec.artifacts) / name


def current_space_version(spec: Spec, name: str) -> str:
    """The version of the space's current model set (without loading its weights)."""
    folder = current_set(space_folder(spec, name), f"space {name}")
    return str(load_json(folder / "space.json")["version"])


def predictor_folder(spec: Spec, name: str, target: str) -> Path:
    return space_folder(spec, name) / "predictors" / target


def predictions_name(name: str, target: str) -> str:
    return f"{name}__{target}_predictions"
