"""Great Expectations suites learned from the profile catch later drift."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline import runner
from pipeline.data_quality import check_space_quality
from tests.conftest import demo_spec_dict, write_spec


def test_suite_learned_then_drift_reported(small_demo: Path, tmp_path: Path):
    spec = write_spec(tmp_path / "s.yaml", demo_spec_dict(small_demo, tmp_path / "artifacts"))
    first = check_space_quality(
        spec, "customers", runner.validate_space(spec, "customers").profiles
    )
    assert first.success and first.evaluated >= 8
    assert first.docs_index is not None and "customers" in first.docs_index.read_text()
    con = duckdb.connect(str(small_demo))
    con.execute("update raw.customers set plan = 'platinum' where customer_id % 5 = 0")
    con.close()
    again = check_space_quality(
        spec, "customers", runner.validate_space(spec, "customers").profiles
    )
    assert not again.success
    assert "expect_column_values_to_be_in_set(plan)" in again.failed
    con = duckdb.connect(str(small_demo), read_only=True)
    try:
        rows = con.execute(
            "select success, unexpected_count from ml.quality_results "
            "where space = 'customers' and expectation = 'expect_column_values_to_be_in_set' "
            "and \"column\" = 'plan'"
        ).fetchall()
        changed = con.execute(
            "select count(*) from raw.customers where customer_id % 5 = 0"
        ).fetchone()[0]
    finally:
        con.close()
    assert rows == [(False, changed)]
