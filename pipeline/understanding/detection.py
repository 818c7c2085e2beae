"""Column type detection: statistics measured in SQL, then one decision per column with the
evidence behind it (what share of values each type's pattern matched, the id score).

Types declare their own hints (`pipeline.encoders`); this module weighs them.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from pipeline.encoders import column_types
from pipeline.encoders.base import ColumnType, render
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import INTEGER_TYPE, lowest_hash_rows, qualified, quote

SAMPLE_ROWS = 10_000
CLEAR_SHARE = 0.9
MAJORITY_SHARE = 0.5
MAX_LABELS_LISTED = 30
ID_THRESHOLD = 0.6
ID_WEIGHTS = {"uniqueness": 0.35, "pattern": 0.3, "semantic": 0.2, "name": 0.15}
ID_PATTERNS = (
    r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",  # UUID / GUID
    r"^[0-9a-f]{16,}$",  # hex hash (md5, sha1, sha256, ...)
    r"^[0-9]{15,20}$",  # snowflake-style numeric id
    r"^[0-9a-hjkmnp-tv-z]{26}$",  # ULID
)
CODE_PATTERN = r"^[a-z]{0,6}[-_]?[0-9]{3,}$"  # SKU-00042, INV_1234: half an id pattern
OPAQUE_TOKEN = (  # letters and digits run together, 20+ characters, no word breaks
    "(regexp_matches(lower(v), '^[a-z0-9_-]{20,}$') and regexp_matches(v, '[0-9]') "
    "and regexp_matches(lower(v), '[a-z]'))"
)
ID_NAME = re.compile(
    r"(^|_)(id|uuid|guid|key|hash|token|sha\d*|md5|checksum|fingerprint|ulid)$|[a-z]Id$"
)
INTERNAL_NAME = re.compile(
    r"^(_airbyte_|_fivetran_|_dlt_|_sdc_|_peerdb_|__)"
    r"|^(_?loaded_at|_?ingested_at|_?etl_\w+|dbt_scd_id|dbt_updated_at|dbt_valid_from"
    r"|dbt_valid_to|_row_hash|_file_name|_source_file)$",
    re.IGNORECASE,
)


@dataclass
class ColumnStats:
    rows: int
    nonnull: int
    distinct: int
    distinct_lower: int = 0
    avg_length: float = 0.0
    avg_words: float = 0.0
    shares: dict[str, float] = field(default_factory=dict)
    id_pattern: float = 0.0
    sequence: bool = False
    labels: list[str] | None = None
    sample_values: list[str] = field(default_factory=list)


@dataclass
class Decision:
    """A column's type and whether it is used; `reason` says why, `evidence` shows the
    numbers behind it."""

    type: str
    excluded: bool
    reason: str
    evidence: dict


def non_blank(column: str) -> str:
    """A column's value as trimmed VARCHAR, NULL when blank (SQL)."""
    return f"nullif(trim(cast({quote(column)} as varchar)), '')"


SAMPLE_TABLE = "__profile_sample"


def _create_sample(con: Connection, table: str, rows: int, key_columns: list[str]) -> str:
    """The table itself, or a temp table holding a deterministic sample of SAMPLE_ROWS rows
    (the same rows every run: the ones whose key hashes lowest) when it is larger."""
    if rows <= SAMPLE_ROWS:
        return qualified(table)
    con.execute(
        f"create or replace temp table {SAMPLE_TABLE} as select * from {qualified(table)} "
        f"{lowest_hash_rows(key_columns, SAMPLE_ROWS)}"
    )
    return SAMPLE_TABLE


def column_statistics(
    con: Connection, table: str, columns: dict[str, str], key_columns: list[str]
) -> dict[str, ColumnStats]:
    """Counts over the whole table; pattern shares over a sample of non-null values."""
    parts = ["count(*)"]
    for column, warehouse_type in columns.items():
        q = quote(column)
        nonnull = f"count({non_blank(column)})" if warehouse_type == "VARCHAR" else f"count({q})"
        parts += [nonnull, f"count(distinct {q})"]
    counts = con.execute(f"select {', '.join(parts)} from {qualified(table)}").fetchone()
    rows = int(counts[0])
    stats = {
        column: ColumnStats(rows, int(counts[1 + 2 * i]), int(counts[2 + 2 * i]))
        for i, column in enumerate(columns)
    }
    source = _create_sample(con, table, rows, key_columns)
    try:
        _measure_patterns(con, table, source, columns, stats)
    finally:
        con.execute(f"drop table if exists {SAMPLE_TABLE}")
    return stats


