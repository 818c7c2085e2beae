"""Relations between tables: declared foreign keys first, then columns whose name and type
point at another table's key (`customer_id` -> `customers.customer_id`, `customerID` ->
`Customer.customerID`, `o_custkey` -> `customer.c_custkey`, `customer_id` -> `customers.id`),
kept when most of their values are found in that key (an inclusion test on a sample)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.discovery.catalog import DeclaredForeignKey, Table
from pipeline.discovery.names import folded, says_key, table_stems, without_prefix
from pipeline.understanding.joins import key_family
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import quote

MIN_COVERAGE = 0.8
"""Share of a column's distinct values (in the sample) that must be keys of the other table."""
SAMPLE_ROWS = 50_000
"""Distinct values of a pointing column the inclusion test looks up (a sample by hash)."""
GENERIC = {"id", "key", "code", "no", "number", "nr"}


@dataclass(frozen=True)
class Relation:
    """`table.columns` holds keys of `referenced`: many rows of `table` per referenced row."""

    table: str
    columns: tuple[str, ...]
    referenced: str
    key: tuple[str, ...]
    coverage: float | None
    """Share of the sampled distinct values found in the key (None: declared, not tested)."""
    how: str


def name_rule(column: str, table: Table, key: str) -> tuple[int, str] | None:
    """How strongly `column`'s name points at `table`'s single-column `key` (lower is
    stronger) and in which words, or None."""
    word, target = folded(column), folded(key)
    stems = table_stems(table.name)
    if target not in GENERIC and word == target:
        return 0, f"same name as {table.name}.{key}"
    if any(word in (stem, *(stem + s for s in GENERIC)) for stem in stems):
        return 1, f"named after {table.name}"
    short, short_target = folded(without_prefix(column)), folded(without_prefix(key))
    if not says_key(key):
        return None
    if (short, short_target) != (word, target) and short == short_target and short not in GENERIC:
        return 2, f"same name as {table.name}.{key} after its prefix"
    if target not in GENERIC and len(target) >= 4 and word.endswith(target):
        return 3, f"ends with {table.name}.{key}"
    return None


def find_relations(
    con: Connection,
    tables: list[Table],
    keys: dict[str, list[str]],
    declared: list[DeclaredForeignKey],
) -> tuple[list[Relation], list[str]]:
    """Relations between `tables` (`keys`: address -> key columns), each column (or set of
    columns, for a key of several) pointing at one table at most, and notes on the candidates
    that were tested and dropped."""
    found: list[Relation] = []
    notes: list[str] = []
    taken: set[tuple[str, str]] = set()
    for fk in declared:
        key = keys.get(fk.referenced, [])
        if sorted(fk.key) != sorted(key):
            notes.append(
                f"{fk.table}.{', '.join(fk.columns)} -> {fk.referenced}: declared on "
                f"{', '.join(fk.key)}, not on its key ({', '.join(key)}); left out, as a space "
                "is joined on the key"
            )
            continue
        columns = tuple(fk.columns[fk.key.index(k)] for k in key)  # in the key's order
        found.append(Relation(fk.table, columns, fk.referenced, tuple(key), None, "declared"))
        taken |= {(fk.table, c) for c in fk.columns}
    for table in tables:
        own_key = keys.get(table.address, [])
        for column in table.columns:
            if (table.address, column) in taken:
                continue
            candidates = []
            for other in tables:
                other_key = keys.get(other.address, [])
                if other is table or len(other_key) != 1:
                    continue
                rule = _rule(table, column, other, other_key[0])
                if rule is None or (own_key == [column] and rule[0] != 0):
                    continue  # a table's own key points elsewhere only under the same name
                candidates.append((rule, other, (column,), tuple(other_key)))
            found += _best(con, table, candidates, notes)
        for other in tables:
            other_key = keys.get(other.address, [])
            if other is table or len(other_key) < 2:
                continue
            columns = _columns_for(table, other, other_key)
            if columns and not any((table.address, c) in taken for c in columns):
                rule = (max(r[0] for _, r in columns), "named like each column of its key")
                pointing = tuple(c for c, _ in columns)
                if list(pointing) != own_key:
                    candidate = (rule, other, pointing, tuple(other_key))
                    found += _best(con, table, [candidate], notes)
    return _one_way(found, {t.address: t.rows for t in tables}, notes), notes


