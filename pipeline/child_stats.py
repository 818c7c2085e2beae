"""Statistics of a parent's child rows, computed in DuckDB: what a GROUP BY sees.

Per child link, in one grouped query per level: the child count; sum, mean, min, max and std
of numbers; recency and span of timestamps; the null share of every input; distinct count
and shares of the most frequent labels of small categories. One level down (the child's own
children) the same statistics are taken over all of a parent's grandchildren, plus stacked
ones (mean and max over the children of each child's grandchild count and sums).

The plan (which columns, which labels, the reference time) is fitted once and saved with
the space, like a codec: new rows get the same features. Features are addressed
`<child>/<column>/<statistic>` and `<child>/<grandchild>/<column>/<statistic>`.

References are read through (Featuretools' "lookup, then aggregate"): a child's referenced
row's columns are summarised over the parent's children like the child's own
(`orders/products/price/mean`), and each of the space's own references gives its referenced
row's columns (`stores/size`, `stores/kind/is/mall`), the statistics of that row's own
children (`stores/staff/count`, cut at the space's `as_of`), and how many rows of this
space reference the same row (`stores/visits/count`; rows earlier in time only when the
space has a `time_column`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field

import duckdb
import numpy as np

from pipeline.encoders import column_type
from pipeline.encoders.base import render
from pipeline.profiling import ColumnProfile
from pipeline.spec import SpaceSpec, Spec
from pipeline.warehouse import fetch_arrow, literal, qualified, quote, table_columns

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
    con: duckdb.DuckDBPyConnection,
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
    con: duckdb.DuckDBPyConnection,
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
    con: duckdb.DuckDBPyConnection,
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
    con: duckdb.DuckDBPyConnection,
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


def _plan_column(
    con: duckdb.DuckDBPyConnection, table: str, profile: ColumnProfile
) -> ColumnPlan | None:
    kind = {"scalar": "number", "timestamp": "time"}.get(profile.detected_type)
    if profile.detected_type in LABEL_TYPES and profile.distinct_count <= MAX_LABEL_DISTINCT:
        kind = "label"
    if kind is None:
        return None
    plan = ColumnPlan(profile.column, kind, profile.detected_type)
    value = _value_sql(plan, "c")
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


def _value_sql(plan: ColumnPlan, alias: str, present: bool = True) -> str:
    """The column's value as a double (numbers, epoch seconds) or a trimmed lower-case label."""
    if not present:
        return "null"
    column = f"{alias}.{quote(plan.column)}"
    if plan.kind == "label":
        return f"nullif(lower(trim(cast({column} as varchar))), '')"
    return f"({render(column_type(plan.type).read_sql, column=column)})"


def lookup_names(lookups: list[LookupPlan] | tuple) -> list[str]:
    """How addresses name each referenced table: its space, or `space[foreign key]` when the
    same space is referenced more than once (`airports[origin]`, `airports[destination]`)."""
    counts = Counter(lookup.space for lookup in lookups)
    return [
        lookup.space
        if counts[lookup.space] == 1
        else f"{lookup.space}[{','.join(lookup.foreign_key)}]"
        for lookup in lookups
    ]


def feature_names(plans: list[LinkPlan], references: list[ReferencePlan] | tuple = ()) -> list[str]:
    """Every statistic's address, in the order of `child_statistics` columns."""
    names = []
    for plan in plans:
        names += [name for name, _ in _direct(plan, plan.space, "null", set())]
        for lookup, lookup_name in zip(plan.lookups, lookup_names(plan.lookups), strict=True):
            prefix = f"{plan.space}/{lookup_name}"
            names += [name for name, _ in _direct(lookup, prefix, "null", set(), count=False)]
        for g in plan.children:
            names += [name for name, _ in _direct(g, f"{plan.space}/{g.space}", "null", set())]
    names += [name for plan in plans for g in plan.children for name, _ in _stacked(plan, g, set())]
    prefixes = lookup_names([r.lookup for r in references])
    for reference, space in zip(references, prefixes, strict=True):
        names += [name for name, _ in _lookup_values(reference.lookup, space, "null", set())]
        for child in reference.children:
            names += [name for name, _ in _direct(child, f"{space}/{child.space}", "null", set())]
        names.append(f"{space}/{reference.referrers}/count")
    return names


