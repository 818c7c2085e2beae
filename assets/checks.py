"""The asset checks' results: relationships (blocking on error), column values, data quality."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import dagster as dg

from assets.metadata import join_metadata, markdown_table
from pipeline.understanding.data_quality import QualityReport
from pipeline.understanding.joins import JoinCheck, Link
from pipeline.understanding.profiling import ColumnProfile

QUALITY_CHECK = "data_quality"
COLUMNS_CHECK = "column_values"


def columns_result(profiles: list[ColumnProfile]) -> dg.AssetCheckResult:
    """Warn about columns with values that did not parse, and list the excluded ones."""
    mixed = [p for p in profiles if p.unparsed_count and not p.excluded]
    return dg.AssetCheckResult(
        check_name=COLUMNS_CHECK,
        passed=not mixed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "mixed_columns": dg.MetadataValue.md(
                markdown_table(
                    ["column", "type", "unparsed values", "examples"],
                    [
                        (
                            p.column,
                            p.detected_type,
                            p.unparsed_count,
                            ", ".join(p.unparsed_examples),
                        )
                        for p in mixed
                    ],
                )
                if mixed
                else "every value parses"
            ),
            "excluded_columns": dg.MetadataValue.text(
                ", ".join(f"{p.column} ({p.reason})" for p in profiles if p.excluded) or "none"
            ),
        },
    )


def quality_result(report: QualityReport) -> dg.AssetCheckResult:
    """The Great Expectations suite's outcome, with links to its data docs and page."""
    metadata: dict[str, dg.MetadataValue] = {
        "expectations": dg.MetadataValue.int(report.evaluated),
        "failed": dg.MetadataValue.text(", ".join(report.failed) or "none"),
    }
    if report.learned:
        metadata["learned"] = dg.MetadataValue.text(
            f"{report.learned} expectations learned from this data; the next data is "
            "validated against them"
        )
    if report.docs_index:
        metadata["data_docs"] = dg.MetadataValue.url(report.docs_index.as_uri())
    if report.page:
        metadata["report"] = dg.MetadataValue.url(report.page.as_uri())
    return dg.AssetCheckResult(
        check_name=QUALITY_CHECK,
        passed=report.success,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def join_check_results(
    checks: Mapping[Link, str], joins: list[JoinCheck]
) -> Iterator[dg.AssetCheckResult]:
    """One result per relationship check, from the join report of validation."""
    found = {j.place: j for j in joins}
    for link, name in checks.items():
        join = found.get(link.place)
        if join is None:
            yield dg.AssetCheckResult(
                check_name=name,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"message": "validation returned no result for this relationship"},
            )
            continue
        # ok passes; warn fails with WARN (shown, never blocks); error fails with ERROR,
        # which stops the blocking check's downstream spaces.
        yield dg.AssetCheckResult(
            check_name=name,
            passed=join.status == "ok",
            severity=(
                dg.AssetCheckSeverity.ERROR
                if join.status == "error"
                else dg.AssetCheckSeverity.WARN
            ),
            metadata=join_metadata(join),
            description=join.message,
        )
