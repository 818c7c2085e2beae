"""Which statistics of a parent's child rows and referenced rows a space reads: the plan.

Per child link: the child count; sum, mean, min, max and std of numbers; recency and span
of timestamps; the null share of every input; distinct count and shares of the most
frequent labels of small categories; one level down the same over a parent's grandchildren
plus stacked ones. References are read through (Featuretools' "lookup, then aggregate"):
a child's referenced row's columns summarised over the parent's children
(`orders/products/price/mean`), and each of the space's own references with its row's
columns (`stores/size`, `stores/kind/is/mall`), that row's children's statistics
(`stores/staff/count`) and how many rows reference it (`stores/visits/count`).

The plan (which columns, which labels, the reference time) and the normalisation
(`ChildStatistics`) are fitted once and saved with the space, like a codec: new rows get the
same features. Features are addressed `<child>/<column>/<statistic>`,
`<child>/<grandchild>/<column>/<statistic>` and `<reference>/...`; `pipeline.spaces.child_features`
names them and gives their SQL, `pipeline.spaces.child_stats` computes them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

from pipeline.encoders import column_type
from pipeline.encoders.base import render
from pipeline.spec import Spec
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import Connection
from pipeline.warehouse.sql import qualified, quote

TOP_LABELS = 5
MAX_LABEL_DISTINCT = 50
NUMERIC_STATISTICS = ("sum", "mean", "min", "max", "std")
LABEL_TYPES = ("category", "ordinal", "boolean")
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class ColumnPlan:
    """One column of a child table and how it is summarised."""

    column: str
    kind: str
    """`number`, `time` or `label`."""
    type: str
    labels: tuple[str, ...] = ()
    reference_time: float = 0.0
    """For `time` without a parent `as_of`: recency is measured from this epoch second."""


def _columns_from_state(state: list[dict]) -> tuple[ColumnPlan, ...]:
    return tuple(ColumnPlan(**{**c, "labels": tuple(c["labels"])}) for c in state)


@dataclass(frozen=True)
class LookupPlan:
    """A referenced table's columns, read through a reference (N:1) of `foreign_key`."""

    space: str
    table: str
    key: tuple[str, ...]
    foreign_key: tuple[str, ...]
    columns: tuple[ColumnPlan, ...]

    @classmethod
    def from_state(cls, state: dict) -> LookupPlan:
        return cls(
            space=state["space"],
            table=state["table"],
            key=tuple(state["key"]),
            foreign_key=tuple(state["foreign_key"]),
            columns=_columns_from_state(state["columns"]),
        )


@dataclass(frozen=True)
class LinkPlan:
    """The statistics of one child link (and its own children, one level down, and the
    tables it references)."""

    space: str
    table: str
    key: tuple[str, ...]
    foreign_key: tuple[str, ...]
    time_column: str | None
    columns: tuple[ColumnPlan, ...]
    children: tuple[LinkPlan, ...] = field(default_factory=tuple)
    lookups: tuple[LookupPlan, ...] = field(default_factory=tuple)

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> LinkPlan:
        return cls(
            space=state["space"],
            table=state["table"],
            key=tuple(state["key"]),
            foreign_key=tuple(state["foreign_key"]),
            time_column=state["time_column"],
            columns=_columns_from_state(state["columns"]),
            children=tuple(cls.from_state(c) for c in state["children"]),
            lookups=tuple(LookupPlan.from_state(s) for s in state.get("lookups", [])),
        )


