"""The demo warehouse: deterministic, referentially sound, and carrying the planted signal."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.demo import TABLE_KEYS, generate_demo_warehouse

SCALE = 0.2
FOREIGN_KEYS = [
    ("customers", "region_id", "regions"),
    ("orders", "customer_id", "customers"),
    ("order_items", "order_id", "orders"),
    ("order_items", "product_id", "products"),
    ("support_tickets", "customer_id", "customers"),
]


def _contents(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {
            table: con.execute(f"select * from raw.{table} order by {key}").fetchall()
            for table, key in TABLE_KEYS.items()
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "warehouse.duckdb"
    generate_demo_warehouse(path, scale=SCALE, seed=0)
    return path


@pytest.fixture()
def con(warehouse: Path):
    connection = duckdb.connect(str(warehouse), read_only=True)
    yield connection
    connection.close()


def test_row_counts_follow_scale(tmp_path: Path) -> None:
    counts = generate_demo_warehouse(tmp_path / "w.duckdb", scale=SCALE, seed=0)
    assert set(counts) == set(TABLE_KEYS)
    assert counts["regions"] == 8
    assert counts["customers"] == 400
    assert counts["products"] == 40
    assert 4 * counts["customers"] < counts["orders"] < 8 * counts["customers"]
    assert counts["orders"] <= counts["order_items"] <= 4 * counts["orders"]
    assert {table: len(rows) for table, rows in _contents(tmp_path / "w.duckdb").items()} == counts


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path, warehouse: Path) -> None:
    generate_demo_warehouse(tmp_path / "again.duckdb", scale=SCALE, seed=0)
    generate_demo_warehouse(tmp_path / "other.duckdb", scale=SCALE, seed=1)
    first = _contents(warehouse)
    assert _contents(tmp_path / "again.duckdb") == first
    other = _contents(tmp_path / "other.duckdb")
    assert other["regions"] == first["regions"]
    assert other["customers"] != first["customers"]
    assert other["orders"] != first["orders"]


def test_regenerating_replaces_tables(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    generate_demo_warehouse(path, scale=SCALE, seed=3)
    generate_demo_warehouse(path, scale=SCALE, seed=0)
    generate_demo_warehouse(tmp_path / "fresh.duckdb", scale=SCALE, seed=0)
    assert _contents(path) == _contents(tmp_path / "fresh.duckdb")


@pytest.mark.parametrize("table", list(TABLE_KEYS))
def test_keys_unique_and_not_null(con: duckdb.DuckDBPyConnection, table: str) -> None:
    key = TABLE_KEYS[table]
    rows, distinct, nulls = con.execute(
        f"select count(*), count(distinct {key}), count(*) - count({key}) from raw.{table}"
    ).fetchone()
    assert rows == distinct and nulls == 0


@pytest.mark.parametrize(("child", "foreign_key", "parent"), FOREIGN_KEYS)
def test_no_orphans(
    con: duckdb.DuckDBPyConnection, child: str, foreign_key: str, parent: str
) -> None:
    (orphans,) = con.execute(
        f"select count(*) from raw.{child} as c anti join raw.{parent} as p "
        f"on c.{foreign_key} = p.{TABLE_KEYS[parent]}"
    ).fetchone()
    assert orphans == 0


def test_order_totals_are_the_sum_of_their_items(con: duckdb.DuckDBPyConnection) -> None:
    (mismatches,) = con.execute(
        """
        with item_totals as (
            select
                order_id,
                round(sum(quantity * unit_price::decimal(12, 2)
                    * (1 - discount::decimal(4, 2))), 2) as total
            from raw.order_items
            group by order_id
        )
        select count(*) from raw.orders join item_totals using (order_id)
        where orders.total_amount <> item_totals.total
        """
    ).fetchone()
    assert mismatches == 0


def test_categorical_values(con: duckdb.DuckDBPyConnection) -> None:
    def values(sql: str) -> set:
        return {row[0] for row in con.execute(sql).fetchall()}

    assert values("select distinct status from raw.orders") <= {
        "delivered",
        "late",
        "returned",
        "cancelled",
    }
    assert values("select distinct plan from raw.customers") <= {
        "free",
        "basic",
        "pro",
        "enterprise",
    }
    assert values("select distinct channel from raw.support_tickets") <= {"email", "chat", "phone"}
    (null_notes,) = con.execute("select avg((notes is null)::int) from raw.customers").fetchone()
    assert 0.3 < null_notes < 0.5


def test_planted_signal_late_and_returned_orders_predict_churn(
    con: duckdb.DuckDBPyConnection,
) -> None:
    """Customers in the top third by late+returned order fraction churn >= 2x the bottom third."""
    rates = dict(
        con.execute(
            """
            with per_customer as (
                select
                    customers.customer_id,
                    customers.churned,
                    avg((orders.status in ('late', 'returned'))::int) as bad_fraction
                from raw.customers
                join raw.orders on orders.customer_id = customers.customer_id
                group by all
            ),

            thirds as (
                select *, ntile(3) over (order by bad_fraction, customer_id) as third
                from per_customer
            )

            select third, avg(churned::int) from thirds group by third
            """
        ).fetchall()
    )
    assert rates[3] >= 2 * rates[1], rates
    (overall,) = con.execute("select avg(churned::int) from raw.customers").fetchone()
    assert 0.2 < overall < 0.5
