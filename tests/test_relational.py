"""Signal that only the child tables carry: a label that depends on a sum over a child table,
on the ratio of two children's sums, or on a grandchild. The pipeline, given only tables,
keys and the target, must find it; the parent table alone must not. Held-out parents have a
NULL label in the warehouse (the pipeline never sees it) and are scored against the truth."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from pipeline import runner
from pipeline.errors import DataWarning, PipelineError
from pipeline.spec import Spec
from tests.conftest import write_spec, write_tables

N_CUSTOMERS = 600
HELD_OUT = 4  # every 4th customer is held out


def _shop(path: Path, seed: int = 0) -> dict[str, pa.Table]:
    """Customers with noise columns; orders (1-8 per customer), refunds (0-4) and order items
    (1-4 per order), amounts log-normal so sums are far from counts."""
    rng = np.random.default_rng(seed)
    customer = np.arange(N_CUSTOMERS)
    n_orders = rng.integers(1, 9, N_CUSTOMERS)
    order_customer = np.repeat(customer, n_orders)
    n_refunds = rng.integers(0, 5, N_CUSTOMERS)
    refund_customer = np.repeat(customer, n_refunds)
    n_items = rng.integers(1, 5, len(order_customer))
    item_order = np.repeat(np.arange(len(order_customer)), n_items)
    tables = {
        "customers": pa.table(
            {
                "customer_id": pa.array(customer, pa.int32()),
                "age": rng.integers(18, 80, N_CUSTOMERS).astype(np.float64),
                "plan": pa.array(rng.choice(["basic", "plus", "pro"], N_CUSTOMERS)),
            }
        ),
        "orders": pa.table(
            {
                "order_id": pa.array(np.arange(len(order_customer)), pa.int32()),
                "customer_id": pa.array(order_customer, pa.int32()),
                "amount": np.round(rng.lognormal(3, 0.8, len(order_customer)), 2),
                "channel": pa.array(rng.choice(["web", "store"], len(order_customer))),
            }
        ),
        "refunds": pa.table(
            {
                "refund_id": pa.array(np.arange(len(refund_customer)), pa.int32()),
                "customer_id": pa.array(refund_customer, pa.int32()),
                "amount": np.round(rng.lognormal(2.5, 0.8, len(refund_customer)), 2),
            }
        ),
        "order_items": pa.table(
            {
                "item_id": pa.array(np.arange(len(item_order)), pa.int32()),
                "order_id": pa.array(item_order, pa.int32()),
                "weight": np.round(rng.lognormal(0, 1, len(item_order)), 3),
            }
        ),
    }
    write_tables(path, tables)
    return tables


def _label(path: Path, score_sql: str, column: str = "label") -> dict[int, int]:
    """Add `column` (0/1 INTEGER): whether the customer's score is above the median; NULL for
    held-out customers. Returns the true label of every customer."""
    con = duckdb.connect(str(path))
    try:
        con.execute(f"create or replace table scores as {score_sql}")
        median = con.execute("select median(score) from scores").fetchone()[0]
        con.execute(
            "create or replace table customers as select c.*, "
            f"(coalesce(s.score, 0) > {median})::integer as {column} "
            "from customers c left join scores s using (customer_id)"
        )
        truth = dict(con.execute(f"select customer_id, {column} from customers").fetchall())
        con.execute(f"update customers set {column} = null where customer_id % {HELD_OUT} = 0")
    finally:
        con.close()
    return truth


def _spec(
    tmp_path: Path,
    warehouse: Path,
    children: list[str],
    name: str,
    targets: tuple[str, ...] = ("label",),
    **extra,
):
    spaces = {
        "customers": {
            "table": "main.customers",
            "key": "customer_id",
            "columns": {target: {"target": True} for target in targets},
            "children": [{"space": c, "foreign_key": "customer_id"} for c in children],
            **extra,
        },
        "orders": {
            "table": "main.orders",
            "key": "order_id",
            "children": [{"space": "order_items", "foreign_key": "order_id"}],
        },
        "refunds": {"table": "main.refunds", "key": "refund_id"},
        "order_items": {"table": "main.order_items", "key": "item_id"},
    }
    used = {"customers", *children}
    if "orders" in used:
        used.add("order_items")
    data = {
        "warehouse": str(warehouse),
        "artifacts": str(tmp_path / f"artifacts_{name}"),
        "output_schema": f"ml_{name}",
        "seed": 0,
        "training": {"steps": 60},
        "spaces": {k: v for k, v in spaces.items() if k in used},
    }
    return write_spec(tmp_path / f"{name}.yaml", data)


def _held_out_auc(spec, truth: dict[int, int], target: str) -> float:
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        rows = con.execute(
            f"select customer_id, probabilities['1'], split "
            f"from {spec.output_schema}.customers__{target}_predictions "
            f"where customer_id % {HELD_OUT} = 0"
        ).fetchall()
    finally:
        con.close()
    assert rows and all(split == "unlabelled" for _, _, split in rows)
    return roc_auc_score([truth[k] for k, _, _ in rows], [p for _, p, _ in rows])


LABELS = {
    "sum_label": "select customer_id, sum(amount) as score from orders group by 1",
    "ratio_label": (
        "select o.customer_id, coalesce(r.total, 0) / o.total as score from "
        "(select customer_id, sum(amount) as total from orders group by 1) o left join "
        "(select customer_id, sum(amount) as total from refunds group by 1) r using "
        "(customer_id)"
    ),
    "grandchild_label": (
        "select o.customer_id, sum(i.weight) as score from orders o "
        "join order_items i using (order_id) group by 1"
    ),
}
"""Three labels only the children carry: a sum of a child column, the ratio of two
children's sums, a sum over a grandchild."""


