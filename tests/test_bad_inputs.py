"""The bad-input corpus: each case breaks one thing in a small trained warehouse and checks the
exact error or warning class, what it names, and that no earlier `ml.*` result changed.

Diagnostics (`column_profile`, `join_report`, `quality_results`) and the text cache are meant to
change: they describe the current data. Everything else (embeddings, predictions, training
runs, mutual information) must be exactly as before unless the case is one where the pipeline
goes on, and then only the tables that step writes may change.
"""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest

from pipeline import runner
from pipeline.errors import (
    DataError,
    DataWarning,
    JoinValidationError,
    PipelineError,
    SpecError,
)
from pipeline.spec import Spec
from pipeline.store import model_store
from pipeline.understanding.joins import validate_joins
from tests.conftest import write_spec

DIAGNOSTICS = {
    "column_profile",
    "join_report",
    "quality_results",
    "text_embedding_cache",
    "validated_tables",
}
N_CUSTOMERS = 80
PLANS = ["free", "basic", "pro"]
NOTES = [
    "asked about the invoice",
    "happy with the product so far",
    "wants a discount on the next order",
    "delivery was late twice",
]
BASE_SPEC = {
    "seed": 0,
    "training": {"steps": 15, "predictor_epochs": 5},
    "spaces": {
        "customers": {
            "table": "main.customers",
            "key": "customer_id",
            "columns": {"churned": {"target": True}},
            "children": [{"space": "orders", "foreign_key": "customer_id", "max_length": 8}],
        },
        "orders": {"table": "main.orders", "key": "order_id", "time_column": "ordered_at"},
    },
}


def _build(path: Path) -> None:
    rng = np.random.default_rng(0)
    con = duckdb.connect(str(path))
    try:
        con.execute(
            "create table customers (customer_id integer, plan varchar, age integer, "
            "spend double, notes varchar, signup date, churned boolean)"
        )
        for i in range(1, N_CUSTOMERS + 1):
            con.execute(
                "insert into customers values (?, ?, ?, ?, ?, date '2023-01-01' + ?, ?)",
                [
                    i,
                    PLANS[i % 3],
                    int(rng.integers(18, 80)),
                    float(rng.gamma(2, 50)),
                    NOTES[i % 4],
                    int(rng.integers(0, 365)),
                    bool(i % 3 == 0),
                ],
            )
        con.execute(
            "create table orders as select o as order_id, (o % ?) + 1 as customer_id, "
            "round(10 + (o * 37 % 100), 2)::double as amount, "
            "['paid', 'late', 'returned'][o % 3 + 1] as status, "
            "timestamp '2024-01-01' + to_days(o % 200) as ordered_at "
            "from range(1, 241) t(o)",
            [N_CUSTOMERS],
        )
    finally:
        con.close()


@dataclass
class Shop:
    """A copy of the trained base warehouse and its artifacts, private to one test."""

    folder: Path

    @property
    def warehouse(self) -> Path:
        return self.folder / "shop.duckdb"

    def sql(self, *statements: str) -> None:
        con = duckdb.connect(str(self.warehouse))
        try:
            for statement in statements:
                con.execute(statement)
        finally:
            con.close()

    def query(self, sql: str) -> list[tuple]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def spec(self, edit: Callable[[dict], object] | None = None) -> Spec:
        data = copy.deepcopy(BASE_SPEC)
        data.update(warehouse=str(self.warehouse), artifacts=str(self.folder / "artifacts"))
        if edit is not None:
            edit(data)
        return write_spec(self.folder / "spaces.yaml", data)

    def results(self) -> dict[str, list[tuple]]:
        """Every non-diagnostic `ml.*` table, rows sorted."""
        tables = [
            r[0]
            for r in self.query(
                "select table_name from information_schema.tables where table_schema = 'ml'"
            )
        ]
        return {
            t: self.query(f'select * from ml."{t}" order by all')
            for t in sorted(tables)
            if t not in DIAGNOSTICS
        }

    def profile(self, space: str, column: str) -> dict:
        row = self.query(
            "select detected_type, excluded, reason, unparsed_count, unparsed_examples "
            f"from ml.column_profile where space = '{space}' and \"column\" = '{column}'"
        )[0]
        return dict(zip(["type", "excluded", "reason", "unparsed", "examples"], row, strict=True))