def _direct(
    plan: LinkPlan | LookupPlan,
    prefix: str,
    now: str,
    missing: set[str],
    alias: str = "c",
    count: bool = True,
) -> list[tuple[str, str]]:
    """(name, aggregate SQL) over the rows of `plan`'s table aliased `alias`, grouped by
    parent; `now` is the SQL of the time recency is measured from (NULL: the plan's own)."""
    out = [(f"{prefix}/count", "count(*)")] if count else []
    for column in plan.columns:
        value = _value_sql(column, alias, present=column.column not in missing)
        base = f"{prefix}/{column.column}"
        out.append((f"{base}/null_share", f"avg(case when {value} is null then 1.0 else 0.0 end)"))
        if column.kind == "number":
            out += [
                (f"{base}/sum", f"sum({value})"),
                (f"{base}/mean", f"avg({value})"),
                (f"{base}/min", f"min({value})"),
                (f"{base}/max", f"max({value})"),
                (f"{base}/std", f"stddev_samp({value})"),
            ]
        elif column.kind == "time":
            reference = f"coalesce({now}, {column.reference_time!r})"
            out += [
                (f"{base}/recency_days", f"({reference} - max({value})) / {SECONDS_PER_DAY}"),
                (f"{base}/span_days", f"(max({value}) - min({value})) / {SECONDS_PER_DAY}"),
            ]
        else:
            out.append((f"{base}/distinct", f"count(distinct {value})"))
            out += [
                (
                    f"{base}/share/{label}",
                    f"avg(case when {value} = {literal(label)} then 1.0 else 0.0 end)",
                )
                for label in column.labels
            ]
    return out


def _lookup_values(
    plan: LookupPlan, prefix: str, now: str, missing: set[str], alias: str = "s"
) -> list[tuple[str, str]]:
    """(name, SQL) of one referenced row's columns, as aggregates over the single row a
    reference finds: numbers as they are, times as days before `now`, labels one-hot."""
    out = []
    for column in plan.columns:
        value = _value_sql(column, alias, present=column.column not in missing)
        base = f"{prefix}/{column.column}"
        if column.kind == "number":
            out.append((base, f"max({value})"))
        elif column.kind == "time":
            reference = f"coalesce({now}, {column.reference_time!r})"
            days = f"({reference} - max({value})) / {SECONDS_PER_DAY}"
            out.append((f"{base}/recency_days", days))
        else:
            out += [
                (
                    f"{base}/is/{label}",
                    f"max(case when {value} = {literal(label)} then 1.0 else 0.0 end)",
                )
                for label in column.labels
            ]
    return out


def _stacked(plan: LinkPlan, grandchild: LinkPlan, missing: set[str]) -> list[tuple[str, str]]:
    """(name, SQL over the per-child table `pc`): mean and max over a parent's children of
    each child's grandchild count and sums."""
    prefix = f"{plan.space}/{grandchild.space}"
    per_child = ["__n"] + [
        f"__sum_{i}" for i, c in enumerate(grandchild.columns) if c.kind == "number"
    ]
    names = ["count"] + [f"{c.column}/sum" for c in grandchild.columns if c.kind == "number"]
    out = []
    for column, name in zip(per_child, names, strict=True):
        out.append((f"{prefix}/{name}/per_{plan.space}_mean", f"avg(pc.{column})"))
        out.append((f"{prefix}/{name}/per_{plan.space}_max", f"max(pc.{column})"))
    return out