@dataclass
class ShopRuns:
    hierarchy: Spec
    parent_only: Spec
    truth: dict[str, dict[int, int]]


@pytest.fixture(scope="module")
def shop_runs(tmp_path_factory) -> ShopRuns:
    """One shop with the three labels as targets, run with its children and without them."""
    folder = tmp_path_factory.mktemp("shop")
    warehouse = folder / "w.duckdb"
    _shop(warehouse)
    truth = {target: _label(warehouse, sql, target) for target, sql in LABELS.items()}
    hierarchy = _spec(folder, warehouse, ["orders", "refunds"], "hierarchy", tuple(LABELS))
    runner.run(hierarchy, progress=False)
    parent_only = _spec(folder, warehouse, [], "parent", tuple(LABELS))
    runner.run(parent_only, progress=False)
    return ShopRuns(hierarchy, parent_only, truth)


@pytest.mark.parametrize("target", list(LABELS))
def test_children_signal_is_found_where_the_parent_alone_fails(
    shop_runs: ShopRuns, target: str
) -> None:
    truth = shop_runs.truth[target]
    assert _held_out_auc(shop_runs.hierarchy, truth, target) >= 0.9
    assert _held_out_auc(shop_runs.parent_only, truth, target) < 0.65


def _similar_rows_auc(spec: Spec, truth: dict[int, int], k: int = 25) -> float:
    """AUC on the held-out customers of the mean label of their k most similar labelled
    customers, by cosine similarity of the stored embeddings (what `search` gives a user)."""
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        rows = con.execute(
            f"select customer_id, embedding from {spec.output_schema}.customers_embeddings "
            "order by customer_id"
        ).fetchall()
    finally:
        con.close()
    keys = np.array([key for key, _ in rows])
    vectors = np.array([vector for _, vector in rows], dtype=np.float64)
    labels = np.array([truth[key] for key in keys])
    held_out = keys % HELD_OUT == 0
    similarity = vectors[held_out] @ vectors[~held_out].T
    nearest = np.argsort(-similarity, axis=1)[:, :k]
    return roc_auc_score(labels[held_out], labels[~held_out][nearest].mean(axis=1))


