"""Bounded memory: a space trains on a fixed-size sample of a large table and embeds every
row in batches; the sample is the same for the same data and seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from pipeline import predicting, runner
from pipeline.spaces import space as space_module
from pipeline.spaces import upkeep
from pipeline.spaces.reads import sample_rows
from pipeline.warehouse import spill
from pipeline.warehouse.connection import fetch_arrow
from tests.conftest import FAST_TRAINING, REPO, demo_spec_dict, write_spec


def test_a_large_table_trains_on_a_sample_and_embeds_every_row(
    small_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    data = demo_spec_dict(small_demo, tmp_path / "a", training=FAST_TRAINING)
    data["spaces"] = {k: data["spaces"][k] for k in ("order_items", "products")}
    spec = write_spec(tmp_path / "s.yaml", data)
    monkeypatch.setattr(space_module, "TRAINING_ROWS", 60)
    monkeypatch.setattr(predicting, "TRAINING_ROWS", 60)
    monkeypatch.setattr(upkeep, "BATCH_ROWS", 70)
    read = []
    reader = space_module.read_space_inputs

    def counted(*args, **kwargs):
        inputs = reader(*args, **kwargs)
        read.append(inputs.n_rows)
        return inputs

    monkeypatch.setattr(space_module, "read_space_inputs", counted)
    summary = runner.run(spec, progress=False)
    with duckdb.connect(str(small_demo), read_only=True) as con:
        items = con.execute("select count(*) from main.stg_order_items").fetchone()[0]
        embedded = con.execute("select count(*) from ml.order_items_embeddings").fetchone()[0]
    assert items > 150  # the sample is smaller than the table, the batches are several
    products, sampled, *batches = read  # products fits whole; its embed reuses what it read
    assert products < 60 and sampled == 60
    assert batches == [70] * (items // 70) + ([items % 70] if items % 70 else [])
    assert summary["order_items"]["rows_embedded"] == embedded == items
    space = space_module.Space.load(runner.space_folder(spec, "order_items"))
    assert space.trained_on["rows"] == items  # drift is measured against the whole table

    with duckdb.connect(str(small_demo)) as con:
        first = con.execute(f"from {sample_rows(con, spec, 'order_items', 60, 0)}").fetchall()
        again = con.execute(f"from {sample_rows(con, spec, 'order_items', 60, 0)}").fetchall()
        other = con.execute(f"from {sample_rows(con, spec, 'order_items', 60, 1)}").fetchall()
    assert first == again and len(first) == 60 and set(first) != set(other)


def test_changed_keys_are_read_back_from_disk_in_the_slices_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The keys of the changed rows live in a file, not in memory: read back in order, in
    slices of whatever size is asked before each, across the file's own batches; the file
    goes with the object."""
    monkeypatch.setattr(spill, "READ_ROWS", 64)
    with duckdb.connect(str(tmp_path / "k.duckdb")) as con:
        spilled = spill.SpilledRows(
            con, "select range as k, range * 2 as f from range(1000) order by k desc"
        )
    assert spilled.num_rows == 1000 and os.path.getsize(spilled.path) > 8000
    sizes = iter([100, 7, 300, 1, 64, 10_000])
    parts = list(spilled.slices(lambda: next(sizes)))
    assert [p.num_rows for p in parts] == [100, 7, 300, 1, 64, 528]
    assert [k for p in parts for k in p.column("k").to_pylist()] == list(range(999, -1, -1))
    assert all(
        p.column("f").to_pylist() == [2 * k for k in p.column("k").to_pylist()] for p in parts
    )
    path = spilled.path
    del spilled
    assert not os.path.exists(path)


def test_spilled_rows_of_nothing_and_of_a_killed_process(tmp_path: Path):
    """No rows: no slice. A file whose process is gone is removed when the next is made in
    the same folder; a live process's file is kept."""
    folder = tmp_path / "spill"
    folder.mkdir()
    orphan = folder / f"{spill.PREFIX}999999999_x.arrows"
    live = folder / f"{spill.PREFIX}{os.getpid()}_y.arrows"
    orphan.write_bytes(b"left by a killed run")
    live.write_bytes(b"another step of this process")
    with duckdb.connect(str(tmp_path / "k.duckdb")) as con:
        empty = spill.SpilledRows(con, "select range as k from range(0)", folder=folder)
    assert empty.num_rows == 0 and list(empty.slices(lambda: 10)) == []
    assert not orphan.exists() and live.exists() and Path(empty.path).parent == folder