def child_statistics(
    con: duckdb.DuckDBPyConnection,
    spec: Spec,
    parent: str,
    rows_table: str,
    plans: list[LinkPlan],
    references: list[ReferencePlan] | tuple = (),
) -> np.ndarray:
    """[n_rows, n_features] float64 (NaN where a statistic is undefined, e.g. the mean of no
    children) for the rows of `rows_table` (`__row`, the parent key, its foreign keys and
    `as_of` if set), in `feature_names` order."""
    space = spec.spaces[parent]
    n_rows = con.execute(f"select count(*) from {rows_table}").fetchone()[0]
    now = f"max(epoch(r.{quote(space.as_of)}))" if space.as_of else "max(null)"
    blocks, stacked = [], []
    for plan in plans:
        children = (
            f"{qualified(plan.table)} c join {rows_table} r "
            f"on {_on(plan.foreign_key, space.key_columns, 'c', 'r')}"
            f"{_as_of(space.as_of, plan, 'c', 'and')}"
        )
        direct = _direct(plan, plan.space, now, _missing(con, plan))
        blocks.append(_grouped(con, n_rows, [sql for _, sql in direct], f"from {children}"))
        for lookup in plan.lookups:
            aggregates = _direct(lookup, "", now, _missing(con, lookup), alias="s", count=False)
            if aggregates:
                source = (
                    f"from {children} join {qualified(lookup.table)} s "
                    f"on {_on(lookup.foreign_key, lookup.key, 'c', 's')}"
                )
                block = _grouped(con, n_rows, [sql for _, sql in aggregates], source, count=False)
                blocks.append(block)
        for grandchild in plan.children:
            on_child = _on(grandchild.foreign_key, plan.key, "g", "c")
            prefix = f"{plan.space}/{grandchild.space}"
            aggregates = _direct(grandchild, prefix, now, _missing(con, grandchild), "g")
            source = (
                f"from {children} join {qualified(grandchild.table)} g on {on_child}"
                f"{_as_of(space.as_of, grandchild, 'g', 'and')}"
            )
            blocks.append(_grouped(con, n_rows, [sql for _, sql in aggregates], source))
            stacked.append(_stacked_block(con, space.as_of, children, n_rows, plan, grandchild))
    blocks += stacked
    for reference in references:
        blocks += _reference_blocks(con, space, rows_table, n_rows, now, reference)
    if not blocks:
        return np.zeros((n_rows, 0))
    return np.concatenate(blocks, axis=1)


def _reference_blocks(
    con: duckdb.DuckDBPyConnection,
    space: SpaceSpec,
    rows_table: str,
    n_rows: int,
    now: str,
    reference: ReferencePlan,
) -> list[np.ndarray]:
    """The columns of a reference read through (see `ReferencePlan`), per row of
    `rows_table`."""
    lookup = reference.lookup
    joined = _on(lookup.foreign_key, lookup.key, "r", "s")
    found = np.zeros(n_rows, bool)  # rows whose foreign key finds a referenced row
    matched = f"select r.__row from {rows_table} r join {qualified(lookup.table)} s on {joined}"
    found[fetch_arrow(con, matched).column("__row").to_numpy()] = True
    blocks = []
    values = _lookup_values(lookup, "", now, _missing(con, lookup))
    if values:
        source = f"from {rows_table} r join {qualified(lookup.table)} s on {joined}"
        blocks.append(_grouped(con, n_rows, [sql for _, sql in values], source, count=False))
    for child in reference.children:
        # the referenced row's children, through its key (= this row's foreign key); cut
        # at each row's as_of when they are dated, else summarised once per referenced row
        if space.as_of and child.time_column:
            aggregates = [sql for _, sql in _direct(child, "", now, _missing(con, child), "g")]
            on = _on(child.foreign_key, lookup.foreign_key, "g", "r")
            cut = _as_of(space.as_of, child, "g", "and")
            source = f"from {rows_table} r join {qualified(child.table)} g on {on}{cut}"
            blocks.append(_grouped(con, n_rows, aggregates, source))
            continue
        aggregates = [sql for _, sql in _direct(child, "", "null", _missing(con, child), "g")]
        keys = ", ".join(f"g.{quote(f)} as __k{i}" for i, f in enumerate(child.foreign_key))
        select = ", ".join(f"cast({sql} as double) as f{i}" for i, sql in enumerate(aggregates))
        per_row = (
            f"with per_key as (select {keys}, {select} from {qualified(child.table)} g "
            f"group by all) select r.__row, "
            + ", ".join(f"p.f{i}" for i in range(len(aggregates)))
            + f" from {rows_table} r join per_key p on "
            + " and ".join(f"p.__k{i} = r.{quote(f)}" for i, f in enumerate(lookup.foreign_key))
        )
        block = _placed(fetch_arrow(con, per_row), n_rows)
        block[:, 0] = np.nan_to_num(block[:, 0])
        blocks.append(block)
    blocks.append(_referrers(con, space, rows_table, n_rows, reference))
    for block in blocks:  # no referenced row: nothing is known of it, not "no children"
        block[~found] = np.nan
    return blocks


