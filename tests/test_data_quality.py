"""Great Expectations suites are learned from the data a space was trained on and validate
the next data, so a check can fail; retraining relearns them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline import runner
from pipeline.data_quality import check_space_quality, learn_space_quality
from tests.conftest import demo_spec_dict, write_spec


def _results(warehouse: Path) -> list[tuple]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(
            "select status, success, unexpected_count from ml.quality_results "
            "where space = 'customers' and expectation = 'expect_column_values_to_be_in_set' "
            "and \"column\" = 'plan'"
        ).fetchall()
    finally:
        con.close()


def test_suite_learned_first_then_the_next_data_can_fail(small_demo: Path, tmp_path: Path):
    spec = write_spec(tmp_path / "s.yaml", demo_spec_dict(small_demo, tmp_path / "artifacts"))
    profiles = runner.validate_space(spec, "customers").profiles
    # the first check has no suite: it learns one and validates nothing against itself
    first = check_space_quality(spec, "customers", profiles)
    assert first.learned >= 8 and first.evaluated == 0 and first.success
    assert first.docs_index is not None and "customers" in first.docs_index.read_text()
    assert _results(small_demo) == [("learned", None, None)]

    same = check_space_quality(spec, "customers", profiles)
    assert same.success and same.evaluated == first.learned and not same.learned

    con = duckdb.connect(str(small_demo))
    con.execute("update raw.customers set plan = 'platinum' where customer_id % 5 = 0")
    changed = con.execute("select count(*) from raw.customers where customer_id % 5 = 0")
    changed = changed.fetchone()[0]
    con.close()
    drifted = check_space_quality(
        spec, "customers", runner.validate_space(spec, "customers").profiles
    )
    assert not drifted.success
    assert "expect_column_values_to_be_in_set(plan)" in drifted.failed
    assert _results(small_demo) == [("failed", False, changed)]

    # retraining relearns the suite from the data it trains on: 'platinum' is accepted now
    relearned = learn_space_quality(
        spec, "customers", runner.validate_space(spec, "customers").profiles
    )
    assert relearned.learned >= 8
    again = check_space_quality(
        spec, "customers", runner.validate_space(spec, "customers").profiles
    )
    assert "expect_column_values_to_be_in_set(plan)" not in again.failed