def test_given_inputs_are_recognised_across_several_slices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Inputs already read are used when they name exactly the changed rows, compared slice
    by slice: equal keys across slices are the same rows, one key off is not."""
    monkeypatch.setattr(upkeep, "BATCH_ROWS", 7)
    monkeypatch.setattr(spill, "READ_ROWS", 5)
    with duckdb.connect(str(tmp_path / "k.duckdb")) as con:
        changed = spill.SpilledRows(
            con, "select range as id, hash(range) as row_fingerprint from range(40) order by 1"
        )
        keys = fetch_arrow(con, "select range as id from range(40) order by 1")
        other = fetch_arrow(con, "select range + (range = 33)::int as id from range(40)")
    assert upkeep._same_rows(keys, changed)
    assert not upkeep._same_rows(other, changed)
    assert not upkeep._same_rows(keys.slice(0, 39), changed)


def test_wide_rows_come_in_smaller_batches_with_the_same_embeddings(
    small_demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A batch holds what fits `BATCH_BYTES`, measured on the batch before: the customers
    (child sets, child statistics, references) are embedded in batches whose inputs stay
    near the budget, and the embeddings are those of a single batch."""
    data = demo_spec_dict(small_demo, tmp_path / "a", training=FAST_TRAINING)
    customers = data["spaces"]["customers"]
    customers["children"] = customers["children"][:1]  # orders (with its children: none)
    customers.pop("columns")  # no target: no predictor to train
    data["spaces"]["orders"].pop("children")
    data["spaces"] = {k: data["spaces"][k] for k in ("customers", "orders", "regions")}
    spec = write_spec(tmp_path / "s.yaml", data)
    runner.run(spec, progress=False)
    with duckdb.connect(str(small_demo)) as con:
        whole = con.execute(
            "select customer_id, embedding from ml.customers_embeddings order by 1"
        ).fetchall()
        con.execute("delete from ml.customers_embeddings")
    read = []
    reader = space_module.read_space_inputs

    def measured(*args, **kwargs):
        inputs = reader(*args, **kwargs)
        read.append((inputs.n_rows, inputs.nbytes()))
        return inputs

    monkeypatch.setattr(space_module, "read_space_inputs", measured)
    monkeypatch.setattr(upkeep, "FIRST_BATCH_ROWS", 5)
    monkeypatch.setattr(upkeep, "MIN_BATCH_ROWS", 5)
    with duckdb.connect(str(small_demo), read_only=True) as con:
        n = con.execute("select count(*) from main.stg_customers").fetchone()[0]
    budget = 60_000  # about 10 rows of the demo's customers
    monkeypatch.setattr(upkeep, "BATCH_BYTES", budget)
    assert runner.embed(spec, "customers") == n
    rows = [r for r, _ in read]
    assert sum(rows) == n and rows[0] == 5 and len(rows) > 6
    for (before, held), size in zip(read[:-2], rows[1:-1], strict=True):
        assert size == max(5, int(budget // (held / before)))  # sized on the batch before
    assert all(held < 2 * budget for _, held in read)
    with duckdb.connect(str(small_demo), read_only=True) as con:
        batched = con.execute(
            "select customer_id, embedding from ml.customers_embeddings order by 1"
        ).fetchall()
    assert [k for k, _ in batched] == [k for k, _ in whole]
    assert np.allclose(
        np.array([e for _, e in batched]), np.array([e for _, e in whole]), atol=1e-5
    )


CHILD = """
import runpy, sys
sys.argv = ["pipeline", "run", "--spec", sys.argv[1]]
try:
    runpy.run_module("pipeline", run_name="__main__")
finally:
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    print("peak_kb", peak.split()[1], flush=True)
"""


@pytest.mark.slow
def test_a_warehouse_of_200k_rows_runs_under_a_memory_cap(tmp_path: Path):
    """`python -m pipeline run` on 20k customers <- 200k events in a child process whose own
    peak resident memory (VmHWM) must stay under a cap of 3 GiB. (An address-space limit
    cannot be the cap: DuckDB reserves 2 GiB Arrow buffers it never touches.)"""
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "create table customers as select range::integer as customer_id, "
            "'plan' || (range % 4) as plan, (range % 60)::double as age from range(20000)"
        )
        con.execute(
            "create table events as select range::bigint as event_id, "
            "(hash(range) % 20000)::integer as customer_id, "
            "['view', 'cart', 'buy'][1 + range % 3] as kind, (hash(range * 7) % 1000)::double "
            "as amount, timestamp '2026-01-01' + to_seconds(range::bigint * 60) as happened_at "
            "from range(200000)"
        )
    spec = tmp_path / "spaces.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "warehouse": str(warehouse),
                "artifacts": str(tmp_path / "artifacts"),
                "training": {"steps": 10},
                "spaces": {
                    "customers": {
                        "table": "main.customers",
                        "key": "customer_id",
                        "children": [{"space": "events", "foreign_key": "customer_id"}],
                    },
                    "events": {
                        "table": "main.events",
                        "key": "event_id",
                        "time_column": "happened_at",
                    },
                },
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(spec)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    peak_gib = int(result.stdout.split("peak_kb")[-1].split()[0]) / 1024**2
    assert peak_gib < 3.0, peak_gib
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("select count(*) from ml.events_embeddings").fetchone()[0] == 200000
        assert con.execute("select count(*) from ml.customers_neighbours").fetchone()[0] > 0
