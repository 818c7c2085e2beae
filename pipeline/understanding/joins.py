"""Checks of the relationships between spaces (children 1:N, references N:1): key types,
coverage both ways, orphans and NULL foreign keys with examples, duplicated parent keys,
declared vs observed cardinality, distribution shift, and rows left out by `as_of`.

Results become `ml.join_report` rows; an `error` status blocks training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pyarrow as pa

from pipeline.errors import JoinValidationError
from pipeline.spec import Spec
from pipeline.understanding.distribution_shift import distribution_shift
from pipeline.warehouse.connection import Connection, table_columns
from pipeline.warehouse.sql import INTEGER_TYPE, qualified, quote

WARN_COVERAGE = 0.95
WARN_KL = 1.0
N_EXAMPLES = 3


@dataclass(frozen=True)
class Link:
    """One relationship as the spec declares it: `child.foreign_key` -> `parent.parent_key`."""

    place: str
    parent: str
    child: str
    kind: str
    foreign_key: tuple[str, ...]
    parent_key: tuple[str, ...]
    declared: str

    def condition(self, child: str = "c", parent: str = "p") -> str:
        """SQL join condition between a child row (alias `child`) and its parent row."""
        return " and ".join(
            f"{child}.{quote(f)} = {parent}.{quote(k)}"
            for f, k in zip(self.foreign_key, self.parent_key, strict=True)
        )


@dataclass(frozen=True)
class JoinCheck:
    """The health of one relationship: `child.foreign_key` -> `parent.key`.

    `coverage`: share of child rows (with a key) that find their parent; `parent_coverage`:
    share of parents with at least one child. `kl_shift`: how differently parents with and
    without children are distributed (max over `kl_column`'s columns, nats).
    """

    place: str
    parent: str
    child: str
    kind: str
    foreign_key: str
    coverage: float | None
    parent_coverage: float | None
    orphans: int | None
    null_keys: int | None
    parent_key_type: str
    foreign_key_type: str
    declared_cardinality: str
    observed_cardinality: str | None
    kl_shift: float | None
    status: str
    message: str
    orphan_examples: list[str] = field(default_factory=list)
    null_key_examples: list[str] = field(default_factory=list)
    duplicated_parent_keys: int | None = None
    kl_column: str | None = None
    excluded_by_as_of: int | None = None

    @property
    def name(self) -> str:
        return f"{self.parent}__{self.child}"

    @property
    def blocking(self) -> bool:
        return self.status == "error"


def links_of(spec: Spec, space: str | None = None) -> list[Link]:
    """Every children and references link in the spec, or only those `space` reads."""
    links = []
    for name, space_spec in spec.spaces.items():
        if space is not None and name != space:
            continue
        for i, child in enumerate(space_spec.children):
            links.append(
                Link(
                    place=f"spaces.{name}.children[{i}]",
                    parent=name,
                    child=child.space,
                    kind="children",
                    foreign_key=tuple(child.foreign_key_columns),
                    parent_key=tuple(space_spec.key_columns),
                    declared=child.cardinality,
                )
            )
        for i, ref in enumerate(space_spec.references):
            links.append(
                Link(
                    place=f"spaces.{name}.references[{i}]",
                    parent=ref.space,
                    child=name,
                    kind="references",
                    foreign_key=tuple(ref.foreign_key_columns),
                    parent_key=tuple(spec.spaces[ref.space].key_columns),
                    declared=ref.cardinality,
                )
            )
    return links


def validate_joins(con: Connection, spec: Spec, space: str | None = None) -> list[JoinCheck]:
    """One JoinCheck per link in the spec (or per link `space` reads)."""
    return [_check_link(con, spec, link) for link in links_of(spec, space)]


def key_family(duckdb_type: str) -> str:
    """Types a key and a foreign key may differ in and still join (integers; text and UUID)."""
    if INTEGER_TYPE.match(duckdb_type):
        return "integer"
    if duckdb_type in ("VARCHAR", "UUID"):
        return "string"
    return duckdb_type


def _check_link(con: Connection, spec: Spec, link: Link) -> JoinCheck:
    parent, child, foreign_key = link.parent, link.child, link.foreign_key
    parent_space, child_space = spec.spaces[parent], spec.spaces[child]
    parent_types = table_columns(con, parent_space.table)
    child_types = table_columns(con, child_space.table)
    key_types = [parent_types.get(k, "?") for k in link.parent_key]
    fk_types = [child_types.get(f, "?") for f in foreign_key]
    common = dict(
        place=link.place,
        parent=parent,
        child=child,
        kind=link.kind,
        foreign_key=", ".join(foreign_key),
        parent_key_type=", ".join(key_types),
        foreign_key_type=", ".join(fk_types),
        declared_cardinality=link.declared,
    )
    mismatched = [
        (f, ft, k, kt)
        for f, ft, k, kt in zip(foreign_key, fk_types, link.parent_key, key_types, strict=True)
        if key_family(ft) != key_family(kt)
    ]
    if mismatched:
        f, ft, k, kt = mismatched[0]
        return JoinCheck(
            **common,
            coverage=None,
            parent_coverage=None,
            orphans=None,
            null_keys=None,
            observed_cardinality=None,
            kl_shift=None,
            status="error",
            message=(
                f"key types differ: {child}.{f} is {ft} but {parent}.{k} is {kt} -> cast it in "
                f"the staging model of {child_space.table}: cast({quote(f)} as {kt})"
            ),
        )
    parent_table, child_table = qualified(parent_space.table), qualified(child_space.table)
    on = link.condition()
    fk_null = " or ".join(f"c.{quote(f)} is null" for f in foreign_key)
    fk_list = ", ".join(f"c.{quote(f)}" for f in foreign_key)
    row = con.execute(
        f"""
        with links as (
            select ({fk_null}) as fk_null,
                   exists (select 1 from {parent_table} p where {on}) as matched
            from {child_table} c
        )
        select count(*) filter (where fk_null),
               count(*) filter (where not fk_null and not matched),
               count(*) filter (where matched),
               count(*) filter (where not fk_null)
        from links
        """
    ).fetchone()
    null_keys, orphans, matched, with_key = (int(v) for v in row)
    parent_keys = ", ".join(quote(k) for k in link.parent_key)
    duplicated = con.execute(
        f"select count(*) from (select {parent_keys} from {parent_table} "
        "group by all having count(*) > 1)"
    ).fetchone()[0]
    parents_linked, max_per_parent = con.execute(
        f"""
        select count(*), coalesce(max(n), 0) from (
            select {fk_list}, count(*) as n from {child_table} c
            where not ({fk_null}) group by all
        ) c
        where exists (select 1 from {parent_table} p where {on})
        """
    ).fetchone()
    n_parents = con.execute(f"select count(*) from {parent_table}").fetchone()[0]
    coverage = matched / with_key if with_key else 0.0
    parent_coverage = parents_linked / n_parents if n_parents else 0.0
    observed = ("1:N" if link.kind == "children" else "N:1") if max_per_parent > 1 else "1:1"
    orphan_examples = _examples(
        con,
        f"select distinct {fk_list} from {child_table} c where not ({fk_null}) "
        f"and not exists (select 1 from {parent_table} p where {on}) order by all",
    )
    child_keys = ", ".join(f"c.{quote(k)}" for k in child_space.key_columns)
    null_key_examples = _examples(
        con, f"select {child_keys} from {child_table} c where {fk_null} order by all"
    )
    kl, kl_column = distribution_shift(con, spec, link)
    excluded_by_as_of = _excluded_by_as_of(con, spec, link)

    status, problems = "ok", []
    if duplicated:
        status = "error"
        problems.append(
            f"{duplicated} {parent} key value(s) appear more than once in {parent_space.table}, "
            "so joins would multiply rows -> deduplicate it in staging"
        )
    if orphans:
        problems.append(
            f"{orphans} {child} row(s) point to no {parent} row (e.g. {', '.join(orphan_examples)})"
        )
    if null_keys:
        problems.append(
            f"{null_keys} {child} row(s) have a NULL {', '.join(foreign_key)} "
            f"(e.g. {child} {', '.join(null_key_examples)})"
        )
    if with_key == 0:
        status = "error"
        problems.append(f"no {child} row has a {', '.join(foreign_key)} value")
    elif matched == 0:
        status = "error"
        problems.append(
            f"no {child} row finds a {parent} row -> check that {child}.{', '.join(foreign_key)} "
            f"holds {parent} keys"
        )
    elif coverage < spec.min_join_coverage:
        status = "error"
        problems.append(
            f"only {coverage:.0%} of {child} rows find their {parent} row "
            f"(min_join_coverage is {spec.min_join_coverage:.0%}) -> check the foreign key"
        )
    elif coverage < WARN_COVERAGE or null_keys:
        status = "warn" if status == "ok" else status
        if coverage < WARN_COVERAGE:
            problems.append(
                f"only {coverage:.0%} of {child} rows find a {parent} row: a filtered {parent} "
                f"table is fine (the rest are not used); if it is not filtered, check the foreign "
                f"key (set min_join_coverage to make low coverage stop training)"
            )
    if link.declared == "1:1" and max_per_parent > 1:
        status = "error"
        problems.append(
            f"declared 1:1 but up to {max_per_parent} {child} rows share one {parent} "
            "-> declare the relationship 1:N (children) / N:1 (references), or deduplicate"
        )
    if kl is not None and kl > WARN_KL:
        status = "warn" if status == "ok" else status
        problems.append(
            f"{parent} rows with and without {child} differ (KL {kl:.2f} on {kl_column}); "
            "rows without children are not like the others"
        )
    if excluded_by_as_of:
        problems.append(
            f"{excluded_by_as_of} {child} row(s) at or after {parent}'s as_of are left out"
        )
    summary = f"{coverage:.0%} of {child} rows find a {parent}; {parent_coverage:.0%} of {parent} "
    summary += f"rows have {child}"
    message = "; ".join(problems) if problems else "ok"
    return JoinCheck(
        **common,
        coverage=coverage,
        parent_coverage=parent_coverage,
        orphans=orphans,
        null_keys=null_keys,
        observed_cardinality=observed,
        kl_shift=kl,
        status=status,
        message=f"{message} ({summary})",
        orphan_examples=orphan_examples,
        null_key_examples=null_key_examples,
        duplicated_parent_keys=int(duplicated),
        kl_column=kl_column,
        excluded_by_as_of=excluded_by_as_of,
    )


def _examples(con: Connection, query: str) -> list[str]:
    rows = con.execute(f"{query} limit {N_EXAMPLES}").fetchall()
    return [str(r[0] if len(r) == 1 else tuple(r))[:60] for r in rows]


def _excluded_by_as_of(con: Connection, spec: Spec, link: Link) -> int | None:
    """Child rows that are never aggregated because they are not before the parent's as_of
    (a NULL time counts as not before)."""
    parent_space, child_space = spec.spaces[link.parent], spec.spaces[link.child]
    if link.kind != "children" or not parent_space.as_of or not child_space.time_column:
        return None
    time, as_of = quote(child_space.time_column), quote(parent_space.as_of)
    return int(
        con.execute(
            f"select count(*) from {qualified(child_space.table)} c "
            f"join {qualified(parent_space.table)} p on {link.condition()} "
            f"where not coalesce(c.{time} < p.{as_of}, false)"
        ).fetchone()[0]
    )


def raise_on_blocking(checks: list[JoinCheck]) -> None:
    """Stop before training when any join check has status error."""
    failed = [c for c in checks if c.blocking]
    if failed:
        lines = "\n".join(
            f"  {c.place} ({c.parent} <- {c.child}.{c.foreign_key}): {c.message}" for c in failed
        )
        raise JoinValidationError(f"join validation failed, training stopped:\n{lines}")


def join_report_table(checks: list[JoinCheck]) -> pa.Table:
    """`ml.join_report` rows."""
    schema = pa.schema(
        [
            ("place", pa.string()),
            ("parent", pa.string()),
            ("child", pa.string()),
            ("kind", pa.string()),
            ("foreign_key", pa.string()),
            ("coverage", pa.float64()),
            ("parent_coverage", pa.float64()),
            ("orphans", pa.int64()),
            ("null_keys", pa.int64()),
            ("parent_key_type", pa.string()),
            ("foreign_key_type", pa.string()),
            ("declared_cardinality", pa.string()),
            ("observed_cardinality", pa.string()),
            ("kl_shift", pa.float64()),
            ("status", pa.string()),
            ("message", pa.string()),
            ("orphan_examples", pa.list_(pa.string())),
            ("null_key_examples", pa.list_(pa.string())),
            ("duplicated_parent_keys", pa.int64()),
            ("kl_column", pa.string()),
            ("excluded_by_as_of", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([asdict(c) for c in checks], schema=schema)
