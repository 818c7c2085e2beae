"""What a run must redo: whether a space is retrained, and which rows are embedded again.

A space is retrained when it has no model, its spec section changed (`Spec.space_digest`),
a space it reads was retrained, its inputs drifted past `DRIFT_ROWS` / `DRIFT_NULLS` since
training, or a retrain is asked for. Rows are embedded (and predicted) again when their
fingerprint (`row_fingerprints`) or the model that wrote them changed; rows that left the
table are removed from what was written.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline.errors import SpecError
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.reads import create_rows_table, rows_table_of
from pipeline.spaces.row_fingerprints import (
    FINGERPRINT,
    FINGERPRINTS_TABLE,
    fingerprints_in_row_order,
)
from pipeline.spec import Spec
from pipeline.store.artifacts import short_hash
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow, table_columns
from pipeline.warehouse.spill import SpilledRows
from pipeline.warehouse.sql import literal, quote

if TYPE_CHECKING:
    from pipeline.spaces.space import Space

DRIFT_ROWS = 0.25
"""The table grew or shrank by more than this share of its rows at training."""
DRIFT_NULLS = 0.10
"""An input column's null share moved by more than this (absolute)."""
CHANGED_TABLE = "__changed_rows"
SPILL_FOLDER = "spill"
"""Under the artifacts folder: the keys of the rows a running step computes again."""


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


def fingerprint(profiles: list[ColumnProfile], n_rows: int) -> str:
    """What the codecs were fitted on, in short: row count, and each column's type, role,
    null fraction and distinct count."""
    parts = [
        (p.column, p.detected_type, p.role, round(p.null_fraction, 6), p.distinct_count)
        for p in profiles
    ]
    return short_hash(repr((n_rows, sorted(parts))).encode())


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
    if not saved.spec_digest:
        return "its model was saved by a version that did not record its spec section"
    if saved.spec_digest != spec.space_digest(name):
        return f"its section of the spec (spaces.{name}) or the training settings changed"
    stale = sorted(s for s, v in saved.read_versions.items() if current_versions.get(s) != v)
    if stale:
        return f"space {', '.join(stale)} it reads was retrained"
    moved = drift(saved.trained_on, profiles, n_rows)
    return f"its inputs drifted: {moved}" if moved else None


@dataclass(frozen=True)
class Partition:
    """Slice `index` of `count` of a space's rows, by a hash of the key: what one Dagster
    partition (or `embed --partition`) computes and writes, beside the other slices."""

    index: int
    count: int

    def where(self, alias: str, keys: list[str]) -> str:
        """SQL: whether the row of `alias` is in this slice."""
        columns = ", ".join(f"{alias}.{quote(k)}" for k in keys)
        return f"hash({columns}) % {int(self.count)} = {int(self.index)}"

    @property
    def suffix(self) -> str:
        return f"__p{self.index}_of_{self.count}"


def partition_of(spec: Spec, index: int | None) -> Partition | None:
    """Slice `index` of the spec's `partitions` (None: every row); a clear error when the
    spec has no such partition."""
    if index is None:
        return None
    if not 0 <= index < spec.partitions:
        raise SpecError(
            "partitions",
            f"partition {index} does not exist (the spec has {spec.partitions})",
            f"give a partition from 0 to {spec.partitions - 1}, or set partitions: in the spec",
        )
    return Partition(index, spec.partitions)


@dataclass
class RowChanges:
    """What an output table needs to be up to date with a space's rows (after
    `write_fingerprints`)."""

    changed: SpilledRows
    """Key columns and `row_fingerprint` of the rows to compute, in key order: new, changed,
    or written by another model version, less those an interrupted run already computed
    (`pending`). On local disk, read back a batch at a time."""
    rows: int
    """Rows of the space's table now."""
    removed: pa.Table
    """Keys of the rows the table holds that left the space's table."""
    pending: int = 0
    """Rows computed by an interrupted run, still current, waiting to be published."""
    everything: bool = False
    """Every current row is computed again: the table is replaced when they are published."""
    partition: Partition | None = None
    """The slice of the rows these changes cover (None: every row)."""

    @property
    def nothing(self) -> bool:
        return self.changed.num_rows == 0 and self.removed.num_rows == 0 and self.pending == 0