@dataclass(frozen=True)
class ReferencePlan:
    """One reference of the space itself, read through: the referenced row's columns, its
    own children's statistics, and how many rows of the space (`referrers`, its table
    `referrer_table`) reference the same row."""

    lookup: LookupPlan
    children: tuple[LinkPlan, ...]
    referrers: str
    referrer_table: str
    time_column: str | None
    """The space's own time column: only earlier rows count as other referrers."""

    def state(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> ReferencePlan:
        return cls(
            lookup=LookupPlan.from_state(state["lookup"]),
            children=tuple(LinkPlan.from_state(c) for c in state["children"]),
            referrers=state["referrers"],
            referrer_table=state["referrer_table"],
            time_column=state["time_column"],
        )


def plan_statistics(
    con: Connection,
    spec: Spec,
    parent: str,
    profiles: dict[str, list[ColumnProfile]],
) -> list[LinkPlan]:
    """One plan per child link of `parent`, from the children's profiles (`profiles[space]`)."""
    space = spec.spaces[parent]
    return [
        _plan_link(con, spec, child.space, child.foreign_key_columns, profiles, depth=1)
        for child in space.children
    ]


def plan_references(
    con: Connection,
    spec: Spec,
    name: str,
    profiles: dict[str, list[ColumnProfile]],
) -> list[ReferencePlan]:
    """One plan per reference of space `name` (see `ReferencePlan`)."""
    space = spec.spaces[name]
    return [
        ReferencePlan(
            lookup=_plan_lookup(con, spec, ref.space, ref.foreign_key_columns, profiles),
            children=tuple(
                _plan_link(con, spec, c.space, c.foreign_key_columns, profiles, depth=2)
                for c in spec.spaces[ref.space].children
            ),
            referrers=name,
            referrer_table=space.table,
            time_column=space.time_column,
        )
        for ref in space.references
    ]


def referenced_spaces(spec: Spec, name: str) -> set[str]:
    """Every space whose profile the statistics of `name` are planned from."""
    space = spec.spaces[name]
    out = set()
    for child in space.children:
        out |= {child.space} | {r.space for r in spec.spaces[child.space].references}
        out |= {g.space for g in spec.spaces[child.space].children}
    for ref in space.references:
        out |= {ref.space} | {c.space for c in spec.spaces[ref.space].children}
    return out


def _plan_lookup(
    con: Connection,
    spec: Spec,
    name: str,
    foreign_key: list[str],
    profiles: dict[str, list[ColumnProfile]],
) -> LookupPlan:
    space = spec.spaces[name]
    columns = []
    for profile in profiles.get(name, []):
        if profile.is_input and profile.column not in space.key_columns:
            plan = _plan_column(con, space.table, profile)
            if plan is not None:
                columns.append(plan)
    return LookupPlan(
        space=name,
        table=space.table,
        key=tuple(space.key_columns),
        foreign_key=tuple(foreign_key),
        columns=tuple(columns),
    )


def _plan_link(
    con: Connection,
    spec: Spec,
    name: str,
    foreign_key: list[str],
    profiles: dict[str, list[ColumnProfile]],
    depth: int,
) -> LinkPlan:
    space = spec.spaces[name]
    columns = []
    # a child's reference to a small lookup table (species, product category) is a label too
    references = {
        r.foreign_key_columns[0] for r in space.references if len(r.foreign_key_columns) == 1
    }
    for profile in profiles.get(name, []):
        if profile.column in references and profile.distinct_count <= MAX_LABEL_DISTINCT:
            profile = dataclasses.replace(
                profile, role="input", detected_type="category", excluded=False
            )
        if not profile.is_input:
            continue
        plan = _plan_column(con, space.table, profile)
        if plan is not None:
            columns.append(plan)
    grandchildren = lookups = ()
    if depth == 1:
        grandchildren = tuple(
            _plan_link(con, spec, g.space, g.foreign_key_columns, profiles, depth=2)
            for g in space.children
        )
        lookups = tuple(
            _plan_lookup(con, spec, r.space, r.foreign_key_columns, profiles)
            for r in space.references
        )
    return LinkPlan(
        space=name,
        table=space.table,
        key=tuple(space.key_columns),
        foreign_key=tuple(foreign_key),
        time_column=space.time_column,
        columns=tuple(columns),
        children=grandchildren,
        lookups=lookups,
    )


def _plan_column(con: Connection, table: str, profile: ColumnProfile) -> ColumnPlan | None:
    kind = {"scalar": "number", "timestamp": "time"}.get(profile.detected_type)
    if profile.detected_type in LABEL_TYPES and profile.distinct_count <= MAX_LABEL_DISTINCT:
        kind = "label"
    if kind is None:
        return None
    plan = ColumnPlan(profile.column, kind, profile.detected_type)
    value = value_sql(plan, "c")
    if kind == "label":
        rows = con.execute(
            f"select __label, count(*) as __n from (select {value} as __label "
            f"from {qualified(table)} c) where __label is not null "
            f"group by __label order by __n desc, __label limit {TOP_LABELS}"
        ).fetchall()
        return ColumnPlan(plan.column, kind, plan.type, labels=tuple(str(r[0]) for r in rows))
    if kind == "time":
        latest = con.execute(f"select max({value}) from {qualified(table)} c").fetchone()[0]
        return ColumnPlan(plan.column, kind, plan.type, reference_time=float(latest or 0.0))
    return plan


def value_sql(plan: ColumnPlan, alias: str, present: bool = True) -> str:
    """The column's value as a double (numbers, epoch seconds) or a trimmed lower-case label."""
    if not present:
        return "null"
    column = f"{alias}.{quote(plan.column)}"
    if plan.kind == "label":
        return f"nullif(lower(trim(cast({column} as varchar))), '')"
    return f"({render(column_type(plan.type).read_sql, column=column)})"
