"""The demo warehouse with deliberately dirtied copies, materialized through Dagster: junk
columns are excluded, orphan orders warn without blocking, a string-typed foreign key stops
exactly the spaces that read it, and nothing trained earlier is lost."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.demo import generate_demo_warehouse
from tests.test_assets import run_dbt, write_spec


def _sql(warehouse: Path, *statements: str) -> list:
    con = duckdb.connect(str(warehouse))
    try:
        rows = []
        for statement in statements:
            rows = con.execute(statement).fetchall()
        return rows
    finally:
        con.close()


def _materialize(defs: dg.Definitions) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs.assets),
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.key_prefixes("ml"),
        raise_on_error=False,
    )


@pytest.mark.slow  # a whole Dagster materialization, twice (84 s)
def test_dirtied_demo_excludes_warns_and_stops(tmp_path: Path) -> None:
    from assets.factory import build_definitions

    warehouse = tmp_path / "warehouse.duckdb"
    generate_demo_warehouse(warehouse, scale=0.05, seed=0)
    run_dbt("run", "--select", "staging", warehouse=warehouse)
    # The dirtied copies replace the staging views: a UUID column and a constant column on
    # customers, and 10% of orders pointing to no customer.
    _sql(
        warehouse,
        "create table dirty_customers as select *, uuid()::varchar as session_uuid, "
        "'crm' as source_system from main.stg_customers",
        "drop view main.stg_customers",
        "alter table dirty_customers rename to stg_customers",
        "create table dirty_orders as select * replace (case when order_id % 10 = 0 "
        "then customer_id + 100000 else customer_id end as customer_id) from main.stg_orders",
        "drop view main.stg_orders",
        "alter table dirty_orders rename to stg_orders",
    )
    (orphans,) = _sql(warehouse, "select count(*) from main.stg_orders where order_id % 10 = 0")[0]
    defs = build_definitions(write_spec(tmp_path, warehouse))

    first = _materialize(defs)

    assert first.success
    checks = {e.check_name: e for e in first.get_asset_check_evaluations()}
    orders_join = checks["join_customers__orders"]
    assert not orders_join.passed and orders_join.severity == dg.AssetCheckSeverity.WARN
    assert orders_join.metadata["orphans"].value == orphans
    assert f"{orphans} orders row(s) point to no customers row" in orders_join.description
    excluded = dict(
        _sql(
            warehouse,
            "select \"column\", reason from ml.column_profile where space = 'customers' "
            "and excluded and role = 'input'",
        )
    )
    assert excluded["session_uuid"].startswith("id-like")
    assert excluded["source_system"] == "constant (one distinct value)"
    customers = _sql(warehouse, "select count(*) from main.stg_customers")[0][0]
    assert _sql(warehouse, "select count(*) from ml.customers__churned_predictions")[0][0] == (
        customers
    )
    orders_before = _sql(warehouse, "select * from ml.orders_embeddings order by order_id")

    # Now order_items.order_id arrives as strings: the orders space must stop, with the cast.
    _sql(
        warehouse,
        "create table dirty_items as select * replace (cast(order_id as varchar) as order_id) "
        "from main.stg_order_items",
        "drop view main.stg_order_items",
        "alter table dirty_items rename to stg_order_items",
    )

    second = _materialize(defs)

    assert not second.success
    assert second.get_failed_step_keys() == {"ml__orders_profile"}
    checks = {e.check_name: e for e in second.get_asset_check_evaluations()}
    items_join = checks["join_orders__order_items"]
    assert not items_join.passed and items_join.severity == dg.AssetCheckSeverity.ERROR
    assert 'cast("order_id" as BIGINT)' in items_join.description
    for node in ("ml__orders_space", "ml__customers_space", "ml__customers__churned_predictions"):
        assert second.is_node_untouched(node) or second.is_node_skipped(node), node
    assert _sql(warehouse, "select * from ml.orders_embeddings order by order_id") == orders_before
    report = _sql(
        warehouse,
        "select status from ml.join_report where parent = 'orders' and child = 'order_items'",
    )
    assert report == [("error",)]
