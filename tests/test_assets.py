"""The Dagster code location: graph generated from the spec, real runs in process.

Real parts throughout: a DuckDB file from the demo generator, dbt as a subprocess, and
`dg.materialize` on an ephemeral instance.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
import yaml

from pipeline.demo import generate_demo_warehouse
from pipeline.spec import parse_spec

REPO = Path(__file__).resolve().parent.parent
SQL = REPO / "sql"
DBT = str(Path(sys.executable).parent / "dbt")
FAST_TRAINING = {"steps": 40, "predictor_epochs": 20}
SPACES = ["customers", "orders", "order_items", "products", "support_tickets", "regions"]


def run_dbt(*args: str, warehouse: Path) -> None:
    """dbt as a subprocess, the way the assets run it."""
    env = {**os.environ, "WAREHOUSE_PATH": str(warehouse)}
    result = subprocess.run(
        [DBT, *args, "--project-dir", str(SQL), "--profiles-dir", str(SQL)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def write_spec(folder: Path, warehouse: Path, spaces: dict | None = None) -> Path:
    """The repository's spaces.yaml pointed at `warehouse`, with fast training."""
    data = yaml.safe_load((REPO / "spaces.yaml").read_text())
    data.update(
        warehouse=str(warehouse), artifacts=str(folder / "artifacts"), training=FAST_TRAINING
    )
    if spaces is not None:
        data["spaces"] = spaces
    path = folder / "spaces.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def count(warehouse: Path, sql: str) -> int:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.fixture(scope="module", autouse=True)
def dbt_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`dbt parse` writes sql/target/manifest.json, which the dbt assets are built from."""
    run_dbt("parse", warehouse=tmp_path_factory.mktemp("parse") / "unused.duckdb")
    return SQL / "target" / "manifest.json"


@pytest.fixture()
def keep_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dbt assets set WAREHOUSE_PATH for their subprocess; restore it after the test."""
    monkeypatch.setenv("WAREHOUSE_PATH", os.environ.get("WAREHOUSE_PATH", "unset"))


def load_code_location(monkeypatch: pytest.MonkeyPatch, spec: Path) -> dg.Definitions:
    """Import `assets.definitions` afresh, as `dagster -m assets.definitions` would."""
    monkeypatch.setenv("SPACES_SPEC", str(spec))
    monkeypatch.delitem(sys.modules, "assets.definitions", raising=False)
    return importlib.import_module("assets.definitions").defs


