"""Column profiling: detect each column's type and role, exclude junk with a stated reason."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import duckdb
import pyarrow as pa

from pipeline.errors import SpecError
from pipeline.spec import Spec
from pipeline.warehouse import qualified, quote, table_columns

ENCODED_TYPES = ("scalar", "category", "text", "timestamp", "boolean", "email")
_INTEGER = re.compile(
    r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT)$"
)
_NUMERIC = re.compile(r"^(FLOAT|DOUBLE|REAL|DECIMAL.*)$")
_TIME = re.compile(r"^(DATE|TIMESTAMP.*|DATETIME)$")
_EMAIL = r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"


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


def profile_space(con: duckdb.DuckDBPyConnection, spec: Spec, name: str) -> list[ColumnProfile]:
    """Profile every column of a space's table (statistics computed in SQL)."""
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
    stats = _column_stats(con, space.table, columns)
    profiles = []
    for column, warehouse_type in columns.items():
        col_spec = space.column(column)
        s = stats[column]
        role = roles.get(column) or ("target" if col_spec.target else "input")
        detected, reason = _detect(column, warehouse_type, s)
        if col_spec.type:
            detected, reason = col_spec.type, "type declared in spec"
        excluded = reason.startswith("excluded:")
        if role not in ("input", "target"):
            excluded, reason = True, f"{role.replace('_', ' ')} column (structure, not an input)"
        elif not col_spec.active:
            role, excluded, reason = "inactive", True, "active: false in spec"
        elif s["nonnull"] == 0:
            excluded, reason = True, "all values are NULL"
        elif detected not in ENCODED_TYPES:
            excluded = True
            if not reason.startswith("excluded:"):
                reason = f"type {detected} has no encoder yet; declare it as category or text"
        elif role == "target" and detected not in ("scalar", "category", "boolean"):
            raise SpecError(
                f"spaces.{name}.columns.{column}.target",
                f"a target must be scalar, category or boolean, detected {detected}",
                "declare its type in the spec",
            )
        profiles.append(
            ColumnProfile(
                space=name,
                column=column,
                warehouse_type=warehouse_type,
                detected_type=detected,
                role=role,
                null_fraction=1.0 - s["nonnull"] / s["rows"] if s["rows"] else 1.0,
                distinct_count=int(s["distinct"]),
                excluded=excluded,
                reason=reason.removeprefix("excluded: "),
            )
        )
    return profiles


def _column_stats(
    con: duckdb.DuckDBPyConnection, table: str, columns: dict[str, str]
) -> dict[str, dict[str, float]]:
    parts = ["count(*)"]
    for column, warehouse_type in columns.items():
        q = quote(column)
        parts += [f"count({q})", f"count(distinct {q})"]
        if warehouse_type == "VARCHAR":
            parts += [
                f"avg(length({q}))",
                f"avg(length({q}) - length(replace({q}, ' ', '')) + 1)",
                f"avg(case when regexp_matches(lower({q}), '{_EMAIL}') then 1.0 else 0.0 end)",
                f"avg(case when lower({q}) in ('true','false','yes','no','y','n','t','f') "
                "then 1.0 else 0.0 end)",
            ]
        elif _INTEGER.match(warehouse_type) or _NUMERIC.match(warehouse_type):
            parts += [f"avg(case when {q} in (0, 1) then 1.0 else 0.0 end)"]
    row = con.execute(f"select {', '.join(parts)} from {qualified(table)}").fetchone()
    rows, i, stats = row[0], 1, {}
    for column, warehouse_type in columns.items():
        s = {"rows": rows, "nonnull": row[i], "distinct": row[i + 1]}
        i += 2
        if warehouse_type == "VARCHAR":
            s.update(
                avg_length=row[i] or 0,
                avg_words=row[i + 1] or 0,
                email=row[i + 2] or 0,
                boolean_words=row[i + 3] or 0,
            )
            i += 4
        elif _INTEGER.match(warehouse_type) or _NUMERIC.match(warehouse_type):
            s["zero_one"] = row[i] or 0
            i += 1
        stats[column] = s
    return stats


def _detect(column: str, warehouse_type: str, s: dict[str, float]) -> tuple[str, str]:
    """(detected type, reason). Reasons starting with 'excluded:' exclude the column."""
    nonnull, distinct = s["nonnull"], s["distinct"]
    unique_ratio = distinct / nonnull if nonnull else 0.0
    named_like_id = re.search(r"(^|_)(id|uuid|guid|key|hash)$", column.lower()) is not None
    if nonnull and distinct <= 1:
        return "category", "excluded: constant (one distinct value)"
    if warehouse_type == "BOOLEAN":
        return "boolean", "BOOLEAN column"
    if _TIME.match(warehouse_type):
        return "timestamp", f"{warehouse_type} column"
    if _INTEGER.match(warehouse_type) or _NUMERIC.match(warehouse_type):
        if _INTEGER.match(warehouse_type) and named_like_id and unique_ratio > 0.5:
            return "id", "excluded: id-like (integer named like an id, mostly unique)"
        if distinct == 2 and s.get("zero_one", 0) >= 0.999:
            return "boolean", "numbers that are only 0 and 1"
        return "scalar", f"{warehouse_type} column"
    if warehouse_type == "VARCHAR":
        if s["email"] >= 0.9:
            return "email", "values look like email addresses"
        if distinct == 2 and s["boolean_words"] >= 0.999:
            return "boolean", "yes/no style values"
        if unique_ratio >= 0.95 and s["avg_words"] < 1.5 and nonnull >= 20:
            return "id", "excluded: id-like (unique strings without spaces)"
        if s["avg_words"] >= 4 or (s["avg_length"] >= 30 and s["avg_words"] >= 2):
            return "text", "free text (long values with many words)"
        return "category", "short labels"
    return "unsupported", f"excluded: type {warehouse_type} has no encoder yet"


def profiles_table(profiles: list[ColumnProfile]) -> pa.Table:
    """`ml.column_profile` rows."""
    rows = [asdict(p) for p in profiles]
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
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)
