"""Bad specs and bad keys: a clear error naming the YAML place, before anything trains."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline import runner
from pipeline.errors import DataError, DataWarning, JoinValidationError, SpecError
from pipeline.spec import load_spec, parse_spec
from tests.conftest import TWO_SPACES, demo_spec_dict, two_spaces_with, write_spec


@pytest.mark.parametrize(
    ("change", "place", "words"),
    [
        (
            lambda d: d["spaces"]["customers"]["children"][0].update(space="ordrs"),
            "spaces.customers.children[0].space",
            "unknown space 'ordrs'",
        ),
        (lambda d: d["spaces"]["customers"].pop("key"), "spaces.customers.key", "required"),
        (
            lambda d: d["spaces"]["customers"].update(tabel="x"),
            "spaces.customers.tabel",
            "unknown key 'tabel'",
        ),
        (
            lambda d: d["spaces"]["orders"].update(
                children=[{"space": "customers", "foreign_key": "order_id"}]
            ),
            "spaces.",
            "cycle",
        ),
        (
            lambda d: d["spaces"]["orders"].update(columns={"amount": {"p_prune": 0.1}}),
            "spaces.orders.columns.amount.p_prune",
            "'p_prune' is no longer a spec key -> delete it",
        ),
        (
            lambda d: d["spaces"]["customers"]["children"][0].update(foreign_key=["a", "b"]),
            "spaces.customers.children[0].foreign_key",
            "2 column(s) for a key of 1",
        ),
        (
            lambda d: d["spaces"]["customers"].update(
                columns={"churned": {"target": True, "active": False}}
            ),
            "spaces.customers.columns.churned",
            "a target cannot be inactive",
        ),
        (
            lambda d: d["spaces"]["customers"].update(columns={"x": {"type": "colour"}}),
            "spaces.customers.columns.x.type",
            "unknown type 'colour'",
        ),
        (lambda d: d.pop("spaces"), "spaces", "required"),
        (
            lambda d: d["spaces"]["customers"].update(as_of="snapshot_at"),
            "spaces.customers.children[0]",
            "has no time_column",
        ),
    ],
)
def test_bad_spec_names_the_yaml_place(change, place, words):
    with pytest.raises(SpecError) as error:
        parse_spec(two_spaces_with(change))
    assert error.value.place.startswith(place)
    assert words in str(error.value)


def test_cycle_names_the_whole_loop():
    data = two_spaces_with(
        lambda d: d["spaces"]["orders"].update(
            references=[{"space": "customers", "foreign_key": "customer_id"}]
        )
    )
    with pytest.raises(SpecError, match="customers -> orders -> customers"):
        parse_spec(data)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spaces: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)


def test_relative_paths_resolve_against_the_spec_folder(tmp_path: Path):
    spec = write_spec(tmp_path / "s.yaml", TWO_SPACES)
    assert spec.warehouse == tmp_path / "w.duckdb"
    assert spec.artifacts == tmp_path / "artifacts"
    assert spec.training_order() == ["orders", "customers"]


def _tiny_warehouse(path: Path, order_key_type: str = "integer") -> Path:
    con = duckdb.connect(str(path))
    try:
        con.execute(
            "create table customers as select range::integer as customer_id, "
            "'plan' || (range % 3) as plan, range * 1.5 as spend from range(60)"
        )
        con.execute(
            f"create table orders as select range::integer as order_id, "
            f"(range % 60)::{order_key_type} as customer_id, range % 7 as amount "
            "from range(300)"
        )
    finally:
        con.close()
    return path


def test_unknown_table_and_column(tmp_path: Path):
    warehouse = _tiny_warehouse(tmp_path / "w.duckdb")
    data = two_spaces_with(lambda d: d["spaces"]["orders"].update(table="main.ordres"))
    spec = write_spec(tmp_path / "s.yaml", {**data, "warehouse": str(warehouse)})
    with pytest.raises(SpecError, match=r"spaces.orders.table: table or view 'main.ordres'"):
        runner.validate(spec)
    data = two_spaces_with(
        lambda d: d["spaces"]["customers"].update(columns={"chrn": {"target": True}})
    )
    spec = write_spec(tmp_path / "s.yaml", {**data, "warehouse": str(warehouse)})
    with pytest.raises(SpecError, match=r"spaces.customers.columns.chrn: column 'chrn' is not in"):
        runner.validate(spec)
    data = two_spaces_with(
        lambda d: d["spaces"]["customers"]["children"][0].update(foreign_key="cid")
    )
    spec = write_spec(tmp_path / "s.yaml", {**data, "warehouse": str(warehouse)})
    with pytest.raises(SpecError, match=r"children\[0\].foreign_key: column 'cid' is not in"):
        runner.validate(spec)


def test_duplicate_and_null_keys(tmp_path: Path):
    warehouse = _tiny_warehouse(tmp_path / "w.duckdb")
    spec = write_spec(tmp_path / "s.yaml", {**TWO_SPACES, "warehouse": str(warehouse)})
    con = duckdb.connect(str(warehouse))
    con.execute("insert into customers values (5, 'plan1', 2.0), (5, 'plan2', 3.0)")
    con.close()
    with pytest.raises(
        DataError, match=r"spaces.customers.key: 'customer_id' is not unique.*e\.g\. 5"
    ):
        runner.validate(spec)
    con = duckdb.connect(str(warehouse))
    con.execute("delete from customers where customer_id = 5")
    con.execute("insert into customers values (null, 'plan1', 2.0)")
    con.close()
    with pytest.raises(DataError, match="spaces.customers.key: 1 row"):
        runner.validate(spec)


def test_int_vs_string_foreign_key_stops_training(tmp_path: Path):
    warehouse = _tiny_warehouse(tmp_path / "w.duckdb", order_key_type="varchar")
    spec = write_spec(tmp_path / "s.yaml", {**TWO_SPACES, "warehouse": str(warehouse)})
    with pytest.raises(
        JoinValidationError,
        match=r"key types differ: orders.customer_id is "
        r"VARCHAR but customers.customer_id is INTEGER.*cast\(\"customer_id\" as",
    ):
        runner.run(spec, progress=False)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        status = con.execute("select status from ml.join_report where child = 'orders'").fetchone()
        trained = con.execute(
            "select count(*) from information_schema.tables where table_name like '%_embeddings'"
        ).fetchone()[0]
    finally:
        con.close()
    assert status == ("error",)
    assert trained == 0


def test_low_coverage_warns_and_blocks_only_below_a_declared_limit(tmp_path: Path):
    warehouse = _tiny_warehouse(tmp_path / "w.duckdb")
    spec = write_spec(tmp_path / "s.yaml", {**TWO_SPACES, "warehouse": str(warehouse)})
    con = duckdb.connect(str(warehouse))
    con.execute("update orders set customer_id = customer_id + 1000 where order_id % 10 = 0")
    con.close()
    with pytest.warns(DataWarning, match=r"30 orders row\(s\) point to no customers row"):
        joins = runner.validate_space(spec, "customers").joins
    assert joins[0].status == "warn" and joins[0].orphans == 30
    assert joins[0].coverage == pytest.approx(0.9)
    con = duckdb.connect(str(warehouse))
    con.execute("update orders set customer_id = customer_id + 1000 where order_id % 10 < 7")
    con.close()
    with pytest.warns(DataWarning, match="only 30% of orders rows find a customers row"):
        assert runner.validate_space(spec, "customers").joins[0].status == "warn"
    strict = write_spec(
        tmp_path / "strict.yaml",
        {**TWO_SPACES, "warehouse": str(warehouse), "min_join_coverage": 0.5},
    )
    with pytest.raises(JoinValidationError, match="only 30% of orders rows find their customers"):
        runner.validate(strict)


def test_failed_run_leaves_earlier_tables_intact(small_demo: Path, tmp_path: Path):
    data = demo_spec_dict(small_demo, tmp_path / "artifacts", training={"steps": 20})
    data["spaces"] = {"regions": data["spaces"]["regions"]}
    spec = write_spec(tmp_path / "s.yaml", data)
    runner.run(spec, progress=False)
    con = duckdb.connect(str(small_demo), read_only=True)
    before = con.execute("select * from ml.regions_embeddings order by region_id").fetchall()
    profile = con.execute("select * from ml.column_profile order by all").fetchall()
    con.close()
    con = duckdb.connect(str(small_demo))
    con.execute("insert into raw.regions select * from raw.regions limit 1")
    con.close()
    with pytest.raises(DataError, match="not unique"):
        runner.run(spec, progress=False)
    con = duckdb.connect(str(small_demo), read_only=True)
    try:
        assert (
            con.execute("select * from ml.regions_embeddings order by region_id").fetchall()
            == before
        )
        assert con.execute("select * from ml.column_profile order by all").fetchall() == profile
    finally:
        con.close()
