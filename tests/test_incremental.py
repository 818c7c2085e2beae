"""Runs that redo only what changed: models kept unless something asks for a retrain, rows
embedded and predicted again only when their fingerprint changed (their own columns, their
children's, their references'), rows that left the table removed, the rest untouched."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.spaces import upkeep
from pipeline.spaces.neighbour_table import META_FILE, index_folder
from pipeline.spaces.space import Space
from pipeline.spaces.upkeep import DRIFT_NULLS, drift, profile_summary, retrain_reason
from pipeline.spec import Spec
from pipeline.store import model_store
from pipeline.understanding.profiling import ColumnProfile
from tests.conftest import write_spec

PREDICTIONS = "customers__churned_predictions"


@pytest.fixture
def copied_run(hierarchical_run: Spec, tmp_path: Path) -> Spec:
    """The session's finished demo run, copied: warehouse, models and spec."""
    warehouse = tmp_path / Path(hierarchical_run.warehouse).name  # dbt's views name the file
    shutil.copy(hierarchical_run.warehouse, warehouse)
    shutil.copytree(hierarchical_run.artifacts, tmp_path / "artifacts")
    data = hierarchical_run.model_dump(mode="json")
    data.update(warehouse=str(warehouse), artifacts=str(tmp_path / "artifacts"))
    return write_spec(tmp_path / "spaces.yaml", data)


def _stamps(spec: Spec, table: str, key: str, stamp: str) -> dict:
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        return dict(con.execute(f"select {key}, {stamp} from ml.{table}").fetchall())
    finally:
        con.close()


def _execute(spec: Spec, *statements: str) -> list:
    con = duckdb.connect(str(spec.warehouse))
    try:
        return [con.execute(s).fetchall() for s in statements]
    finally:
        con.close()


def _moved(before: dict, after: dict) -> set:
    return {key for key in after if before.get(key) != after[key]}


def test_a_second_run_on_unchanged_data_keeps_every_model_and_row(copied_run: Spec):
    embedded = _stamps(copied_run, "customers_embeddings", "customer_id", "embedded_at")
    predicted = _stamps(copied_run, PREDICTIONS, "customer_id", "predicted_at")
    runs = _execute(copied_run, "select count(*) from ml.training_runs")[0][0][0]
    summary = runner.run(copied_run, progress=False)
    assert all(s["trained"] is None and s["rows_embedded"] == 0 for s in summary.values())
    assert summary["customers"]["churned_trained"] is None
    assert summary["customers"]["churned_rows_predicted"] == 0
    assert _stamps(copied_run, "customers_embeddings", "customer_id", "embedded_at") == embedded
    assert _stamps(copied_run, PREDICTIONS, "customer_id", "predicted_at") == predicted
    assert _execute(copied_run, "select count(*) from ml.training_runs")[0][0][0] == runs


def test_changed_orders_reembed_and_rescore_only_their_customers(copied_run: Spec):
    customers = _stamps(copied_run, "customers_embeddings", "customer_id", "embedded_at")
    orders = _stamps(copied_run, "orders_embeddings", "order_id", "embedded_at")
    predicted = _stamps(copied_run, PREDICTIONS, "customer_id", "predicted_at")
    before = _execute(copied_run, "select customer_id, embedding from ml.customers_embeddings")[0]
    changed_orders, owners, gone, (new_id,) = _execute(
        copied_run,
        "select order_id from raw.orders order by order_id limit 3",
        "select distinct customer_id from raw.orders where order_id in "
        "(select order_id from raw.orders order by order_id limit 3)",
        # a customer without orders or tickets leaves; a new one arrives
        "select min(customer_id) from raw.customers where customer_id not in "
        "(select customer_id from raw.orders) and customer_id not in "
        "(select customer_id from raw.support_tickets)",
        "select max(customer_id) + 1 from raw.customers",
    )
    changed_orders = {r[0] for r in changed_orders}
    owners = {r[0] for r in owners}
    gone = gone[0][0]
    _execute(
        copied_run,
        "update raw.orders set total_amount = total_amount * 3 + 100 where order_id in "
        f"({', '.join(map(str, changed_orders))})",
        f"delete from raw.customers where customer_id = {gone}",
        f"insert into raw.customers select * replace ({new_id[0]} as customer_id) "
        "from raw.customers order by customer_id limit 1",
    )
    summary = runner.run(copied_run, progress=False)

    assert all(s["trained"] is None for s in summary.values())  # the models stay
    assert summary["orders"]["rows_embedded"] == len(changed_orders)
    assert summary["order_items"]["rows_embedded"] == 0
    assert summary["customers"]["rows_embedded"] == len(owners) + 1
    after = _stamps(copied_run, "customers_embeddings", "customer_id", "embedded_at")
    assert _moved(customers, after) == owners | {new_id[0]}
    assert gone not in after and set(after) == (set(customers) - {gone}) | {new_id[0]}
    assert _moved(orders, _stamps(copied_run, "orders_embeddings", "order_id", "embedded_at")) == (
        changed_orders
    )
    scored = _stamps(copied_run, PREDICTIONS, "customer_id", "predicted_at")
    assert _moved(predicted, scored) == owners | {new_id[0]} and gone not in scored
    # the unchanged rows keep their embeddings, the changed owners get new ones
    now = dict(
        _execute(copied_run, "select customer_id, embedding from ml.customers_embeddings")[0]
    )
    old = dict(before)
    assert all(now[k] == old[k] for k in old if k not in owners and k != gone)
    assert any(now[k] != old[k] for k in owners)
    _assert_neighbours_current(copied_run)
    meta = _neighbours_meta(copied_run)
    assert meta["changed_since_build"] > 0 and meta["rows"] == len(after)  # updated, not rebuilt