def test_definitions_follow_the_spec_without_touching_the_warehouse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "not_yet" / "warehouse.duckdb"
    defs = load_code_location(monkeypatch, write_spec(tmp_path, warehouse))
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}

    for space in SPACES:
        for kind in ("profile", "space", "embeddings"):
            assert f"ml/{space}_{kind}" in keys
            assert graph.get(dg.AssetKey(["ml", f"{space}_{kind}"])).group_name == space
    assert {"ml/customers__churned_predictor", "ml/customers__churned_predictions"} <= keys
    assert not any(k.endswith("_predictor") for k in keys - {"ml/customers__churned_predictor"})

    checks = {
        c.to_user_string(): c for c in graph.asset_check_keys if c.asset_key.has_prefix(["ml"])
    }
    joins = {k: c for k, c in checks.items() if ":join_" in k}
    assert set(joins) == {
        "ml/customers_profile:join_customers__orders",
        "ml/customers_profile:join_customers__support_tickets",
        "ml/customers_profile:join_regions__customers",
        "ml/orders_profile:join_orders__order_items",
        "ml/order_items_profile:join_products__order_items",
    }
    assert all(graph.get_check_spec(key).blocking for key in joins.values())
    quality = set(checks) - set(joins)
    assert quality == {
        f"ml/{space}_profile:{check}"
        for space in SPACES
        for check in ("data_quality", "column_values")
    }
    assert not any(graph.get_check_spec(checks[key]).blocking for key in quality)

    groups = {
        graph.get(k).group_name for k in graph.get_all_asset_keys() if not k.has_prefix(["ml"])
    }
    assert {"dbt_staging", "dbt_marts"} <= groups
    assert graph.get(dg.AssetKey("stg_customers")).group_name == "dbt_staging"
    mart = graph.get(dg.AssetKey(["marts", "customer_churn_risk"]))
    assert mart.group_name == "dbt_marts"
    assert {
        dg.AssetKey(["ml", "customers_neighbours"]),
        dg.AssetKey(["ml", "customers__churned_predictions"]),
    } <= mart.parent_keys
    neighbours = graph.get(dg.AssetKey(["ml", "customers_neighbours"]))
    assert dg.AssetKey(["ml", "customers_embeddings"]) in neighbours.parent_keys
    # a pooled child space keeps no neighbours table unless its spec asks
    assert not graph.has(dg.AssetKey(["ml", "orders_neighbours"]))
    assert (
        dg.AssetKey("stg_customers")
        in graph.get(dg.AssetKey(["ml", "customers_profile"])).parent_keys
    )
    space_parents = graph.get(dg.AssetKey(["ml", "customers_space"])).parent_keys
    assert dg.AssetKey(["ml", "orders_embeddings"]) in space_parents

    schedules = {s.name: s.cron_schedule for s in defs.schedules}
    assert schedules == {
        "nightly_bring_up_to_date": "0 2 * * *",
        "weekly_retrain_all": "0 4 * * 0",
    }
    assert {j.name for j in defs.jobs} == {"bring_up_to_date", "retrain_all"}
    # the nightly job profiles every space first (its blocking join checks guard the rest) and
    # trains the spaces and predictors only where needed; the weekly one forces training
    nightly = next(s.job for s in defs.schedules if s.name == "nightly_bring_up_to_date")
    selected = nightly.selection.resolve(defs.resolve_asset_graph())
    for name in ("customers_profile", "customers_space", "customers_embeddings"):
        assert dg.AssetKey(["ml", name]) in selected
    ops = nightly.config["ops"]
    assert ops["ml__customers_space"] == {"config": {"retrain": False}}
    assert ops["ml__customers__churned_predictor"] == {"config": {"retrain": False}}
    weekly = next(s.job for s in defs.schedules if s.name == "weekly_retrain_all")
    assert not weekly.config
    assert not warehouse.parent.exists(), "loading the code location must not open the warehouse"


def test_missing_spec_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="SPACES_SPEC") as error:
        load_code_location(monkeypatch, tmp_path / "nowhere.yaml")
    assert str(tmp_path / "nowhere.yaml") in str(error.value)


def test_two_links_between_one_pair_get_distinct_check_names() -> None:
    from assets.factory import join_checks_of

    spec = parse_spec(
        {
            "warehouse": "w.duckdb",
            "spaces": {
                "flights": {
                    "table": "main.flights",
                    "key": "flight_id",
                    "references": [
                        {"space": "airports", "foreign_key": "origin"},
                        {"space": "airports", "foreign_key": "destination"},
                    ],
                },
                "airports": {"table": "main.airports", "key": "code"},
            },
        }
    )
    assert sorted(join_checks_of(spec, "flights").values()) == [
        "join_airports__flights__destination",
        "join_airports__flights__origin",
    ]
    assert join_checks_of(spec, "airports") == {}


