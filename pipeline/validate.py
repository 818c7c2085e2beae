"""The validate step: every space's columns, key, joins and data quality, checked and written
to `ml.column_profile`, `ml.join_report` and `ml.quality_results` before anything trains."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from pipeline.errors import warn_all
from pipeline.freshness import last_validated, record_validated, validation_digests
from pipeline.locations import warehouse_of
from pipeline.spec import Spec
from pipeline.understanding.data_quality import QualityReport, check_space_quality
from pipeline.understanding.joins import (
    JoinCheck,
    join_report_table,
    raise_on_blocking,
    validate_joins,
)
from pipeline.understanding.profiling import ColumnProfile, profile_space, profiles_table
from pipeline.understanding.validation import check_key, check_space_columns
from pipeline.warehouse.sql import literal

log = logging.getLogger(__name__)


@dataclass
class SpaceValidation:
    """What validating one space found: its column profile and the joins it reads."""

    space: str
    profiles: list[ColumnProfile]
    joins: list[JoinCheck]
    quality: QualityReport | None = None


def validate_space(spec: Spec, name: str) -> SpaceValidation:
    """Check columns and key, profile the columns, check the space's joins; write
    `ml.column_profile` and `ml.join_report` rows for this space. Raises on a bad spec or key;
    join problems are returned (see `raise_on_blocking`)."""
    warehouse = warehouse_of(spec)
    with warehouse.connect() as con:
        check_space_columns(con, spec, name)
        check_key(con, spec, name)
        profiles = profile_space(con, spec, name)
        joins = validate_joins(con, spec, space=name)
        warehouse.write_table(
            con,
            "column_profile",
            profiles_table(profiles),
            replace_where=f"space = {literal(name)}",
        )
        report = join_report_table(joins).append_column(
            "space", pa.array([name] * len(joins), pa.string())
        )
        warehouse.write_table(con, "join_report", report, replace_where=f"space = {literal(name)}")
    warn_all(
        f"space {name}",
        [f"join {j.place}: {j.message}" for j in joins if j.status == "warn"]
        + [
            f"column {p.column}: {p.unparsed_count} value(s) are not {p.detected_type} "
            f"(e.g. {', '.join(repr(e) for e in p.unparsed_examples)}); read as missing"
            for p in profiles
            if p.unparsed_count and not p.excluded
        ],
    )
    for p in profiles:
        if p.excluded and p.role == "input":
            log.info("space %s: column %s excluded: %s", name, p.column, p.reason)
    return SpaceValidation(name, profiles, joins)


def validate(spec: Spec, changed_only: bool = False) -> list[SpaceValidation]:
    """Validate every space; stop with JoinValidationError when a join check fails. Then
    check each space's data against the quality suite learned when it was trained (failed
    expectations warn; see `ml.quality_results`). `changed_only`: a space whose tables
    (its own and those it joins to) and spec section are as at the last validation that
    passed keeps that validation's results (`run` does this)."""
    digests = validation_digests(spec)
    done = last_validated(spec) if changed_only else {}
    unchanged = [n for n in spec.training_order() if digests[n] and done.get(n) == digests[n]]
    for name in unchanged:
        log.info("space %s: its tables are as at the last validation; its results stand", name)
    results = [
        validate_space(spec, name) for name in spec.training_order() if name not in unchanged
    ]
    raise_on_blocking([j for r in results for j in r.joins])
    for result in results:
        report = check_space_quality(spec, result.space, result.profiles)
        result.quality = report
        if report.failed:
            warn_all(
                f"space {result.space}",
                [
                    f"data quality: {len(report.failed)} of {report.evaluated} expectation(s) "
                    f"learned at training failed on the current data: "
                    f"{', '.join(report.failed)} (details in ml.quality_results)"
                ],
            )
    record_validated(spec, {n: d for n, d in digests.items() if n not in unchanged})
    return results
