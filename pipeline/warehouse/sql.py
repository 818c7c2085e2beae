"""SQL text: quoted identifiers and literals, table names. Pure strings: no connection."""

from __future__ import annotations

import re

INTEGER_TYPE = re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$")
"""DuckDB's integer types (what a key of integers can be)."""


def quote(identifier: str) -> str:
    """Quote one SQL identifier (never splice names into SQL unquoted)."""
    return '"' + identifier.replace('"', '""') + '"'


def table_parts(table: str) -> list[str]:
    """`schema.table` -> its names. Parts may be double-quoted like SQL (`"my schema"."a.b"`,
    `""` for a quote inside), so any name can be spelled."""
    parts, current, i, quoted = [], "", 0, False
    while i < len(table):
        char = table[i]
        if quoted:
            if char == '"' and table[i + 1 : i + 2] == '"':
                current, i = current + '"', i + 2
                continue
            if char == '"':
                quoted = False
            else:
                current += char
        elif char == '"':
            quoted = True
        elif char == ".":
            parts.append(current)
            current = ""
        else:
            current += char
        i += 1
    if quoted:
        raise ValueError(f"table name {table!r} has an unclosed double quote")
    return [*parts, current]


def qualified(table: str) -> str:
    """Quote a possibly schema-qualified table name written as `schema.table`."""
    return ".".join(quote(part) for part in table_parts(table))


def literal(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def split_table(table: str) -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name lives in `main`."""
    parts = table_parts(table)
    if len(parts) == 1:
        return "main", parts[0]
    return parts[-2], parts[-1]


def lowest_hash_rows(key_columns: list[str], rows: int, seed: int | None = None) -> str:
    """SQL `order by ... limit rows` keeping the `rows` rows whose key (with `seed`) hashes
    lowest: a deterministic sample, the same rows for the same data."""
    keys = ", ".join(quote(k) for k in key_columns)
    hashed = keys if seed is None else f"{keys}, {int(seed)}"
    return f"order by hash({hashed}), {keys} limit {int(rows)}"