def test_materialize_everything_on_a_tiny_demo_warehouse(tmp_path: Path, keep_env: None) -> None:
    from assets.factory import build_definitions

    warehouse = tmp_path / "warehouse.duckdb"
    generate_demo_warehouse(warehouse, scale=0.1, seed=0)
    defs = build_definitions(write_spec(tmp_path, warehouse))

    result = dg.materialize(
        list(defs.assets), resources=defs.resources, instance=dg.DagsterInstance.ephemeral()
    )

    assert result.success
    customers = count(warehouse, "select count(*) from main.stg_customers")
    for table in ("ml.customers_embeddings", "ml.customers__churned_predictions"):
        assert count(warehouse, f"select count(distinct customer_id) from {table}") == customers
        assert count(warehouse, f"select count(*) from {table}") == customers
    assert count(warehouse, "select count(*) from marts.customer_churn_risk") == customers
    assert count(warehouse, "select count(churn_probability) from marts.customer_churn_risk") == (
        customers
    )
    # the mart's similar customers are the neighbours table's first five, and at this size
    # the index is exact: the five most similar embeddings, every pair compared here
    with duckdb.connect(str(warehouse), read_only=True) as con:
        mart = dict(
            con.execute(
                "select customer_id, similar_customers from marts.customer_churn_risk"
            ).fetchall()
        )
        exact = dict(
            con.execute(
                "select a.customer_id, list(b.customer_id order by "
                "array_cosine_similarity(a.embedding, b.embedding) desc, b.customer_id)[1:5] "
                "from ml.customers_embeddings a join ml.customers_embeddings b "
                "on a.customer_id <> b.customer_id group by a.customer_id"
            ).fetchall()
        )
    assert len(mart) == customers
    agree = np.mean([len(set(mart[c]) & set(exact[c])) / 5 for c in mart])
    assert agree > 0.99, agree  # ties between equal similarities may order differently

    materialized = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    profile = materialized["ml/customers_profile"]
    assert profile["columns"].value > 0 and profile["table_rows"].value == customers
    assert "excluded_columns" in profile
    assert materialized["ml/customers_space"]["steps"].value == FAST_TRAINING["steps"]
    embeddings = materialized["ml/customers_embeddings"]
    assert embeddings["dagster/row_count"].value == customers
    assert embeddings["rows_written"].value == customers  # a first materialization: every row
    assert materialized["ml/customers_space"]["trained"].value.startswith("yes")
    columns = [c.name for c in embeddings["dagster/column_schema"].schema.columns]
    assert {"customer_id", "embedding", "embedding_3d"} <= set(columns)
    assert "auc" in materialized["ml/customers__churned_predictor"]
    space = materialized["ml/customers_space"]
    for plot in (space["training_plot"], space["mutual_information_plot"], embeddings["sphere_3d"]):
        assert plot.value.startswith("![") and "data:image/png;base64," in plot.value

    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} >= {
        "join_customers__orders",
        "join_regions__customers",
    }
    assert all(e.passed for e in evaluations), [e.check_name for e in evaluations if not e.passed]
    quality = [e for e in evaluations if e.check_name == "data_quality"]
    assert len(quality) == 6
    assert all(e.metadata["data_docs"].value.endswith("index.html") for e in quality)
    join = next(e for e in evaluations if e.check_name == "join_customers__orders")
    assert join.metadata["coverage"].value == 1.0 and join.metadata["orphans"].value == 0


def test_failing_join_check_blocks_the_spaces_that_read_it(tmp_path: Path, keep_env: None) -> None:
    from assets.factory import build_definitions

    warehouse = tmp_path / "warehouse.duckdb"
    generate_demo_warehouse(warehouse, scale=0.1, seed=0)
    con = duckdb.connect(str(warehouse))
    try:  # no order points to a customer any more
        con.execute("update raw.orders set customer_id = customer_id + 1000000")
    finally:
        con.close()
    run_dbt("run", "--select", "staging", warehouse=warehouse)
    spaces = yaml.safe_load((REPO / "spaces.yaml").read_text())["spaces"]
    customers = {k: v for k, v in spaces["customers"].items() if k != "references"}
    customers["children"] = [c for c in customers["children"] if c["space"] == "orders"]
    orders = {k: v for k, v in spaces["orders"].items() if k != "children"}
    defs = build_definitions(
        write_spec(tmp_path, warehouse, spaces={"customers": customers, "orders": orders})
    )

    result = dg.materialize(
        list(defs.assets),
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        selection=dg.AssetSelection.key_prefixes("ml"),
        raise_on_error=False,
    )

    assert not result.success
    assert result.get_failed_step_keys() == {"ml__customers_profile"}
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["join_customers__orders"].passed
    assert evaluations["join_customers__orders"].metadata["coverage"].value == 0.0
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "ml/customers_profile" in materialized
    assert {"ml/orders_space", "ml/orders_embeddings"} <= materialized
    assert not materialized & {"ml/customers_space", "ml/customers_embeddings"}
    assert result.is_node_success("ml__orders_space")
    for node in ("ml__customers_space", "ml__customers_embeddings"):
        assert result.is_node_untouched(node) or result.is_node_skipped(node), node