def pending_table(table: str, partition: Partition | None = None) -> str:
    """Where computed rows wait until all are done (they survive a killed run); a partition
    has its own."""
    return f"_pending_{table}" + (partition.suffix if partition else "")


def row_changes(
    warehouse: Warehouse,
    con: Connection,
    spec: Spec,
    name: str,
    table: str,
    version_column: str,
    version: str,
    partition: Partition | None = None,
) -> RowChanges:
    """Compare the current fingerprints with output table `table`: a row is changed when it
    is new, its fingerprint differs, or `version_column` is not `version`; every row when
    the table is missing or holds no fingerprints. Rows an interrupted run left pending with
    the same fingerprint and version are kept as done; stale pending rows are dropped. With
    a `partition`, only the rows of that slice are looked at (and never the whole table
    replaced)."""
    keys = spec.spaces[name].key_columns
    in_slice = "true"
    if partition is not None:
        con.execute(f"delete from {FINGERPRINTS_TABLE} f where not ({partition.where('f', keys)})")
        in_slice = partition.where("s", keys)
    key_sql = ", ".join(f"f.{quote(k)}" for k in keys)
    stored = warehouse.output_table(table)
    columns = table_columns(con, f"{warehouse.output_schema}.{table}")
    on = " and ".join(f"s.{quote(k)} = f.{quote(k)}" for k in keys)
    if FINGERPRINT not in columns or version_column not in columns:
        changed_sql = f"select {key_sql}, f.{FINGERPRINT} from {FINGERPRINTS_TABLE} f"
        removed = fetch_arrow(con, _none(keys))
    else:
        changed_sql = (
            f"select {key_sql}, f.{FINGERPRINT} from {FINGERPRINTS_TABLE} f "
            f"left join {stored} s on {on} where s.{FINGERPRINT} is distinct from "
            f"f.{FINGERPRINT} or s.{quote(version_column)} is distinct from {literal(version)}"
        )
        stored_keys = ", ".join(f"s.{quote(k)}" for k in keys)
        removed = fetch_arrow(
            con,
            f"select {stored_keys} from {stored} s anti join {FINGERPRINTS_TABLE} f on {on} "
            f"where {in_slice}",
        )
    con.execute(f"create or replace temp table {CHANGED_TABLE} as {changed_sql}")
    to_compute = f"select * from {CHANGED_TABLE} f"
    pending = 0
    pending_name = pending_table(table, partition)
    if warehouse.table_exists(con, f"{warehouse.output_schema}.{pending_name}"):
        waiting = warehouse.output_table(pending_name)
        current = (
            f"s.{FINGERPRINT} = f.{FINGERPRINT} and s.{quote(version_column)} = {literal(version)}"
        )
        con.execute(  # computed for rows that changed again since, or by another model
            f"delete from {waiting} s where not exists (select 1 from {CHANGED_TABLE} f "
            f"where {on} and {current})"
        )
        pending = con.execute(f"select count(*) from {waiting}").fetchone()[0]
        if pending:
            to_compute += f" anti join {waiting} s on {on}"
        else:
            con.execute(f"drop table {waiting}")
    changed = SpilledRows(
        con,
        f"{to_compute} order by {', '.join(quote(k) for k in keys)}",
        folder=spec.artifacts / SPILL_FOLDER,
    )
    rows = con.execute(f"select count(*) from {FINGERPRINTS_TABLE}").fetchone()[0]
    everything = partition is None and changed.num_rows + pending == rows
    return RowChanges(changed, rows, removed, pending, everything, partition)


def _none(keys: list[str]) -> str:
    """No rows, with the key columns of the fingerprints table."""
    return f"select {', '.join(quote(k) for k in keys)} from {FINGERPRINTS_TABLE} limit 0"


def stage(
    warehouse: Warehouse,
    con: Connection,
    table: str,
    rows: pa.Table,
    partition: Partition | None = None,
) -> None:
    """Append computed rows to the pending table of output table `table` (one transaction:
    a killed run keeps every batch staged before it)."""
    pending = pending_table(table, partition)
    if warehouse.table_exists(con, f"{warehouse.output_schema}.{pending}"):
        warehouse.append_rows(con, pending, rows)
    else:
        warehouse.write_table(con, pending, rows)


