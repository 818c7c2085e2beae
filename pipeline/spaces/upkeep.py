"""What a run must redo: whether a space is retrained, and which rows are embedded again.

A space is retrained when it has no model, its spec section changed (`Spec.space_digest`),
a space it reads was retrained, its inputs drifted past `DRIFT_ROWS` / `DRIFT_NULLS` since
training, or a retrain is asked for. Rows are embedded (and predicted) again when their
fingerprint (`row_fingerprints`) or the model that wrote them changed; rows that left the
table are removed from what was written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from pipeline.spaces.row_fingerprints import FINGERPRINT, FINGERPRINTS_TABLE
from pipeline.spec import Spec
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow, table_columns
from pipeline.warehouse.sql import quote

if TYPE_CHECKING:
    from pipeline.spaces.space import Space

DRIFT_ROWS = 0.25
"""The table grew or shrank by more than this share of its rows at training."""
DRIFT_NULLS = 0.10
"""An input column's null share moved by more than this (absolute)."""
CHANGED_TABLE = "__changed_rows"


def profile_summary(profiles: list[ColumnProfile], n_rows: int) -> dict:
    """What drift is measured against: the rows, and each input column's type and nulls."""
    return {
        "rows": n_rows,
        "columns": {
            p.column: {"type": p.detected_type, "null_fraction": round(p.null_fraction, 6)}
            for p in profiles
            if p.is_input
        },
    }


def drift(trained_on: dict, profiles: list[ColumnProfile], n_rows: int) -> str | None:
    """How the inputs moved past the thresholds since training, in words; None if they did
    not (or the model predates the record)."""
    if not trained_on:
        return None
    before = trained_on["rows"]
    if before and abs(n_rows - before) > DRIFT_ROWS * before:
        return f"its table went from {before} to {n_rows} rows"
    for p in profiles:
        old = trained_on["columns"].get(p.column)
        if old is None or not p.is_input:
            continue  # a new column is reported as schema drift and not used until retrained
        if old["type"] != p.detected_type:
            return f"column {p.column} reads as {p.detected_type}, {old['type']} at training"
        if abs(p.null_fraction - old["null_fraction"]) > DRIFT_NULLS:
            return (
                f"column {p.column} is {p.null_fraction:.0%} null, "
                f"{old['null_fraction']:.0%} at training"
            )
    return None


def retrain_reason(
    spec: Spec,
    name: str,
    saved: Space | None,
    current_versions: dict[str, str],
    profiles: list[ColumnProfile],
    n_rows: int,
    retrain: bool,
) -> str | None:
    """Why the space must be trained in this run, or None when its saved model stays.
    `current_versions`: the current model version of every space it reads."""
    if retrain:
        return "a retrain was asked for"
    if saved is None:
        return "it has no model yet"
    if saved.spec_digest != spec.space_digest(name):
        return f"its section of the spec (spaces.{name}) or the training settings changed"
    stale = sorted(s for s, v in saved.read_versions.items() if current_versions.get(s) != v)
    if stale:
        return f"space {', '.join(stale)} it reads was retrained"
    moved = drift(saved.trained_on, profiles, n_rows)
    return f"its inputs drifted: {moved}" if moved else None


@dataclass
class RowChanges:
    """Rows of a space to compute again against what a table holds (after
    `write_fingerprints`): the changed rows' keys are in the temp table `__changed_rows`."""

    changed: int
    rows: int
    removed: pa.Table
    """Keys of the rows the table holds that left the space's table."""

    @property
    def everything(self) -> bool:
        return self.changed == self.rows

    @property
    def nothing(self) -> bool:
        return self.changed == 0 and self.removed.num_rows == 0


def row_changes(
    warehouse: Warehouse,
    con: Connection,
    spec: Spec,
    name: str,
    table: str,
    version_column: str,
    version: str,
) -> RowChanges:
    """Compare the current fingerprints with output table `table`: a row is changed when it
    is new, its fingerprint differs, or `version_column` is not `version`; every row when
    the table is missing or holds no fingerprints."""
    keys = spec.spaces[name].key_columns
    key_sql = ", ".join(f"f.{quote(k)}" for k in keys)
    stored = warehouse.output_table(table)
    columns = table_columns(con, f"{warehouse.output_schema}.{table}")
    if FINGERPRINT not in columns or version_column not in columns:
        con.execute(
            f"create or replace temp table {CHANGED_TABLE} as "
            f"select {key_sql} from {FINGERPRINTS_TABLE} f"
        )
        removed = fetch_arrow(con, _none(keys))
    else:
        on = " and ".join(f"s.{quote(k)} = f.{quote(k)}" for k in keys)
        con.execute(
            f"create or replace temp table {CHANGED_TABLE} as select {key_sql} "
            f"from {FINGERPRINTS_TABLE} f left join {stored} s on {on} "
            f"where s.{FINGERPRINT} is distinct from f.{FINGERPRINT} "
            f"or s.{quote(version_column)} is distinct from ?",
            [version],
        )
        stored_keys = ", ".join(f"s.{quote(k)}" for k in keys)
        removed = fetch_arrow(
            con,
            f"select {stored_keys} from {stored} s anti join {FINGERPRINTS_TABLE} f on {on}",
        )
    changed, rows = (
        con.execute(f"select count(*) from {t}").fetchone()[0]
        for t in (CHANGED_TABLE, FINGERPRINTS_TABLE)
    )
    return RowChanges(changed, rows, removed)


def _none(keys: list[str]) -> str:
    """No rows, with the key columns of the fingerprints table."""
    return f"select {', '.join(quote(k) for k in keys)} from {FINGERPRINTS_TABLE} limit 0"


def write_rows(
    warehouse: Warehouse,
    spec: Spec,
    name: str,
    table_name: str,
    table: pa.Table,
    changes: RowChanges,
) -> None:
    """Replace the whole output table when every row changed, else merge the changed rows
    in and delete the removed ones; one transaction either way."""
    with warehouse.connect() as con:
        if changes.everything:
            warehouse.write_table(con, table_name, table)
        else:
            keys = spec.spaces[name].key_columns
            warehouse.merge_rows(con, table_name, table, keys, changes.removed)
