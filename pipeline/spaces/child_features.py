"""Each child statistic's address and SQL expression, in the planned order, and their
normalisation for the model (`ChildStatistics`, fitted once and saved with the space).
Addresses are `<child>/<column>/<statistic>`, `<child>/<grandchild>/<column>/<statistic>` and
`<reference>/...`; `pipeline.spaces.child_stats` runs the expressions."""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.spaces.child_plans import (
    SECONDS_PER_DAY,
    LinkPlan,
    LookupPlan,
    ReferencePlan,
    value_sql,
)
from pipeline.warehouse.sql import literal


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
        names += [name for name, _ in direct_statistics(plan, plan.space, "null", set())]
        for lookup, lookup_name in zip(plan.lookups, lookup_names(plan.lookups), strict=True):
            prefix = f"{plan.space}/{lookup_name}"
            names += [
                name for name, _ in direct_statistics(lookup, prefix, "null", set(), count=False)
            ]
        for g in plan.children:
            names += [
                name for name, _ in direct_statistics(g, f"{plan.space}/{g.space}", "null", set())
            ]
    names += [
        name
        for plan in plans
        for g in plan.children
        for name, _ in stacked_statistics(plan, g, set())
    ]
    prefixes = lookup_names([r.lookup for r in references])
    for reference, space in zip(references, prefixes, strict=True):
        names += [name for name, _ in lookup_statistics(reference.lookup, space, "null", set())]
        for child in reference.children:
            names += [
                name
                for name, _ in direct_statistics(child, f"{space}/{child.space}", "null", set())
            ]
        names.append(f"{space}/{reference.referrers}/count")
    return names


def direct_statistics(
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
        value = value_sql(column, alias, present=column.column not in missing)
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


def lookup_statistics(
    plan: LookupPlan, prefix: str, now: str, missing: set[str], alias: str = "s"
) -> list[tuple[str, str]]:
    """(name, SQL) of one referenced row's columns, as aggregates over the single row a
    reference finds: numbers as they are, times as days before `now`, labels one-hot."""
    out = []
    for column in plan.columns:
        value = value_sql(column, alias, present=column.column not in missing)
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


def stacked_statistics(
    plan: LinkPlan, grandchild: LinkPlan, missing: set[str]
) -> list[tuple[str, str]]:
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