def _measure_patterns(
    con: Connection,
    table: str,
    source: str,
    columns: dict[str, str],
    stats: dict[str, ColumnStats],
) -> None:
    for column, warehouse_type in columns.items():
        s = stats[column]
        if s.nonnull == 0:
            continue
        if warehouse_type == "VARCHAR":
            measure = _string_statistics
        elif INTEGER_TYPE.match(warehouse_type):
            measure = _integer_statistics
        else:
            continue
        if not measure(con, source, column, s):
            # A sparse column of a large table can have no value in the sample.
            measure(con, qualified(table), column, s)


def _share(predicate: str) -> str:
    return f"avg(case when {predicate} then 1.0 else 0.0 end)"


def _string_statistics(con, source: str, column: str, s: ColumnStats) -> bool:
    """False (nothing measured) when `source` holds no value of the column."""
    typed = [t for t in column_types() if t.looks_like]
    parts = [
        "count(distinct lower(v))",
        "avg(length(v))",
        "avg(length(v) - length(replace(v, ' ', '')) + 1)",
        _share(
            " or ".join([*(f"regexp_matches(lower(v), '{p}')" for p in ID_PATTERNS), OPAQUE_TOKEN])
        ),
        _share(f"regexp_matches(lower(v), '{CODE_PATTERN}')"),
    ] + [_share(render(t.looks_like, value="v")) for t in typed]
    row = con.execute(
        f"select {', '.join(parts)} from (select {non_blank(column)} as v from {source}) "
        "where v is not null"
    ).fetchone()
    if row[1] is None:
        return False
    s.distinct_lower, s.avg_length, s.avg_words = int(row[0]), float(row[1]), float(row[2])
    s.id_pattern = max(float(row[3]), 0.5 * float(row[4]))
    s.shares = {t.name: round(float(v), 4) for t, v in zip(typed, row[5:], strict=True)}
    _sample_values(con, source, non_blank(column), s)
    if s.distinct <= MAX_LABELS_LISTED:
        s.labels = [
            r[0]
            for r in con.execute(
                f"select distinct {non_blank(column)} as v from {source} where v is not null"
            ).fetchall()
        ]
    return True


def _integer_statistics(con, source: str, column: str, s: ColumnStats) -> bool:
    """False (nothing measured) when `source` holds no value of the column."""
    low_cardinality = [t for t in column_types() if t.looks_like and t.max_distinct]
    q = quote(column)
    parts = [
        f"max({q})::double - min({q})::double + 1",
        _share(f"length(cast(abs({q}) as varchar)) between 15 and 20"),
    ] + [_share(render(t.looks_like, value=f"cast({q} as varchar)")) for t in low_cardinality]
    row = con.execute(f"select {', '.join(parts)} from {source} where {q} is not null").fetchone()
    if row[0] is None:
        return False
    span, snowflake = float(row[0]), float(row[1])
    s.sequence = s.distinct >= 20 and span <= 1.1 * s.distinct
    s.id_pattern = 1.0 if s.sequence else snowflake
    s.shares = {t.name: float(v) for t, v in zip(low_cardinality, row[2:], strict=True)}
    _sample_values(con, source, f"cast({q} as varchar)", s)
    return True


def _sample_values(con, source: str, value: str, s: ColumnStats, n: int = 32) -> None:
    """A fixed sample of distinct values, for the semantic id check of mostly-unique columns."""
    if s.distinct < 0.5 * s.nonnull:
        return
    s.sample_values = [
        r[0]
        for r in con.execute(
            f"select distinct {value} as v from {source} where v is not null "
            f"order by hash(v), v limit {n}"
        ).fetchall()
    ]


def _by_name(name: str) -> ColumnType:
    return next(t for t in column_types() if t.name == name)


def decide(column: str, warehouse_type: str, s: ColumnStats, role: str) -> Decision:
    """The detected type of one column, and whether it is excluded (and why)."""
    evidence: dict = {"shares": s.shares} if s.shares else {}
    if INTERNAL_NAME.search(column):
        return Decision("id", True, "internal column (loader or ETL metadata)", evidence)
    if s.nonnull == 0:
        return Decision("category", True, "all values are NULL", evidence)
    if s.distinct <= 1:
        return Decision("category", True, "constant (one distinct value)", evidence)
    if warehouse_type == "UUID":
        return Decision("id", True, "UUID column (an identifier, not content)", evidence)
    detected, reason = _pattern_type(warehouse_type, s)
    if detected is None:
        return Decision(
            "unsupported",
            True,
            f"type {warehouse_type} has no encoder; declare a type or cast it in staging",
            evidence,
        )
    label_like = detected in ("category", "text") or (
        detected == "scalar" and INTEGER_TYPE.match(warehouse_type)
    )
    if label_like and role == "input":
        score, parts = id_score(column, s)
        evidence["id_score"] = {"score": round(score, 3), **parts}
        if score >= ID_THRESHOLD:
            evidence["type_if_kept"] = detected
            return Decision(
                "id",
                True,
                f"id-like (score {score:.2f} from {', '.join(k for k, v in parts.items() if v)})",
                evidence,
            )
    return Decision(detected, False, reason, evidence)