def publish(
    warehouse: Warehouse, con: Connection, spec: Spec, name: str, table: str, changes: RowChanges
) -> None:
    """In one transaction, bring output table `table` up to date from its pending rows:
    replaced whole when every row was computed, else the pending rows replace theirs and the
    removed rows are deleted. Readers see the old table or the new one, never a mix."""
    changes.changed.close()  # every batch is staged: the keys are not read again
    keys = spec.spaces[name].key_columns
    pending = pending_table(table, changes.partition)
    if not warehouse.table_exists(con, f"{warehouse.output_schema}.{pending}"):
        if changes.removed.num_rows:  # nothing computed: only removals
            warehouse.delete_rows(con, table, keys, changes.removed)
        return
    warehouse.publish_pending(
        con, table, pending, keys, changes.removed, replace=changes.everything
    )


BATCH_ROWS = 100_000
"""At most this many rows are read, computed and staged at once by `embed` and `predict`."""
BATCH_BYTES = 256 * 2**20
"""What a batch's inputs may hold in memory (the arrays `SpaceInputs.nbytes` counts; reading
them takes a few times as much for a moment): rows with many children or wide child
statistics come in smaller batches. The first batch (`FIRST_BATCH_ROWS`) measures a row."""
FIRST_BATCH_ROWS = 8_192
MIN_BATCH_ROWS = 1_024
"""Fewer rows than this are not worth a batch of their own, however wide (a batch of rows of
more than `BATCH_BYTES / MIN_BATCH_ROWS` holds more than the budget)."""
BATCH_TABLE = "__batch_rows"


def batch_inputs(
    warehouse: Warehouse,
    spec: Spec,
    space: Space,
    changes: RowChanges,
    inputs: SpaceInputs | None = None,
    read_more: Callable[[Connection], Any] | None = None,
    clock: Callable[[str], AbstractContextManager] | None = None,
    needs_tokens: Callable[[Any], bool] | None = None,
) -> Iterator[tuple[pa.Table, SpaceInputs, pa.ChunkedArray, Any]]:
    """The changed rows in batches: (batch, its inputs through the saved codecs, their
    fingerprints in the inputs' row order, `read_more(con)`). `read_more` runs first, with
    the batch's rows in `__space_rows` and their keys and fingerprints in `__batch_rows`;
    `needs_tokens(what it read)`: False reads only what a model beside the stored embedding
    reads (`Space.read_inputs(tokens=False)`). The warehouse is open only while a batch is
    read; a batch holds as many rows as fit `BATCH_BYTES` (at most `BATCH_ROWS`), measured
    on the batch before. `inputs`: every row, already read (one batch, nothing read again)
    when every row is to be computed."""
    timed = clock or (lambda _: contextlib.nullcontext())
    given = inputs is not None and inputs.n_rows and _same_rows(inputs.keys, changes.changed)
    size = {"rows": changes.changed.num_rows if given else min(BATCH_ROWS, FIRST_BATCH_ROWS)}
    for batch in changes.changed.slices(lambda: size["rows"]):
        with timed("read inputs"), warehouse.connect() as con:
            con.register(BATCH_TABLE, batch)
            try:
                if given:
                    rows_table_of(con, inputs.keys)
                else:
                    create_rows_table(con, spec, space.name, only=BATCH_TABLE)
                more = read_more(con) if read_more else None
                part = inputs
                if not given:
                    tokens = needs_tokens(more) if needs_tokens else True
                    # made again: reading children as of a time replaces `__space_rows`
                    part = space.read_inputs(warehouse, con, spec, only=BATCH_TABLE, tokens=tokens)
                fingerprints = fingerprints_in_row_order(con, spec, space.name, BATCH_TABLE)
            finally:
                con.unregister(BATCH_TABLE)
        per_row = part.nbytes() / max(part.n_rows, 1)
        size["rows"] = int(min(BATCH_ROWS, max(MIN_BATCH_ROWS, BATCH_BYTES // max(per_row, 1))))
        yield batch, part, fingerprints, more


def _same_rows(keys: pa.Table, changed: SpilledRows) -> bool:
    """Whether the changed rows are exactly the rows `keys` names (both in key order)."""
    if keys.num_rows != changed.num_rows:
        return False
    start = 0
    try:
        for part in changed.slices(lambda: BATCH_ROWS):
            given = keys.slice(start, part.num_rows)
            if not part.select(keys.column_names).cast(keys.schema).equals(given):
                return False
            start += part.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, KeyError):
        return False
    return True
