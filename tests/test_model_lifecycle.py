"""Results you can trust: lineage between models, model files replaced as whole sets, a
warehouse other processes can read while a space trains, and leakage flagged before a
predictor trains."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline import runner
from pipeline.errors import LeakageWarning, PipelineError, TrainingHealthError
from pipeline.spaces.space import Space
from pipeline.spec import load_spec
from pipeline.store import model_store
from pipeline.warehouse.connection import Warehouse, WarehouseLockedError
from tests.conftest import write_spec

REPO = Path(__file__).resolve().parents[1]


def _shop(folder: Path, n_customers: int = 300, leaky: bool = False) -> Path:
    """customers <- orders. `churned` is planted from the orders' mean amount, one customer in
    seven flipped (no honest input predicts it perfectly); with `leaky`, orders carry a
    `refund` whose sum per customer equals the label."""
    warehouse = folder / "w.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute(
        f"create table customers as select range::integer as customer_id, "
        f"'p' || (range % 3) as plan, (range % 50)::double as age from range({n_customers})"
    )
    con.execute(
        "create table orders as select row_number() over ()::integer as order_id, "
        "c.customer_id, (hash(c.customer_id * 31 + o.n) % 100)::double as amount, "
        "timestamp '2026-01-01' + to_days(o.n::integer) as ordered_at "
        "from customers c, lateral (select range as n from range(1 + c.customer_id % 5)) o"
    )
    con.execute(
        "alter table customers add column churned integer; "
        "update customers set churned = (select ((sum(amount) / count(*) > 50) "
        "!= (hash(customers.customer_id) % 7 = 0))::integer "
        "from orders o where o.customer_id = customers.customer_id)"
    )
    if leaky:
        con.execute(
            "alter table orders add column refund double; "
            "update orders set refund = (select churned from customers c "
            "where c.customer_id = orders.customer_id) / (1 + customer_id % 5)"
        )
    con.close()
    return warehouse


def _spec(folder: Path, warehouse: Path, steps: int = 30, training: dict | None = None, **extra):
    return write_spec(
        folder / "spaces.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(folder / "artifacts"),
            "training": {"steps": steps, **(training or {})},
            **extra,
            "spaces": {
                "customers": {
                    "table": "main.customers",
                    "key": "customer_id",
                    "columns": {"churned": {"target": True, "model": "gbdt"}},
                    "children": [{"space": "orders", "foreign_key": "customer_id"}],
                },
                "orders": {"table": "main.orders", "key": "order_id", "time_column": "ordered_at"},
            },
        },
    )


def test_a_retrained_child_makes_its_parent_stale_until_run_retrains_it(tmp_path: Path):
    spec = _spec(tmp_path, _shop(tmp_path))
    runner.run(spec, progress=False)
    first_orders = Space.load(runner.space_folder(spec, "orders")).version
    customers = Space.load(runner.space_folder(spec, "customers"))
    assert customers.read_versions == {"orders": first_orders}

    # the child retrained on other settings (a new version) and re-embedded
    retrained = _spec(tmp_path, tmp_path / "w.duckdb", steps=31)
    new_orders = runner.train(retrained, "orders", progress=False).version
    assert new_orders != first_orders
    runner.embed(retrained, "orders")
    for step in (
        lambda: runner.embed(retrained, "customers"),
        lambda: runner.predict(retrained, "customers", "churned"),
    ):
        with pytest.raises(PipelineError, match="orders") as refused:
            step()
        message = str(refused.value)
        assert "stale" in message and first_orders in message and new_orders in message
        assert "python -m pipeline train --space customers" in message

    runner.run(retrained, progress=False)
    customers = Space.load(runner.space_folder(retrained, "customers"))
    assert customers.read_versions == {"orders": new_orders}
    with duckdb.connect(str(retrained.warehouse), read_only=True) as con:
        recorded = con.execute(
            "select read_versions from ml.training_runs where space = 'customers' "
            "and kind = 'space' order by finished_at desc limit 1"
        ).fetchone()[0]
    assert json.loads(recorded) == {"orders": new_orders}


def test_model_sets_are_versioned_checked_and_can_be_rolled_back(tmp_path: Path):
    spec = _spec(tmp_path, _shop(tmp_path, n_customers=60), keep_versions=2)
    folder = runner.space_folder(spec, "orders")
    versions = []
    for steps in (5, 6, 7):
        changed = _spec(tmp_path, tmp_path / "w.duckdb", steps=steps, keep_versions=2)
        versions.append(runner.train(changed, "orders", progress=False).version)
    assert len(set(versions)) == 3
    kept = model_store.versions(folder)
    assert [name.split("-", 1)[1] for name in kept] == versions[1:]  # keep_versions: 2
    assert Space.load(folder).version == versions[2]

    assert model_store.roll_back(folder, "space orders").endswith(versions[1])
    assert Space.load(folder).version == versions[1]

    # a file changed after saving: the set is refused, naming the file
    current = model_store.current_set(folder, "space orders")
    (current / "space.json").write_text((current / "space.json").read_text() + " ")
    with pytest.raises(PipelineError, match="space.json does not match"):
        Space.load(folder)


_TRAIN_AND_EMBED = textwrap.dedent(
    """
    import sys
    from pipeline import runner
    from pipeline.spec import load_spec
    spec = load_spec(sys.argv[1])
    print("ready", flush=True)
    runner.train(spec, "orders", progress=False)
    runner.embed(spec, "orders")
    print("done", flush=True)
    """
)


def _start(spec_path: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_AND_EMBED, str(spec_path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"  # imports done
    return process


@pytest.mark.slow
def test_a_killed_training_leaves_the_previous_or_the_new_model_whole(tmp_path: Path):
    """SIGKILL at 20 random moments of train + embed: each time one whole model set loads
    (the previous or the new one), embeds, and every ml table reads whole."""
    warehouse = _shop(tmp_path, n_customers=80)
    spec_path = tmp_path / "spaces.yaml"
    folder = tmp_path / "artifacts" / "orders"
    _spec(tmp_path, warehouse, steps=4)
    started = time.monotonic()
    whole = _start(spec_path)  # one run without a kill: how long train + embed take
    assert whole.stdout.readline().strip() == "done" and whole.wait() == 0
    duration = time.monotonic() - started
    rng = random.Random(0)
    saved = {Space.load(folder).version}
    for attempt in range(20):
        _spec(tmp_path, warehouse, steps=5 + attempt)  # each run a new version
        process = _start(spec_path)
        time.sleep(rng.uniform(0.0, duration))
        process.send_signal(signal.SIGKILL)
        process.wait()
        spec = load_spec(spec_path)
        space = Space.load(folder)  # whole: every file matches its manifest
        saved.add(space.version)
        runner.embed(spec, "orders")  # brings whatever the kill left up to date
        with duckdb.connect(str(warehouse), read_only=True) as con:
            rows = con.execute(
                "select (select count(*) from ml.orders_embeddings), "
                "(select count(*) from main.orders)"
            ).fetchone()
            assert rows[0] == rows[1]
            tables = con.execute(
                "select table_name from information_schema.tables where table_schema = 'ml'"
            ).fetchall()
            for (table,) in tables:
                con.execute(f'select * from ml."{table}"').fetchall()
            versions = con.execute(
                "select distinct space_version from ml.orders_embeddings"
            ).fetchall()
        assert versions == [(space.version,)]
    assert len(saved) >= 3  # kills landed both before and after new sets were made current


_TRAIN_WITH_MARKER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import pipeline.spaces.space
    from pipeline import runner
    from pipeline.spec import load_spec
    original = pipeline.spaces.space.train_space

    def marked(*args, **kwargs):
        Path(sys.argv[2]).write_text("training")
        return original(*args, **kwargs)

    pipeline.spaces.space.train_space = marked
    runner.train(load_spec(sys.argv[1]), "customers", progress=False)
    """
)