def _neighbours_meta(spec: Spec) -> dict:
    folder = index_folder(spec.artifacts, "customers")
    path = model_store.current_set(folder, "neighbours of customers", check=False)
    return json.loads((path / META_FILE).read_text())


def _assert_neighbours_current(spec: Spec) -> None:
    """Every customer lists its 10 nearest others with the cosine of their stored embeddings,
    and no row that left."""
    (keys,), (counts,), (worst,) = _execute(
        spec,
        "select count(*) from ml.customers_embeddings e anti join "
        "(select distinct customer_id from ml.customers_neighbours) n using (customer_id)",
        "select count(*) filter (where n != 10) from (select customer_id, count(*) as n "
        "from ml.customers_neighbours group by customer_id)",
        "select max(abs(n.similarity - array_cosine_similarity(a.embedding, b.embedding))) "
        "from ml.customers_neighbours n "
        "left join ml.customers_embeddings a on a.customer_id = n.customer_id "
        "left join ml.customers_embeddings b on b.customer_id = n.neighbour_customer_id",
    )
    assert keys == (0,) and counts == (0,)
    assert worst[0] is not None and worst[0] < 1e-5  # null: a row that left is listed


def test_a_run_stopped_before_its_neighbours_brings_them_up_to_date_next_time(
    copied_run: Spec,
):
    _execute(
        copied_run,
        "update raw.orders set total_amount = total_amount * 5 + 50 where order_id in "
        "(select order_id from raw.orders order by order_id limit 5)",
    )
    for name in ("order_items", "orders", "customers"):  # embedded, then stopped
        runner.embed(copied_run, name)
    summary = runner.run(copied_run, progress=False)
    assert all(s["rows_embedded"] == 0 for s in summary.values())
    _assert_neighbours_current(copied_run)


def test_a_spec_change_retrains_that_space_and_what_reads_it(copied_run: Spec):
    data = copied_run.model_dump(mode="json")
    data["spaces"]["support_tickets"]["columns"]["channel"] = {"active": False}
    spec = write_spec(Path(copied_run.warehouse).parent / "edited.yaml", data)
    summary = runner.run(spec, progress=False)
    trained = {name for name, s in summary.items() if s["trained"]}
    assert trained == {"support_tickets", "customers"}
    assert "spaces.support_tickets" in summary["support_tickets"]["trained"]
    assert "support_tickets" in summary["customers"]["trained"]  # it reads the retrained space
    assert summary["customers"]["churned_trained"] == "space customers was retrained"
    assert summary["orders"]["rows_embedded"] == 0


def _profile(column: str, null_fraction: float, detected: str = "scalar") -> ColumnProfile:
    return ColumnProfile("s", column, "DOUBLE", detected, "input", null_fraction, 10, False, "")


def test_retrain_reasons(hierarchical_run: Spec):
    spec = hierarchical_run
    saved = Space.load(runner.space_folder(spec, "orders"))
    versions = {"order_items": runner.current_space_version(spec, "order_items")}
    rows = saved.trained_on["rows"]
    profiles = [
        _profile(c, v["null_fraction"], v["type"]) for c, v in saved.trained_on["columns"].items()
    ]
    assert retrain_reason(spec, "orders", saved, versions, profiles, rows, False) is None
    assert retrain_reason(spec, "orders", saved, versions, profiles, rows, True)
    assert "no model" in retrain_reason(spec, "orders", None, versions, profiles, rows, False)
    stale = {"order_items": "another"}
    assert "order_items" in retrain_reason(spec, "orders", saved, stale, profiles, rows, False)
    assert "rows" in retrain_reason(spec, "orders", saved, versions, profiles, rows * 2, False)
    data = spec.model_dump(mode="json")
    data["spaces"]["orders"]["time_column"] = None
    edited = Spec.model_validate(data)
    assert "spec" in retrain_reason(edited, "orders", saved, versions, profiles, rows, False)
    # the neighbours setting and a target's predictor settings do not shape the space
    data = spec.model_dump(mode="json")
    data["spaces"]["orders"]["neighbours"] = 3
    data["spaces"]["customers"]["columns"]["churned"]["model"] = "gbdt"
    edited = Spec.model_validate(data)
    assert edited.space_digest("orders") == spec.space_digest("orders")
    assert edited.space_digest("customers") == spec.space_digest("customers")
    assert edited.target_digest("customers", "churned") != spec.target_digest(
        "customers", "churned"
    )


