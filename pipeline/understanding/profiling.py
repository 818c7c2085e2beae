"""Column profiling: each column's type and role, junk excluded with a stated reason, values
that do not parse counted with examples. Written to `ml.column_profile`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, replace

import pyarrow as pa

from pipeline.encoders import JUNK_TYPES, column_type, type_names
from pipeline.encoders.base import render
from pipeline.errors import SpecError
from pipeline.spec import Spec
from pipeline.understanding.detection import Decision, column_statistics, decide, non_blank
from pipeline.warehouse.connection import Connection, table_columns, table_exists
from pipeline.warehouse.sql import qualified, quote

TARGET_TYPES = ("scalar", "category", "boolean", "ordinal")
DECLARED_MIN_SHARE = 0.5


@dataclass(frozen=True)
class ColumnProfile:
    """What profiling decided about one column, with the evidence."""

    space: str
    column: str
    warehouse_type: str
    detected_type: str
    role: str
    null_fraction: float
    distinct_count: int
    excluded: bool
    reason: str
    unparsed_count: int = 0
    unparsed_examples: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)

    @property
    def is_input(self) -> bool:
        return self.role == "input" and not self.excluded


def structural_roles(spec: Spec, name: str) -> dict[str, str]:
    """Columns that are structure, not content: key, foreign keys, as_of."""
    space = spec.spaces[name]
    roles = {column: "key" for column in space.key_columns}
    for parent_name in spec.parents_of(name):
        for child in spec.spaces[parent_name].children:
            if child.space == name:
                roles.update({c: "foreign_key" for c in child.foreign_key_columns})
    for ref in space.references:
        roles.update({c: "reference_key" for c in ref.foreign_key_columns})
    if space.as_of:
        roles[space.as_of] = "as_of"
    return roles


def profile_space(con: Connection, spec: Spec, name: str) -> list[ColumnProfile]:
    """Profile every column of a space's table (statistics in SQL, patterns on a sample)."""
    space = spec.spaces[name]
    columns = table_columns(con, space.table)
    if not columns:
        raise SpecError(
            f"spaces.{name}.table",
            f"table or view '{space.table}' not found in the warehouse",
            "check the name (schema.table) or run the dbt models that build it",
        )
    for column in space.columns:
        if column not in columns:
            raise SpecError(
                f"spaces.{name}.columns.{column}",
                f"column '{column}' is not in {space.table}",
                f"known columns: {', '.join(columns)}",
            )
    roles = structural_roles(spec, name)
    stats = column_statistics(con, space.table, columns, space.key_columns)
    profiles = []
    for column, warehouse_type in columns.items():
        col_spec = space.column(column)
        s = stats[column]
        role = roles.get(column) or ("target" if col_spec.target else "input")
        decision = decide(column, warehouse_type, s, role)
        if col_spec.type:
            decision = _declared(
                con, spec, name, column, columns, s.nonnull, col_spec.type, decision
            )
        elif decision.excluded and "active" in col_spec.model_fields_set and col_spec.active:
            decision = _kept_by_spec(decision, s.nonnull)
        excluded, reason = decision.excluded, decision.reason
        if role not in ("input", "target"):
            excluded, reason = True, f"{role.replace('_', ' ')} column (structure, not an input)"
        elif not col_spec.active:
            role, excluded, reason = "inactive", True, "active: false in spec"
        elif role == "target" and decision.type not in TARGET_TYPES:
            raise SpecError(
                f"spaces.{name}.columns.{column}.target",
                f"a target must be {', '.join(TARGET_TYPES)}; detected {decision.type}",
                "declare its type in the spec",
            )
        profiles.append(
            ColumnProfile(
                space=name,
                column=column,
                warehouse_type=warehouse_type,
                detected_type=decision.type,
                role=role,
                null_fraction=1.0 - s.nonnull / s.rows if s.rows else 1.0,
                distinct_count=s.distinct,
                excluded=excluded,
                reason=reason,
                evidence=decision.evidence,
            )
        )
    return _with_unparsed(con, space.table, profiles, columns)


def stored_profiles(con: Connection, spec: Spec, name: str) -> list[ColumnProfile]:
    """The profile `validate` wrote to `<output_schema>.column_profile`, when it still fits the
    table and the spec (same columns, roles and declared types); otherwise a fresh profile."""
    space = spec.spaces[name]
    stored: list[ColumnProfile] = []
    output_schema = spec.output_schema
    table = f"{quote(output_schema)}.column_profile"
    if table_exists(con, f"{output_schema}.column_profile"):
        fields = [f.name for f in dataclasses.fields(ColumnProfile)]
        rows = con.execute(
            f"select {', '.join(quote(f) for f in fields)} from {table} where space = ?", [name]
        ).fetchall()
        for row in rows:
            values = dict(zip(fields, row, strict=True))
            values["evidence"] = json.loads(values["evidence"]) if values["evidence"] else {}
            stored.append(ColumnProfile(**values))
    roles = structural_roles(spec, name)
    fits = bool(stored) and [p.column for p in stored] == list(table_columns(con, space.table))
    for profile in stored if fits else []:
        col_spec = space.column(profile.column)
        role = roles.get(profile.column) or ("target" if col_spec.target else "input")
        if not col_spec.active and role in ("input", "target"):
            role = "inactive"
        declared = col_spec.type and col_spec.type != profile.detected_type
        kept = "active" in col_spec.model_fields_set and col_spec.active and profile.excluded
        if role != profile.role or declared or (kept and role == "input"):
            fits = False
    return stored if fits else profile_space(con, spec, name)