@pytest.mark.parametrize("target", list(LABELS))
def test_similar_rows_carry_the_childrens_signal(shop_runs: ShopRuns, target: str) -> None:
    """The stored embedding, which no target shaped (one embedding serves three targets),
    puts customers with similar children near each other; the parent-only space cannot."""
    truth = shop_runs.truth[target]
    # measured 0.94-0.98 with the hierarchy, 0.47-0.52 with the customers' own columns
    assert _similar_rows_auc(shop_runs.hierarchy, truth) >= 0.85
    assert _similar_rows_auc(shop_runs.parent_only, truth) < 0.65


def test_integer_target_is_predicted_in_its_own_values(shop_runs: ShopRuns, tmp_path: Path) -> None:
    spec = shop_runs.hierarchy
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        table = f"{spec.output_schema}.customers__sum_label_predictions"
        (kind,) = con.execute(
            f"select data_type from information_schema.columns where table_schema = "
            f"'{spec.output_schema}' and table_name = 'customers__sum_label_predictions' "
            "and column_name = 'prediction'"
        ).fetchone()
        keys = con.execute(
            f"select distinct unnest(map_keys(probabilities)) from {table}"
        ).fetchall()
        ones = con.execute(f"select count(*) from {table} where prediction = 1").fetchone()[0]
        splits = dict(con.execute(f"select split, count(*) from {table} group by 1").fetchall())
    finally:
        con.close()
    assert kind == "INTEGER"
    assert sorted(k for (k,) in keys) == ["0", "1"]
    assert 0 < ones < N_CUSTOMERS
    assert splits == {"train": N_CUSTOMERS - N_CUSTOMERS // HELD_OUT, "unlabelled": 150}

    # a retrained space (another seed) makes the predictor stale: refused, not used silently
    # (on a copy of the warehouse and the models, which the other tests read)
    shutil.copy(spec.warehouse, tmp_path / "w.duckdb")
    shutil.copytree(spec.artifacts, tmp_path / "artifacts")
    data = spec.model_dump(mode="json")
    data.update(seed=1, warehouse=str(tmp_path / "w.duckdb"), artifacts=str(tmp_path / "artifacts"))
    reseeded = write_spec(tmp_path / "reseeded.yaml", data)
    runner.train(reseeded, "customers", progress=False)
    runner.embed(reseeded, "customers")
    with pytest.raises(PipelineError, match=r"predictor customers\.sum_label was trained on"):
        runner.predict(reseeded, "customers", "sum_label")


@pytest.mark.slow  # ~20 s: a whole run on a filtered parent view
def test_filtered_parent_view_trains_with_a_coverage_warning(tmp_path: Path) -> None:
    warehouse = tmp_path / "w.duckdb"
    _shop(warehouse)
    _label(warehouse, "select customer_id, sum(amount) as score from orders group by 1")
    con = duckdb.connect(str(warehouse))
    con.execute("create view active_customers as select * from customers where age >= 50")
    con.close()
    spec = _spec(tmp_path, warehouse, ["orders"], "filtered")
    data = spec.model_dump(mode="json")
    data["spaces"]["customers"]["table"] = "main.active_customers"
    spec = write_spec(tmp_path / "filtered2.yaml", data)
    with pytest.warns(DataWarning, match=r"only \d+% of orders rows find a customers row"):
        runner.run(spec, progress=False)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        status, coverage = con.execute(
            f"select status, coverage from {spec.output_schema}.join_report "
            "where parent = 'customers' and child = 'orders'"
        ).fetchone()
        scored = con.execute(
            f"select count(*) from {spec.output_schema}.customers__label_predictions"
        ).fetchone()[0]
        active = con.execute("select count(*) from active_customers").fetchone()[0]
    finally:
        con.close()
    assert status == "warn" and 0.3 < coverage < 0.7
    assert scored == active