@pytest.fixture(scope="module")
def trained_shop(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("shop")
    shop = Shop(folder)
    _build(shop.warehouse)
    runner.run(shop.spec(), progress=False)
    return folder


@pytest.fixture
def shop(trained_shop: Path, tmp_path: Path) -> Iterator[Shop]:
    folder = tmp_path / "shop"
    shutil.copytree(trained_shop, folder)
    yield Shop(folder)


def _unchanged_after(shop: Shop, step: Callable[[], object], error: type, match: str) -> None:
    before = shop.results()
    assert before, "the base run must have written results"
    with pytest.raises(error, match=match):
        step()
    assert shop.results() == before


def _changed_tables(before: dict, after: dict) -> set[str]:
    return {t for t in after if before.get(t) != after[t]}


# --- the spec is wrong: stopped before anything reads data -----------------------------------


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(
            lambda d: d["spaces"]["orders"].update(
                children=[{"space": "customers", "foreign_key": "order_id"}]
            ),
            r"cycle: (customers -> orders -> customers|orders -> customers -> orders)",
            id="cycle-through-children",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"].update(
                references=[{"space": "customers", "foreign_key": "customer_id"}]
            ),
            "cycle: customers -> customers",
            id="self-reference",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["children"][0].update(space="invoices"),
            r"children\[0\].space: unknown space 'invoices'",
            id="unknown-space",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"].update(colums={}),
            "unknown key 'colums'",
            id="misspelt-yaml-key",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["columns"].update(spend={"type": "money"}),
            r"columns.spend.type: unknown type 'money'",
            id="unknown-type",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["children"][0].update(
                foreign_key=["customer_id", "plan"]
            ),
            r"children\[0\].foreign_key: 2 column\(s\) for a key of 1",
            id="foreign-key-arity",
        ),
    ],
)
def test_spec_errors_stop_before_any_work(shop: Shop, edit, match: str) -> None:
    _unchanged_after(shop, lambda: runner.run(shop.spec(edit), progress=False), SpecError, match)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(
            lambda d: d["spaces"]["customers"]["columns"].update(spnd={}),
            "columns.spnd: column 'spnd' is not in main.customers",
            id="unknown-column",
        ),
        pytest.param(
            lambda d: d["spaces"]["orders"].update(table="main.order"),
            "spaces.orders.table: table or view 'main.order' not found",
            id="unknown-table",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["columns"].update(plan={"type": "scalar"}),
            r"columns.plan.type: declared scalar, but 80 of 80 values do not parse",
            id="declared-scalar-on-words",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["columns"].update(notes={"type": "timestamp"}),
            r"columns.notes.type: declared timestamp, but 80 of 80 values",
            id="declared-timestamp-on-text",
        ),
        pytest.param(
            lambda d: d["spaces"]["customers"]["columns"].update(notes={"target": True}),
            r"columns.notes.target: a target must be scalar, category, boolean, ordinal",
            id="text-target",
        ),
    ],
)
def test_spec_errors_found_in_the_data(shop: Shop, edit, match: str) -> None:
    _unchanged_after(shop, lambda: runner.run(shop.spec(edit), progress=False), SpecError, match)


# --- the data cannot be used: stopped with DataError ------------------------------------------


@pytest.mark.parametrize(
    ("statements", "match"),
    [
        pytest.param(
            ["insert into customers select * from customers where customer_id <= 2"],
            r"spaces.customers.key: 'customer_id' is not unique .*2 duplicated value\(s\)",
            id="duplicate-keys",
        ),
        pytest.param(
            ["update orders set order_id = null"],
            r"spaces.orders.key: 240 row\(s\) of main.orders have a NULL key",
            id="all-null-key",
        ),
        pytest.param(
            ["delete from orders"],
            "spaces.orders.table: main.orders is empty",
            id="empty-table",
        ),
    ],
)
def test_unusable_keys_and_tables(shop: Shop, statements: list[str], match: str) -> None:
    shop.sql(*statements)
    _unchanged_after(shop, lambda: runner.run(shop.spec(), progress=False), DataError, match)


def test_duplicated_parent_keys_are_counted_in_the_join_report(shop: Shop) -> None:
    shop.sql("insert into customers select * from customers where customer_id in (1, 2, 3)")
    con = duckdb.connect(str(shop.warehouse), read_only=True)
    try:
        (check,) = validate_joins(con, shop.spec(), space="customers")
    finally:
        con.close()
    assert check.status == "error" and check.duplicated_parent_keys == 3
    assert "3 customers key value(s) appear more than once" in check.message


