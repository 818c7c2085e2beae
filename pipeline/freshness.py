"""Whether what a run would make is already up to date: the spaces' and predictors' models
(`upkeep.retrain_reason`), and the validation of unchanged tables."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from pipeline.locations import (
    current_space_version,
    predictor_folder,
    space_folder,
    warehouse_of,
)
from pipeline.predictors import Predictor
from pipeline.spaces.row_fingerprints import tables_digest
from pipeline.spaces.space import Space
from pipeline.spaces.upkeep import retrain_reason
from pipeline.spec import Spec
from pipeline.store.model_store import current_name
from pipeline.understanding.profiling import stored_profiles
from pipeline.warehouse.connection import DatabaseError
from pipeline.warehouse.sql import literal, qualified

VALIDATED_TABLE = "validated_tables"
"""`ml.validated_tables`: per space, the digest of the tables and spec section it was last
validated on (a run whose validation passed)."""


def validation_digests(spec: Spec) -> dict[str, str | None]:
    """Per space, a digest of the spec sections and settings validating it reads (its own,
    its children's and references', the join coverage) and of the tables; None where a
    table cannot be read (validation names the problem)."""
    warehouse = warehouse_of(spec)
    digests: dict[str, str | None] = {}
    with warehouse.connect() as con:
        for name in spec.training_order():
            sections = [spec.space_digest(s) for s in [name, *spec.dependencies(name)]]
            settings = "-".join([*sections, str(spec.min_join_coverage)])
            try:
                digests[name] = f"{tables_digest(con, spec, name)}-{settings}"
            except DatabaseError:
                digests[name] = None
    return digests


def last_validated(spec: Spec) -> dict[str, str]:
    warehouse = warehouse_of(spec)
    with warehouse.connect() as con:
        if not warehouse.table_exists(con, f"{spec.output_schema}.{VALIDATED_TABLE}"):
            return {}
        rows = con.execute(
            f"select space, digest from {warehouse.output_table(VALIDATED_TABLE)}"
        ).fetchall()
    return dict(rows)


def record_validated(spec: Spec, digests: dict[str, str | None]) -> None:
    """Keep the digests of the spaces a passed validation checked (`validation_digests`)."""
    warehouse = warehouse_of(spec)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    table = pa.table(
        {
            "space": pa.array(list(digests), pa.string()),
            "digest": pa.array(list(digests.values()), pa.string()),
            "validated_at": pa.array([now] * len(digests), pa.timestamp("us")),
        }
    )
    spaces = " or ".join(f"space = {literal(n)}" for n in digests) or "false"
    with warehouse.connect() as con:
        warehouse.write_table(con, VALIDATED_TABLE, table, replace_where=spaces)


def space_retrain_reason(spec: Spec, name: str, retrain: bool = False) -> str | None:
    """Why `run` trains the space now (see `upkeep.retrain_reason`), None if it keeps it.
    Reads the profile `validate` wrote."""
    folder = space_folder(spec, name)
    saved = Space.load(folder) if current_name(folder) and not retrain else None
    versions = {
        dependency: current_space_version(spec, dependency)
        for dependency in spec.dependencies(name)
    }
    warehouse = warehouse_of(spec)
    with warehouse.connect() as con:
        profiles = stored_profiles(con, spec, name)
        table = qualified(spec.spaces[name].table)
        n_rows = con.execute(f"select count(*) from {table}").fetchone()[0]
    return retrain_reason(spec, name, saved, versions, profiles, n_rows, retrain)


def predictor_retrain_reason(spec: Spec, name: str, target: str, retrain: bool) -> str | None:
    """Why `run` trains the predictor of `name.target` now, None if it keeps it."""
    folder = predictor_folder(spec, name, target)
    if retrain:
        return "a retrain was asked for"
    if not current_name(folder):
        return "it has no model yet"
    predictor = Predictor.load(folder)
    if predictor.space_version != current_space_version(spec, name):
        return f"space {name} was retrained"
    if predictor.spec_digest != spec.target_digest(name, target):
        return f"its settings in the spec (spaces.{name}.columns.{target}) changed"
    return None