def _rule(table: Table, column: str, other: Table, key: str) -> tuple[int, str] | None:
    if key_family(other.columns[key]) != key_family(table.columns[column]):
        return None
    return name_rule(column, other, key)


def _columns_for(table: Table, other: Table, key: list[str]) -> list[tuple[str, tuple]] | None:
    """A column of `table` named like each column of `other`'s key (distinct columns), or None."""
    chosen: list[tuple[str, tuple]] = []
    for part in key:
        matches = [
            (rule, column)
            for column in table.columns
            if column not in {c for c, _ in chosen}
            and (rule := _rule(table, column, other, part)) is not None
        ]
        if not matches:
            return None
        rule, column = min(matches)
        chosen.append((column, rule))
    return chosen


def _best(con: Connection, table: Table, candidates: list, notes: list[str]) -> list[Relation]:
    """The candidate (rule, other table, columns, key) whose values are found in its key, the
    strongest name rule first, then the highest coverage; [] when none is."""
    tested = []
    for (strength, how), other, columns, key in sorted(
        candidates, key=lambda c: (c[0][0], c[1].address)
    ):
        coverage = inclusion(con, table, list(columns), other, list(key))
        if coverage is None:
            continue
        where = f"{table.address}.{', '.join(columns)} -> {other.address}.{', '.join(key)}"
        if coverage < MIN_COVERAGE:
            notes.append(f"{where} left out: {coverage:.0%} of its values are keys there ({how})")
            continue
        tested.append((strength, -coverage, other.address, columns, key, coverage, how))
    if not tested:
        return []
    _, _, referenced, columns, key, coverage, how = min(tested)
    return [Relation(table.address, columns, referenced, key, coverage, how)]


def _one_way(found: list[Relation], rows: dict[str, int], notes: list[str]) -> list[Relation]:
    """Two tables whose keys point at each other (a 1:1 extension table and its main table):
    only the larger table is pointed at."""
    kept = []
    for relation in found:
        back = [
            r for r in found if r.table == relation.referenced and r.referenced == relation.table
        ]
        larger = (rows[relation.referenced], relation.referenced)
        if back and any((rows[r.referenced], r.referenced) > larger for r in back):
            notes.append(
                f"{relation.table}.{', '.join(relation.columns)} -> {relation.referenced} left "
                f"out: {relation.referenced} points back at {relation.table}, the larger table"
            )
            continue
        kept.append(relation)
    return kept


def inclusion(
    con: Connection, table: Table, columns: list[str], referenced: Table, key: list[str]
) -> float | None:
    """Share of the distinct values of `table.columns` without a null (at most SAMPLE_ROWS of
    them, chosen by a hash of the values: the same data gives the same sample, whatever the
    threads) that are values of `referenced.key`; None when there is no value."""
    names = ", ".join(f"{quote(c)} as v{i}" for i, c in enumerate(columns))
    keys = ", ".join(f"{quote(c)} as k{i}" for i, c in enumerate(key))
    values = ", ".join(f"v{i}" for i in range(len(columns)))
    not_null = " and ".join(f"v{i} is not null" for i in range(len(columns)))
    match = " and ".join(f"v.v{i} = k.k{i}" for i in range(len(columns)))
    total, found = con.execute(
        f"with v as (select distinct {names} from {table.sql}), "
        f"s as (select * from v where {not_null} order by hash({values}), {values} "
        f"limit {SAMPLE_ROWS}) "
        f"select count(*), count(k.k0) from s v left join "
        f"(select distinct {keys} from {referenced.sql}) k on {match}"
    ).fetchone()
    return None if not total else found / total