def test_drift_names_the_column_that_moved():
    trained_on = profile_summary([_profile("amount", 0.05), _profile("kind", 0.0, "category")], 100)
    assert drift(trained_on, [_profile("amount", 0.05 + DRIFT_NULLS / 2)], 100) is None
    moved = drift(trained_on, [_profile("amount", 0.05 + DRIFT_NULLS * 2)], 100)
    assert "amount" in moved and "null" in moved
    assert "kind" in drift(trained_on, [_profile("kind", 0.0, "text")], 100)
    assert drift(trained_on, [_profile("new", 0.9)], 110) is None  # a new column: schema drift
    assert drift({}, [], 5) is None  # a model saved before the record


def test_embedding_in_batches_resumes_from_the_batches_already_staged(
    copied_run: Spec, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(upkeep, "BATCH_ROWS", 50)
    table = "ml.customers_embeddings"
    (expected,) = _execute(copied_run, f"select customer_id, embedding from {table} order by 1")
    _execute(copied_run, f"delete from {table}")  # every row to embed again: 8 batches
    calls = []
    embed = Space.embed

    def failing(self, inputs, *args, **kwargs):
        calls.append(inputs.n_rows)
        if len(calls) == 3:
            raise RuntimeError("stopped in the third batch")
        return embed(self, inputs, *args, **kwargs)

    monkeypatch.setattr(Space, "embed", failing)
    with pytest.raises(RuntimeError, match="third batch"):
        runner.embed(copied_run, "customers")
    staged, live = _execute(
        copied_run,
        "select count(*) from ml._pending_customers_embeddings",
        f"select count(*) from {table}",
    )
    assert (staged[0][0], live[0][0]) == (100, 0)  # two batches staged, nothing published
    monkeypatch.setattr(Space, "embed", embed)
    assert runner.embed(copied_run, "customers") == len(expected) - 100
    (found,) = _execute(copied_run, f"select customer_id, embedding from {table} order by 1")
    assert [k for k, _ in found] == [k for k, _ in expected]
    np.testing.assert_allclose(
        np.array([e for _, e in found]), np.array([e for _, e in expected]), atol=1e-5
    )
    tables = _execute(copied_run, "select table_name from information_schema.tables")[0]
    assert ("_pending_customers_embeddings",) not in tables


def test_a_new_number_of_neighbours_rewrites_the_table_without_training(copied_run: Spec):
    data = copied_run.model_dump(mode="json")
    data["spaces"]["customers"]["neighbours"] = 3
    spec = write_spec(Path(copied_run.warehouse).parent / "three.yaml", data)
    summary = runner.run(spec, progress=False)
    assert all(s["trained"] is None for s in summary.values())
    (deepest,) = _execute(spec, "select max(rank) from ml.customers_neighbours")[0]
    assert deepest == (3,)


def test_predict_reads_the_stored_embeddings_and_only_the_columns_trees_read(
    copied_run: Spec, monkeypatch: pytest.MonkeyPatch
):
    """A tree predictor scores from the embeddings `embed` stored (same version, same row
    fingerprint) and reads only the parent's columns and child statistics beside them; a row
    whose stored embedding is stale sends its batch back to the space model. Both give the
    same predictions."""
    data = copied_run.model_dump(mode="json")
    data["spaces"]["customers"]["columns"]["churned"]["model"] = "gbdt"
    spec = write_spec(Path(copied_run.artifacts).parent / "gbdt.yaml", data)
    runner.train_target(spec, "customers", "churned")
    reads: list[bool] = []
    read_inputs = Space.read_inputs

    def spy(self, *args, **kwargs):
        inputs = read_inputs(self, *args, **kwargs)
        reads.append(inputs.tokens)
        return inputs

    monkeypatch.setattr(Space, "read_inputs", spy)
    n_rows = runner.predict(spec, "customers", "churned")
    assert n_rows > 0 and reads and not any(reads)  # no text vectors, child sets, references
    query = f"select customer_id, probability, feature_importance from ml.{PREDICTIONS}"
    light = {k: (p, f) for k, p, f in _execute(spec, query)[0]}
    assert len(light) == n_rows

    reads.clear()
    _execute(
        spec,
        "update ml.customers_embeddings set space_version = 'an older one' "
        "where customer_id % 2 = 0",
        f"delete from ml.{PREDICTIONS}",
    )
    assert runner.predict(spec, "customers", "churned") == n_rows
    assert reads and all(reads)  # stale embeddings: computed again from every token
    again = {k: (p, f) for k, p, f in _execute(spec, query)[0]}
    assert set(again) == set(light)
    np.testing.assert_allclose(
        [again[k][0] for k in light], [light[k][0] for k in light], rtol=1e-5, atol=1e-6
    )
    assert all(set(again[k][1]) == set(light[k][1]) for k in light)

    # inputs read for the trees cannot run the space model
    space = Space.load(runner.space_folder(spec, "customers"))
    with runner.warehouse_of(spec).connect() as con:
        inputs = read_inputs(space, runner.warehouse_of(spec), con, spec, tokens=False)
    assert not inputs.children and not inputs.references
    with pytest.raises(PipelineError, match="space customers: these inputs were read without"):
        space.embed(inputs)
