"""Great Expectations suites are learned from the data a space was trained on and validate
the next data, so a check can fail; retraining relearns them."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline import runner
from pipeline.understanding.data_quality import check_space_quality, learn_space_quality
from pipeline.understanding.profiling import ColumnProfile
from pipeline.understanding.quality_sample import SAMPLE_ROWS, sample_frame
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


def _events_table(warehouse: Path, rows: int) -> None:
    """`raw.events`: a key, a number, a small category and a timestamp; no violation."""
    con = duckdb.connect(str(warehouse))
    con.execute("create schema raw")
    con.execute(
        "create table raw.events as select range as event_id, (range % 100)::double as amount, "
        "['basic', 'pro', 'team'][range % 3 + 1] as plan, "
        "timestamp '2024-01-01' + to_minutes(range) as happened_at "
        f"from range({rows})"
    )
    con.close()


EVENTS_PROFILES = [
    ColumnProfile("events", "event_id", "BIGINT", "scalar", "key", 0.0, 30_000, True, "key"),
    ColumnProfile("events", "amount", "DOUBLE", "scalar", "input", 0.0, 100, False, ""),
    ColumnProfile("events", "plan", "VARCHAR", "category", "input", 0.0, 3, False, ""),
    ColumnProfile(
        "events", "happened_at", "TIMESTAMP", "timestamp", "input", 0.0, 30_000, False, ""
    ),
]


def test_exact_counts_cover_rows_the_sample_misses(tmp_path: Path):
    """Keys, ranges and accepted values are counted in SQL over every row; Great Expectations
    only sees a bounded sample, which here misses every planted violation."""
    warehouse = tmp_path / "warehouse.duckdb"
    _events_table(warehouse, 30_000)
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(tmp_path / "artifacts"),
            "spaces": {"events": {"table": "raw.events", "key": "event_id"}},
        },
    )
    learned = learn_space_quality(spec, "events", EVENTS_PROFILES)
    assert learned.learned == 11  # key x2, then not-null, type and range or set per input

    con = duckdb.connect(str(warehouse))
    columns = {"event_id": '"event_id"', "amount": '"amount"'}
    sample = sample_frame(con, "raw.events", ["event_id"], columns)
    assert len(sample) == SAMPLE_ROWS
    assert sample.equals(sample_frame(con, "raw.events", ["event_id"], columns))
    unsampled = con.execute(
        "select event_id from raw.events where event_id not in (select unnest(?)) "
        "order by event_id limit 9",
        [sample["event_id"].tolist()],
    ).fetchall()
    missed = [k for (k,) in unsampled]
    con.execute(  # one duplicate key, 3 amounts out of range, 5 unknown plans
        f"insert into raw.events select * from raw.events where event_id = {missed[0]}"
    )
    con.execute(f"update raw.events set amount = 1e6 where event_id in {tuple(missed[1:4])}")
    con.execute(f"update raw.events set plan = 'platinum' where event_id in {tuple(missed[4:])}")
    resampled = sample_frame(con, "raw.events", ["event_id"], columns)
    assert not set(missed) & set(resampled["event_id"])  # GX would see none of them
    con.close()

    report = check_space_quality(spec, "events", EVENTS_PROFILES)
    assert report.failed == ["expect_column_values_to_be_unique(event_id)"]
    con = duckdb.connect(str(warehouse), read_only=True)
    results = {
        (expectation, column): (success, unexpected, on, rows)
        for expectation, column, success, unexpected, on, rows in con.execute(
            'select expectation, "column", success, unexpected_count, evaluated_on, '
            "evaluated_rows from ml.quality_results where space = 'events'"
        ).fetchall()
    }
    con.close()
    # GX counts both rows of a repeated key; ranges and sets allow 1% (mostly=0.99)
    assert results["expect_column_values_to_be_unique", "event_id"] == (False, 2, "table", 30_001)
    assert results["expect_column_values_to_be_between", "amount"] == (True, 3, "table", 30_001)
    assert results["expect_column_values_to_be_in_set", "plan"] == (True, 5, "table", 30_001)
    assert results["expect_column_values_to_be_between", "happened_at"][1] == 0
    assert results["expect_column_values_to_be_of_type", "amount"][2:] == ("sample", SAMPLE_ROWS)