def _with_unparsed(
    con: Connection,
    table: str,
    profiles: list[ColumnProfile],
    warehouse_types: dict[str, str],
) -> list[ColumnProfile]:
    used = {
        p.column: p.detected_type
        for p in profiles
        if not p.excluded and p.detected_type in type_names()
    }
    found = unparsed_counts(con, table, used, warehouse_types)
    out = []
    for p in profiles:
        count, examples = found.get(p.column, (0, []))
        if count:
            shown = ", ".join(repr(e) for e in examples)
            reason = f"{p.reason}; {count} value(s) do not parse (e.g. {shown}), read as missing"
            p = replace(p, unparsed_count=count, unparsed_examples=examples, reason=reason)
        out.append(p)
    return out


def _parsed_predicate(column: str, type_name: str, warehouse_type: str = "VARCHAR") -> str:
    t = column_type(type_name)
    q = quote(column)
    parsed = f"({render(t.read_sql, column=q)}) is not null"
    if t.looks_like and warehouse_type == "VARCHAR":
        value = f"trim(cast({q} as varchar))"
        parsed += f" and ({render(t.looks_like, value=value)})"
    return parsed


def _unparsed_condition(column: str, type_name: str, warehouse_type: str) -> str:
    parsed = _parsed_predicate(column, type_name, warehouse_type)
    return f"{non_blank(column)} is not null and not coalesce({parsed}, false)"


def unparsed_counts(
    con: Connection,
    table: str,
    types: dict[str, str],
    warehouse_types: dict[str, str],
    n_examples: int = 3,
) -> dict[str, tuple[int, list[str]]]:
    """Per column, the non-null values that do not parse as its type (they are read as
    missing): their count over the whole table (one scan for all columns) and examples.
    `warehouse_types`: the table's columns and their DuckDB types."""
    if not types:
        return {}
    conditions = {c: _unparsed_condition(c, t, warehouse_types[c]) for c, t in types.items()}
    counts = con.execute(
        "select "
        + ", ".join(f"count(*) filter (where {bad})" for bad in conditions.values())
        + f" from {qualified(table)}"
    ).fetchone()
    found = {}
    for (column, bad), count in zip(conditions.items(), counts, strict=True):
        examples = []
        if count:
            examples = [
                str(r[0])[:80]
                for r in con.execute(
                    f"select distinct {non_blank(column)} as v from {qualified(table)} where {bad} "
                    f"order by v limit {n_examples}"
                ).fetchall()
            ]
        found[column] = (int(count), examples)
    return found


def _kept_by_spec(decision: Decision, nonnull: int) -> Decision:
    """`active: true` keeps a column detection excluded as junk (ids, constants)."""
    kept = decision.evidence.get("type_if_kept", decision.type)
    if kept not in type_names() or not nonnull:
        return decision
    return Decision(
        kept, False, f"active: true in spec (detected: {decision.reason})", decision.evidence
    )


def _declared(
    con: Connection,
    spec: Spec,
    name: str,
    column: str,
    warehouse_types: dict[str, str],
    nonnull: int,
    declared: str,
    detected: Decision,
) -> Decision:
    """A type given in the spec wins over detection, unless most values do not parse as it."""
    evidence = {**detected.evidence, "detected": detected.type}
    if declared in JUNK_TYPES:
        return Decision(declared, True, f"declared {declared} in spec", evidence)
    table = spec.spaces[name].table
    unparsed, examples = unparsed_counts(con, table, {column: declared}, warehouse_types)[column]
    if nonnull and (nonnull - unparsed) / nonnull < DECLARED_MIN_SHARE:
        raise SpecError(
            f"spaces.{name}.columns.{column}.type",
            f"declared {declared}, but {unparsed} of {nonnull} values do not parse as {declared} "
            f"(e.g. {', '.join(repr(e) for e in examples)}); detection says {detected.type}",
            "fix the type, or remove it and let detection decide",
        )
    return Decision(declared, False, "type declared in spec", evidence)


def profiles_table(profiles: list[ColumnProfile]) -> pa.Table:
    """`ml.column_profile` rows (evidence as a JSON string)."""
    schema = pa.schema(
        [
            ("space", pa.string()),
            ("column", pa.string()),
            ("warehouse_type", pa.string()),
            ("detected_type", pa.string()),
            ("role", pa.string()),
            ("null_fraction", pa.float64()),
            ("distinct_count", pa.int64()),
            ("excluded", pa.bool_()),
            ("reason", pa.string()),
            ("unparsed_count", pa.int64()),
            ("unparsed_examples", pa.list_(pa.string())),
            ("evidence", pa.string()),
        ]
    )
    rows = [
        {
            "space": p.space,
            "column": p.column,
            "warehouse_type": p.warehouse_type,
            "detected_type": p.detected_type,
            "role": p.role,
            "null_fraction": p.null_fraction,
            "distinct_count": p.distinct_count,
            "excluded": p.excluded,
            "reason": p.reason,
            "unparsed_count": p.unparsed_count,
            "unparsed_examples": p.unparsed_examples,
            "evidence": json.dumps(p.evidence, sort_keys=True),
        }
        for p in profiles
    ]
    return pa.Table.from_pylist(rows, schema=schema)