def test_space_with_zero_usable_columns(shop: Shop) -> None:
    shop.sql(
        "create table things as select i as thing_id, 'same' as constant, "
        "null::varchar as empty, uuid()::varchar as session_uuid from range(30) t(i)"
    )

    def edit(data: dict) -> None:
        data["spaces"] = {"things": {"table": "main.things", "key": "thing_id"}}

    _unchanged_after(
        shop,
        lambda: runner.run(shop.spec(edit), progress=False),
        DataError,
        r"space things: no usable input column.*constant \(constant.*empty \(all values are NULL"
        r".*session_uuid \(id-like",
    )


def test_target_without_enough_labels(shop: Shop) -> None:
    shop.sql("update customers set churned = null where customer_id > 5")
    _unchanged_after(
        shop,
        lambda: runner.train_target(shop.spec(), "customers", "churned"),
        DataError,
        r"spaces.customers.columns.churned: only 5 rows have a target value",
    )


# --- the joins are wrong: blocking JoinValidationError ----------------------------------------


@pytest.mark.parametrize(
    ("statements", "edit", "match"),
    [
        pytest.param(
            [
                "create or replace table orders as select * replace "
                "(cast(customer_id as varchar) as customer_id) from orders"
            ],
            None,
            r"orders.customer_id is VARCHAR but customers.customer_id is INTEGER -> cast it "
            r"in the staging model of main.orders: cast\(\"customer_id\" as INTEGER\)",
            id="int-vs-string-keys",
        ),
        pytest.param(
            ["update orders set customer_id = customer_id + 1000 where order_id % 10 < 6"],
            lambda d: d.update(min_join_coverage=0.5),
            r"144 orders row\(s\) point to no customers row \(e\.g\. 1001, 1002, 1003\); "
            r"only 40% of orders rows find their customers row",
            id="orphans-over-a-declared-limit",
        ),
        pytest.param(
            ["update orders set customer_id = customer_id + 1000"],
            None,
            r"no orders row finds a customers row -> check that orders.customer_id holds "
            "customers keys",
            id="no-child-row-finds-a-parent",
        ),
        pytest.param(
            ["update orders set customer_id = null"],
            None,
            "no orders row has a customer_id value",
            id="all-foreign-keys-null",
        ),
        pytest.param(
            [],
            lambda d: d["spaces"]["customers"]["children"][0].update(cardinality="1:1"),
            r"declared 1:1 but up to 3 orders rows share one customers",
            id="declared-one-to-one-is-one-to-many",
        ),
    ],
)
def test_blocking_join_errors(shop: Shop, statements, edit, match: str) -> None:
    shop.sql(*statements)
    _unchanged_after(
        shop,
        lambda: runner.run(shop.spec(edit), progress=False),
        JoinValidationError,
        match,
    )
    report = shop.query("select status from ml.join_report where child = 'orders'")
    assert report == [("error",)]


# --- the data is dirty but usable: DataWarning, reported, the pipeline goes on ---------------


def test_orphans_under_the_limit_warn_with_examples(shop: Shop) -> None:
    shop.sql("update orders set customer_id = customer_id + 500 where order_id % 10 = 0")
    before = shop.results()
    with pytest.warns(DataWarning, match=r"24 orders row\(s\) point to no customers row"):
        runner.validate(shop.spec())
    (row,) = shop.query("select status, orphans, orphan_examples from ml.join_report")
    assert row[0] == "warn" and row[1] == 24 and row[2][0] == "501"
    assert shop.results() == before


def test_null_foreign_keys_warn_with_the_child_keys(shop: Shop) -> None:
    shop.sql("update orders set customer_id = null where order_id in (7, 8)")
    with pytest.warns(DataWarning, match=r"2 orders row\(s\) have a NULL customer_id"):
        runner.validate(shop.spec())
    (row,) = shop.query("select null_keys, null_key_examples from ml.join_report")
    assert row == (2, ["7", "8"])


def _retrain_customers(shop: Shop, spec: Spec) -> np.ndarray:
    """Validate, retrain and re-embed customers; return its embeddings."""
    runner.validate(spec)
    runner.train(spec, "customers", progress=False)
    runner.embed(spec, "customers")
    rows = shop.query("select embedding from ml.customers_embeddings order by customer_id")
    return np.array([r[0] for r in rows], np.float32)


