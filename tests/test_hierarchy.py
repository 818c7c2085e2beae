"""Child sets: each parent row sees its own children, latest first, cut at max_length, and
never a child dated after the parent's as_of."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import torch

from pipeline import runner
from pipeline.spaces.model import gather, token_specs
from pipeline.spaces.reads import read_space_inputs
from pipeline.understanding.profiling import profile_space
from tests.conftest import write_spec


def test_child_sets_respect_as_of_order_and_max_length(tmp_path: Path):
    warehouse = tmp_path / "w.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(
        "create table customers as select range::integer as customer_id, "
        "timestamp '2026-01-01' + to_days(range::integer) as snapshot_at, "
        "'p' || (range % 3) as plan from range(40)"
    )
    # customer c has c % 7 orders, one a day from 2025-12-30: some fall after its snapshot
    con.execute(
        "create table orders as select row_number() over ()::integer as order_id, "
        "c.customer_id, timestamp '2025-12-30' + to_days(o.n::integer) as ordered_at, "
        "(o.n * 3.5)::double as amount from customers c, "
        "lateral (select range as n from range(c.customer_id % 7)) o"
    )
    expected = dict(
        con.execute(
            "select c.customer_id, count(o.order_id) from customers c left join orders o "
            "on o.customer_id = c.customer_id and o.ordered_at < c.snapshot_at group by 1"
        ).fetchall()
    )
    con.close()
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(tmp_path / "a"),
            "training": {"steps": 5},
            "spaces": {
                "customers": {
                    "table": "main.customers",
                    "key": "customer_id",
                    "as_of": "snapshot_at",
                    "children": [
                        {"space": "orders", "foreign_key": "customer_id", "max_length": 3}
                    ],
                },
                "orders": {"table": "main.orders", "key": "order_id", "time_column": "ordered_at"},
            },
        },
    )
    runner.train(spec, "orders", progress=False)
    runner.embed(spec, "orders")
    w = runner.warehouse_of(spec)
    with w.connect() as con:
        profiles = profile_space(con, spec, "customers")
        inputs = read_space_inputs(w, con, spec, "customers", profiles=profiles)
        order_vectors = {
            row[0]: np.array(row[1], np.float32)
            for row in con.execute(
                "select order_id, embedding from ml.orders_embeddings"
            ).fetchall()
        }
        latest = con.execute(
            "select o.customer_id, list(o.order_id order by o.ordered_at desc) from orders o "
            "join customers c using (customer_id) where o.ordered_at < c.snapshot_at group by 1"
        ).fetchall()
    assert [t for t in inputs.columns if t.name == "snapshot_at"] == []  # as_of is structure
    child = inputs.children[0]
    keys = inputs.keys.column("customer_id").to_pylist()
    counts = dict(zip(keys, child.counts.tolist(), strict=True))
    assert counts == expected
    lengths = (child.offsets[1:] - child.offsets[:-1]).tolist()
    assert lengths == [min(expected[k], 3) for k in keys]
    names = [t.name for t in token_specs(inputs)]
    batch = gather(inputs, torch.arange(len(keys)))[names.index("orders")]
    # the SQL statistics see every order before the snapshot, not only the 3 latest
    count = inputs.statistics_values[:, inputs.statistics.names.index("orders/count")]
    assert dict(zip(keys, count.tolist(), strict=True)) == expected
    for customer, order_ids in latest:
        row = keys.index(customer)
        for position, order_id in enumerate(order_ids[:3]):
            assert np.allclose(batch["children"][row, position].numpy(), order_vectors[order_id])


def test_a_grandchild_dated_after_as_of_changes_nothing_in_the_parent(tmp_path: Path):
    """as_of cuts at every depth: an item added to an old order after the customer's
    snapshot changes that order's stored embedding, not the customer's."""
    warehouse = tmp_path / "w.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(
        "create table customers as select range::integer as customer_id, "
        "timestamp '2026-03-01' as snapshot_at, 'p' || (range % 3) as plan from range(30)"
    )
    con.execute(
        "create table orders as select (c.customer_id * 10 + o.n)::integer as order_id, "
        "c.customer_id, timestamp '2026-01-01' + to_days(o.n::integer * 20) as ordered_at "
        "from customers c, lateral (select range as n from range(1 + c.customer_id % 3)) o"
    )
    con.execute(
        "create table items as select (o.order_id * 10 + i.n)::integer as item_id, o.order_id, "
        "o.ordered_at + to_days(i.n::integer) as added_at, (o.order_id % 7 + i.n)::double "
        "as price from orders o, lateral (select range as n from range(2)) i"
    )
    con.close()
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(tmp_path / "a"),
            "training": {"steps": 5},
            "spaces": {
                "customers": {
                    "table": "main.customers",
                    "key": "customer_id",
                    "as_of": "snapshot_at",
                    "children": [{"space": "orders", "foreign_key": "customer_id"}],
                },
                "orders": {
                    "table": "main.orders",
                    "key": "order_id",
                    "time_column": "ordered_at",
                    "children": [{"space": "items", "foreign_key": "order_id"}],
                },
                "items": {"table": "main.items", "key": "item_id", "time_column": "added_at"},
            },
        },
    )
    runner.run(spec, progress=False)

    def embeddings(space: str, key: str) -> dict:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = con.execute(f"select {key}, embedding from ml.{space}_embeddings").fetchall()
        return {k: np.array(v, np.float32) for k, v in rows}

    orders_before, customers_before = (
        embeddings("orders", "order_id"),
        embeddings("customers", "customer_id"),
    )
    with duckdb.connect(str(warehouse)) as con:  # order 0 (Jan 1) gets an item in April
        con.execute("insert into items values (9999, 0, timestamp '2026-04-01', 1000.0)")
    for name in ("items", "orders", "customers"):
        runner.embed(spec, name)
    orders_after, customers_after = (
        embeddings("orders", "order_id"),
        embeddings("customers", "customer_id"),
    )
    assert not np.array_equal(orders_before[0], orders_after[0])  # the order sees the item
    for customer, vector in customers_before.items():  # re-embedded alone: float rounding
        np.testing.assert_allclose(customers_after[customer], vector, atol=1e-6)