def _referrers(
    con: duckdb.DuckDBPyConnection,
    space: SpaceSpec,
    rows_table: str,
    n_rows: int,
    reference: ReferencePlan,
) -> np.ndarray:
    """[n_rows, 1]: other rows of `rows_table` with the same foreign key (earlier ones only
    when the space has a time column; NaN for a row without a time or a foreign key)."""
    foreign_key = [f"r.{quote(f)}" for f in reference.lookup.foreign_key]
    partition = ", ".join(foreign_key)
    null = " or ".join(f"{f} is null" for f in foreign_key)
    if reference.time_column:
        on = " and ".join(f"t.{quote(k)} = r.{quote(k)}" for k in space.key_columns)
        order = f"t.{quote(reference.time_column)}"
        null += f" or {order} is null"
        count = f"rank() over (partition by {partition} order by {order}) - 1"
        source = f"from {rows_table} r join {qualified(reference.referrer_table)} t on {on}"
    else:
        count = f"count(*) over (partition by {partition}) - 1"
        source = f"from {rows_table} r"
    sql = f"select r.__row, case when {null} then null else {count} end as f0 {source}"
    return _placed(fetch_arrow(con, sql), n_rows)


def _on(foreign_key: tuple[str, ...], key: list | tuple, child: str, parent: str) -> str:
    """Join condition from the child rows (alias `child`) to their parent rows."""
    return " and ".join(
        f"{child}.{quote(f)} = {parent}.{quote(k)}" for f, k in zip(foreign_key, key, strict=True)
    )


def _missing(con: duckdb.DuckDBPyConnection, plan: LinkPlan) -> set[str]:
    """Planned columns no longer in the table (read as NULL, like a missing input column)."""
    present = table_columns(con, plan.table)
    return {c.column for c in plan.columns if c.column not in present}


def _as_of(as_of: str | None, plan: LinkPlan, alias: str, joiner: str) -> str:
    """` <joiner> <alias>.time < r.as_of` when the parent has an `as_of` and the rows a time."""
    if not as_of or not plan.time_column:
        return ""
    return f" {joiner} {alias}.{quote(plan.time_column)} < r.{quote(as_of)}"


def _grouped(
    con: duckdb.DuckDBPyConnection,
    n_rows: int,
    aggregates: list[str],
    source: str,
    count: bool = True,
) -> np.ndarray:
    """Aggregates grouped by the parent row, placed in an [n_rows, k] matrix (NaN for parents
    without rows; with `count`, the first aggregate is a count: 0 for them)."""
    select = ", ".join(f"cast({sql} as double) as f{i}" for i, sql in enumerate(aggregates))
    out = _placed(fetch_arrow(con, f"select r.__row, {select} {source} group by r.__row"), n_rows)
    if count:
        out[:, 0] = np.nan_to_num(out[:, 0])
    return out