@pytest.mark.slow
def test_another_process_reads_the_warehouse_while_a_space_trains(tmp_path: Path):
    spec = _spec(tmp_path, _shop(tmp_path), steps=30)
    runner.validate(spec)
    runner.train(spec, "orders", progress=False)
    runner.embed(spec, "orders")
    _spec(tmp_path, tmp_path / "w.duckdb", steps=400)
    marker = tmp_path / "training.marker"
    process = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_WITH_MARKER, str(tmp_path / "spaces.yaml"), str(marker)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the training subprocess never started training"
        with Warehouse(spec.warehouse, lock_timeout_s=0).connect(read_only=True) as con:
            rows = con.execute("select count(*) from ml.orders_embeddings").fetchone()[0]
        assert process.poll() is None, "training ended before the read: not a concurrent read"
        assert rows > 0
    except BaseException:
        process.kill()
        raise
    assert process.wait(timeout=300) == 0


def test_a_locked_warehouse_is_waited_for_then_named(tmp_path: Path):
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    holder = textwrap.dedent(
        """
        import sys, time, duckdb
        con = duckdb.connect(sys.argv[1])
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
        """
    )
    brief = subprocess.Popen(
        [sys.executable, "-c", holder, str(path), "1.5"], stdout=subprocess.PIPE, text=True
    )
    assert brief.stdout.readline().strip() == "locked"
    with Warehouse(path, lock_timeout_s=30).connect() as con:  # waits for the lock
        assert con.execute("select 1").fetchone() == (1,)
    brief.wait()

    long = subprocess.Popen(
        [sys.executable, "-c", holder, str(path), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert long.stdout.readline().strip() == "locked"
        with (
            pytest.raises(WarehouseLockedError, match=f"PID {long.pid}"),
            Warehouse(path, lock_timeout_s=1).connect(),
        ):
            pass
    finally:
        long.kill()
        long.wait()


def test_a_leaky_child_column_is_flagged_and_recorded(tmp_path: Path):
    spec = _spec(tmp_path, _shop(tmp_path, leaky=True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.run(spec, progress=False)
    leaks = [str(w.message) for w in caught if issubclass(w.category, LeakageWarning)]
    assert any("orders/refund/sum" in m and "churned" in m for m in leaks), leaks
    # honest inputs are not flagged: the plan, the age, the order amounts
    assert not any("column plan" in m or "column age" in m for m in leaks)
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        recorded = con.execute(
            "select warnings, epochs, steps, hyperparameters from ml.training_runs "
            "where kind = 'predictor'"
        ).fetchone()
    assert any("orders/refund/sum" in w for w in recorded[0])
    assert recorded[1] > 0 and recorded[2] > 0
    assert json.loads(recorded[3])["candidate"] == "gbdt"


def _outputs(spec) -> dict[str, list]:
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        schema = spec.output_schema
        return {
            "orders": con.execute(
                f"select order_id, embedding, embedding_3d from {schema}.orders_embeddings "
                "order by order_id"
            ).fetchall(),
            "customers": con.execute(
                f"select customer_id, embedding, embedding_3d from {schema}.customers_embeddings "
                "order by customer_id"
            ).fetchall(),
            "predictions": con.execute(
                f"select customer_id, prediction, probability, probabilities, ood_sigma, split "
                f"from {schema}.customers__churned_predictions order by customer_id"
            ).fetchall(),
        }


def test_a_hierarchy_with_a_predictor_is_bit_identical_for_the_same_seed(tmp_path: Path):
    warehouse = _shop(tmp_path)
    outputs = {}
    for schema, seed in (("ml_a", 3), ("ml_b", 3), ("ml_c", 4)):
        folder = tmp_path / schema
        folder.mkdir()
        spec = _spec(folder, warehouse, output_schema=schema, seed=seed)
        runner.run(spec, progress=False)
        outputs[schema] = _outputs(spec)
    assert len(outputs["ml_a"]["predictions"]) == 300
    assert outputs["ml_a"] == outputs["ml_b"]
    assert outputs["ml_a"]["orders"] != outputs["ml_c"]["orders"]
    assert outputs["ml_a"]["customers"] != outputs["ml_c"]["customers"]


def test_a_space_that_still_diverges_after_the_retry_is_not_saved(tmp_path: Path):
    warehouse = _shop(tmp_path, n_customers=60)
    folder = tmp_path / "artifacts" / "orders"
    first = runner.train(_spec(tmp_path, warehouse, steps=10), "orders", progress=False)
    diverging = _spec(tmp_path, warehouse, steps=10, training={"learning_rate": 1e9})
    with pytest.raises(TrainingHealthError, match="space orders") as failed:
        runner.train(diverging, "orders", progress=False)
    assert "accept_unhealthy" in str(failed.value)
    assert Space.load(folder).version == first.version  # the previous model stays current
    with duckdb.connect(str(warehouse), read_only=True) as con:
        recorded = con.execute(
            "select detected_failures from ml.training_runs where version = 'not saved'"
        ).fetchall()
    assert len(recorded) == 1 and any("unstable" in f or "collapse" in f for f in recorded[0][0])
    accepted = _spec(
        tmp_path, warehouse, steps=10, training={"learning_rate": 1e9, "accept_unhealthy": True}
    )
    kept = runner.train(accepted, "orders", progress=False)
    assert kept.training.unhealthy and Space.load(folder).version == kept.version


def test_rows_built_far_outside_the_training_data_are_flagged(tmp_path: Path):
    spec = _spec(tmp_path, _shop(tmp_path))
    runner.run(spec, progress=False)
    with duckdb.connect(str(spec.warehouse)) as con:  # 20 customers unlike any trained on
        con.execute(
            "insert into customers select 1000 + range, 'never-seen', 1e6, null from range(20)"
        )
        con.execute(
            "insert into orders select 100000 + range, 1000 + range % 20, 1e9 + range, "
            "timestamp '2090-01-01' + to_days(range::integer) from range(1000)"
        )
    for name in ("orders", "customers"):
        runner.embed(spec, name)
    runner.predict(spec, "customers", "churned")
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        rows = con.execute(
            "select customer_id >= 1000, ood_sigma, warnings from ml.customers__churned_predictions"
        ).fetchall()
    far = [(sigma, warnings) for built, sigma, warnings in rows if built]
    near = [sigma for built, sigma, _ in rows if not built]
    assert len(far) == 20 and len(near) == 300
    assert all(
        sigma > 3 and any("out of distribution" in w for w in warnings) for sigma, warnings in far
    )
    assert np.mean(np.array(near) < 2) > 0.9
    # the warning names an input outside its training range
    assert all(any("outside its training range" in w for w in warnings) for _, warnings in far)