@pytest.mark.parametrize(
    ("statements", "column", "unparsed", "example"),
    [
        pytest.param(
            [
                "alter table customers alter age type varchar",
                "update customers set age = 'thirty' where customer_id = 3",
                "update customers set age = null where customer_id = 4",
                "update customers set age = '999' where customer_id = 5",
            ],
            "age",
            1,
            "thirty",
            id="mixed-type-column",
        ),
        pytest.param(
            [
                "update customers set spend = 'nan'::double where customer_id = 3",
                "update customers set spend = 'inf'::double where customer_id = 4",
                "update customers set spend = '-inf'::double where customer_id = 5",
            ],
            "spend",
            3,
            "-inf",
            id="nan-and-inf",
        ),
        pytest.param(
            [
                "alter table customers alter signup type varchar",
                "update customers set signup = '0001-01-01' where customer_id = 3",
                "update customers set signup = '9999-12-31' where customer_id = 4",
            ],
            "signup",
            2,
            "0001-01-01",
            id="timestamps-out-of-range",
        ),
    ],
)
def test_unparseable_values_are_counted_and_read_as_missing(
    shop: Shop, statements: list[str], column: str, unparsed: int, example: str
) -> None:
    shop.sql(*statements)
    before = shop.results()
    with pytest.warns(DataWarning, match=rf"column {column}: {unparsed} value\(s\) are not"):
        embeddings = _retrain_customers(shop, shop.spec())
    profile = shop.profile("customers", column)
    assert (profile["unparsed"], profile["excluded"]) == (unparsed, False)
    assert example in profile["examples"]
    assert embeddings.shape[0] == N_CUSTOMERS and np.isfinite(embeddings).all()
    after = shop.results()
    assert _changed_tables(before, after) <= {
        "customers_embeddings",
        "training_runs",
        "mutual_information",
    }
    assert after["orders_embeddings"] == before["orders_embeddings"]


def test_ten_thousand_character_text(shop: Shop) -> None:
    long_text = ("the parcel arrived damaged and support never answered " * 200)[:9_999] + "."
    shop.sql(f"update customers set notes = '{long_text}' where customer_id = 1")
    embeddings = _retrain_customers(shop, shop.spec())
    assert np.isfinite(embeddings).all()
    assert shop.profile("customers", "notes")["unparsed"] == 0
    cached = shop.query("select count(*) from ml.text_embedding_cache where length(text) = 10000")
    assert cached == [(1,)]


@pytest.mark.parametrize(
    ("statements", "column", "reason"),
    [
        (["alter table customers add column legacy varchar"], "legacy", "all values are NULL"),
        (["alter table customers add column region varchar default 'eu'"], "region", "constant"),
        (
            [
                "alter table customers add column session_uuid varchar",
                "update customers set session_uuid = uuid()::varchar",
            ],
            "session_uuid",
            "id-like",
        ),
        (
            [
                "alter table customers add column _airbyte_raw_id varchar",
                "update customers set _airbyte_raw_id = 'x' || customer_id",
            ],
            "_airbyte_raw_id",
            "internal column",
        ),
    ],
    ids=["all-null-column", "constant-column", "uuid-column", "internal-column"],
)
def test_junk_columns_are_excluded_with_a_reason(
    shop: Shop, statements: list[str], column: str, reason: str
) -> None:
    shop.sql(*statements)
    embeddings = _retrain_customers(shop, shop.spec())
    profile = shop.profile("customers", column)
    assert profile["excluded"] and reason in profile["reason"]
    current = model_store.current_set(shop.folder / "artifacts/customers", "space customers")
    space = json.loads((current / "space.json").read_text())
    assert column not in space["codecs"] and "plan" in space["codecs"]
    assert np.isfinite(embeddings).all()


# --- schema drift at prediction time: warn, predict with what is there -----------------------


def _predict(shop: Shop) -> list[tuple]:
    before = shop.results()
    runner.predict(shop.spec(), "customers", "churned")
    after = shop.results()
    assert _changed_tables(before, after) == {"customers__churned_predictions"}
    return shop.query(
        "select probability, warnings from ml.customers__churned_predictions order by customer_id"
    )