def _placed(table, n_rows: int) -> np.ndarray:
    """Columns `f0..fk` of a result keyed by `__row`, as an [n_rows, k] matrix (NaN: no row)."""
    features = [c for c in table.column_names if c != "__row"]
    out = np.full((n_rows, len(features)), np.nan)
    rows = table.column("__row").to_numpy()
    for i, name in enumerate(features):
        out[rows, i] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    return out


def _stacked_block(
    con: duckdb.DuckDBPyConnection,
    as_of: str | None,
    children: str,
    n_rows: int,
    plan: LinkPlan,
    grandchild: LinkPlan,
) -> np.ndarray:
    """Stacked statistics: per child row its grandchild count and sums (`children` is the
    SQL of the parent's child rows, aliased `c`, joined to their parent row `r`)."""
    missing = _missing(con, grandchild)
    sums = "".join(
        f", sum({_value_sql(c, 'g', present=c.column not in missing)}) as __sum_{i}"
        for i, c in enumerate(grandchild.columns)
        if c.kind == "number"
    )
    child_key = ", ".join(f"c.{quote(k)} as __key_{i}" for i, k in enumerate(plan.key))
    per_child = (
        f"select r.__row, {child_key}, count(g.{quote(grandchild.foreign_key[0])}) as __n"
        f"{sums} from {children} left join {qualified(grandchild.table)} g "
        f"on {_on(grandchild.foreign_key, plan.key, 'g', 'c')}"
        f"{_as_of(as_of, grandchild, 'g', 'and')} group by all"
    )
    stacked = _stacked(plan, grandchild, missing)
    select = ", ".join(f"cast({sql} as double) as f{i}" for i, (_, sql) in enumerate(stacked))
    return _placed(
        fetch_arrow(con, f"with pc as ({per_child}) select pc.__row, {select} from pc group by 1"),
        n_rows,
    )


@dataclass
class ChildStatistics:
    """A space's child statistics: the plans, their feature names and the normalisation
    (signed log, then z-score, fitted once), saved with the space like a codec."""

    plans: list[LinkPlan]
    names: list[str]
    mean: np.ndarray
    std: np.ndarray
    references: list[ReferencePlan] = field(default_factory=list)
    """The space's own references, read through."""

    @classmethod
    def fit(
        cls, plans: list[LinkPlan], values: np.ndarray, references: list[ReferencePlan] = ()
    ) -> ChildStatistics:
        logged = _signed_log(values)
        logged = np.where(np.isfinite(logged), logged, np.nan)
        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: mean 0, std 1
            mean = np.nan_to_num(np.nanmean(logged, axis=0))
            std = np.nan_to_num(np.nanstd(logged, axis=0))
        std = np.where(std > 1e-9, std, 1.0)
        return cls(plans, feature_names(plans, references), mean, std, list(references))

    def transform(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """`features` [n, F] (normalised, 0 where undefined) and `defined` [n, F]."""
        defined = np.isfinite(values)  # an overflowed sum is undefined, like a mean of none
        z = np.clip((_signed_log(values) - self.mean) / self.std, -6, 6)
        return {
            "features": np.where(defined, z, 0.0).astype(np.float32),
            "defined": defined,
        }

    def state(self) -> dict:
        return {
            "plans": [p.state() for p in self.plans],
            "references": [r.state() for r in self.references],
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    @classmethod
    def from_state(cls, state: dict) -> ChildStatistics:
        plans = [LinkPlan.from_state(p) for p in state["plans"]]
        references = [ReferencePlan.from_state(r) for r in state.get("references", [])]
        return cls(
            plans,
            feature_names(plans, references),
            np.array(state["mean"]),
            np.array(state["std"]),
            references,
        )

    def groups(self) -> list[str]:
        """The first part of the addresses: each child link's space, each reference's name."""
        spaces = [p.space for p in self.plans] + lookup_names([r.lookup for r in self.references])
        return list(dict.fromkeys(spaces))


def _signed_log(values: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): counts, sums and amounts are heavy-tailed."""
    with np.errstate(invalid="ignore"):
        return np.sign(values) * np.log1p(np.abs(values))