def _pattern_type(warehouse_type: str, s: ColumnStats) -> tuple[str | None, str]:
    distinct = s.distinct_lower or s.distinct
    for t in column_types():
        if t.max_distinct and distinct <= t.max_distinct and s.shares.get(t.name, 0) >= 0.999:
            return t.name, f"only {distinct} distinct values, all {t.name}-like"
    if warehouse_type != "VARCHAR":
        native = next(
            (t for t in column_types() if t.native and re.match(t.native, warehouse_type)), None
        )
        return (native.name, f"{warehouse_type} column") if native else (None, "")
    candidates = [
        t for t in column_types() if t.looks_like and not t.max_distinct and t.name in s.shares
    ]
    for t in candidates:
        if s.shares[t.name] >= CLEAR_SHARE:
            return t.name, f"{s.shares[t.name]:.0%} of values look like {t.name}"
    best = max(candidates, key=lambda t: s.shares[t.name], default=None)
    if best is not None and s.shares[best.name] >= MAJORITY_SHARE:
        return best.name, (
            f"mixed: {s.shares[best.name]:.0%} of values look like {best.name}, "
            "the rest are treated as missing"
        )
    if s.labels is not None:
        for t in column_types():
            if t.matches_values and t.matches_values(s.labels):
                return t.name, f"labels on a known {t.name} scale"
    if s.avg_words >= 4 or (s.avg_length >= 30 and s.avg_words >= 2):
        return "text", "free text (long values with many words)"
    return "category", "short labels"


def id_score(column: str, s: ColumnStats) -> tuple[float, dict[str, float]]:
    """Weighted evidence that a column identifies rows rather than describing them:
    uniqueness, an id pattern (UUID, hash, snowflake, sequence), MiniLM similarity of a
    sample to known ids versus words, and the column name. The semantic part is measured
    only when it could change the decision."""
    unique_ratio = s.distinct / s.nonnull if s.nonnull else 0.0
    parts: dict[str, float | None] = {
        "uniqueness": round(float(np.clip((unique_ratio - 0.5) / 0.45, 0, 1)), 3),
        "pattern": round(s.id_pattern, 3),
        "semantic": None,  # None: not measured (it could not change the decision)
        "name": 1.0 if ID_NAME.search(column) else 0.0,
    }
    partial = sum(ID_WEIGHTS[k] * (v or 0.0) for k, v in parts.items())
    could_cross = partial < ID_THRESHOLD <= partial + ID_WEIGHTS["semantic"]
    if could_cross and s.sample_values:
        parts["semantic"] = round(semantic_id_similarity(s.sample_values), 3)
    score = sum(ID_WEIGHTS[k] * (v or 0.0) for k, v in parts.items())
    return score, parts


def _id_prototypes() -> list[str]:
    rng = np.random.default_rng(0)
    uuids = [str(uuid.UUID(bytes=rng.bytes(16))) for _ in range(8)]
    hashes = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(6)]
    short = [hashlib.md5(str(i).encode()).hexdigest()[:12] for i in range(4)]
    numbers = [str(int(rng.integers(10**15, 10**18))) for _ in range(4)]
    return uuids + hashes + short + numbers


WORD_PROTOTYPES = (
    "customer", "product name", "city", "a short description of the item", "monthly plan",
    "Alice", "red", "order", "premium", "London",
)  # fmt: skip


@cache
def _prototype_vectors() -> tuple[np.ndarray, np.ndarray]:
    from pipeline.encoders.text_vectors import encode

    return encode(_id_prototypes()), encode(list(WORD_PROTOTYPES))


def semantic_id_similarity(values: list[str]) -> float:
    """0..1: how much more MiniLM's (static token) vectors see `values` as machine
    identifiers than as words (mean best cosine to id prototypes minus mean best cosine to
    word prototypes, rescaled: UUIDs, session ids and SKU codes score ~0.7, names and words
    ~0)."""
    from pipeline.encoders.text_vectors import encode

    sample = encode([str(v) for v in values])
    ids, words = _prototype_vectors()
    difference = (sample @ ids.T).max(1).mean() - (sample @ words.T).max(1).mean()
    return float(np.clip((difference + 0.2) / 0.6, 0, 1))