def test_unseen_category_at_prediction_time(shop: Shop) -> None:
    shop.sql("update customers set plan = 'platinum' where customer_id % 4 = 0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        rows = _predict(shop)
    assert len(rows) == N_CUSTOMERS
    assert all(0.0 <= p <= 1.0 for p, _ in rows)


def test_missing_column_at_prediction_time(shop: Shop) -> None:
    shop.sql("alter table customers drop column spend")
    with pytest.warns(DataWarning, match="column spend is missing from main.customers"):
        rows = _predict(shop)
    assert len(rows) == N_CUSTOMERS
    assert all(any("spend is missing" in w for w in ws) for _, ws in rows)


def test_new_column_at_prediction_time(shop: Shop) -> None:
    shop.sql("alter table customers add column loyalty_tier varchar default 'gold'")
    with pytest.warns(DataWarning, match="column loyalty_tier is new in main.customers"):
        rows = _predict(shop)
    assert len(rows) == N_CUSTOMERS
    assert all(any("loyalty_tier is new" in w for w in ws) for _, ws in rows)


def test_prediction_without_a_trained_space(shop: Shop) -> None:
    shutil.rmtree(shop.folder / "artifacts" / "customers")
    _unchanged_after(
        shop,
        lambda: runner.predict(shop.spec(), "customers", "churned"),
        PipelineError,
        "no trained model in .*customers -> train it first: python -m pipeline train",
    )


# --- identifiers: quoted everywhere, never spliced into SQL ----------------------------------


def test_identifiers_with_quotes_semicolons_and_unicode(tmp_path: Path) -> None:
    warehouse = tmp_path / "odd.duckdb"
    table = "order; drop table canary; --"
    con = duckdb.connect(str(warehouse))
    try:
        con.execute("create schema \"sales 'eu'\"")
        con.execute("create table canary as select 1 as alive")
        con.execute(
            f'create table "sales \'eu\'"."{table}" as select i as "客户 id", '
            "['s', 'm', 'l'][i % 3 + 1] as \"größe\", (i * 7 % 50)::double as \"pri\"\"ce\", "
            "['red', 'blue'][i % 2 + 1] as \"colour; select 1\" from range(40) t(i)"
        )
    finally:
        con.close()
    spec = write_spec(
        tmp_path / "s.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(tmp_path / "artifacts"),
            "training": {"steps": 10},
            "spaces": {"odd": {"table": f'"sales \'eu\'"."{table}"', "key": "客户 id"}},
        },
    )
    runner.run(spec, progress=False)
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert con.execute("select alive from canary").fetchall() == [(1,)]
        keys = con.execute('select "客户 id" from ml.odd_embeddings order by 1').fetchall()
        types = dict(
            con.execute(
                'select "column", detected_type from ml.column_profile where not excluded'
            ).fetchall()
        )
    finally:
        con.close()
    assert [k[0] for k in keys] == list(range(40))
    assert types == {"größe": "ordinal", 'pri"ce': "scalar", "colour; select 1": "category"}


# --- time: child rows after the parent's as_of are never aggregated --------------------------


def test_as_of_excludes_later_children_and_counts_them(shop: Shop) -> None:
    shop.sql(
        "alter table customers add column snapshot_at timestamp default timestamp '2024-04-01'"
    )

    def edit(data: dict) -> None:
        data["spaces"]["customers"]["as_of"] = "snapshot_at"

    spec = shop.spec(edit)
    (later,) = shop.query(
        "select count(*) from orders where not coalesce(ordered_at < timestamp '2024-04-01', false)"
    )[0]
    runner.validate(spec)
    (row,) = shop.query("select excluded_by_as_of, message from ml.join_report")
    assert row[0] == later > 0
    assert f"{later} orders row(s) at or after customers's as_of are left out" in row[1]


def test_parents_without_children_that_look_different_warn(shop: Shop) -> None:
    # Customers on the 'free' plan lose all their orders: with vs without children differ.
    shop.sql(
        "delete from orders where customer_id in (select customer_id from customers "
        "where plan = 'free')"
    )
    with pytest.warns(DataWarning, match=r"customers rows with and without orders differ"):
        runner.validate(shop.spec())
    (row,) = shop.query("select status, kl_shift, kl_column from ml.join_report")
    assert row[0] == "warn" and row[1] > 1.0 and row[2] == "plan"
