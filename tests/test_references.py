"""Signal that only the referenced rows carry (N:1): a visit's label depends on the size of
the store it references and on how many other visits reference that store, nothing of the
visit itself. The statistics read the reference through (`stores/size`,
`stores/visits/count`, the store's own children `stores/staff/...`), and a child's
references are summarised over the parent's children (`visits/stores/size/mean`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import duckdb
import lightgbm as lgb
import numpy as np
import pyarrow as pa
import pytest
from sklearn.metrics import roc_auc_score

from pipeline import runner
from pipeline.spaces.child_features import feature_names
from pipeline.spaces.child_plans import ColumnPlan, LookupPlan, ReferencePlan
from pipeline.spaces.child_stats import child_statistics
from pipeline.spaces.reads import ROWS_TABLE, create_rows_table
from pipeline.spaces.space import Space
from pipeline.spec import Spec
from tests.conftest import write_spec, write_tables

N_STORES = 60
HELD_OUT = 4  # every 4th visit is held out (label NULL in the warehouse)


def _tables(seed: int = 0) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    visits_per_store = rng.integers(4, 50, N_STORES)
    store_of_visit = rng.permutation(np.repeat(np.arange(N_STORES), visits_per_store))
    n = len(store_of_visit)
    size = rng.lognormal(5, 0.6, N_STORES)
    score = np.argsort(np.argsort(size)) + np.argsort(np.argsort(visits_per_store))
    store_label = score[store_of_visit]
    label = (store_label > np.median(store_label)).astype(np.int32)
    n_staff = rng.integers(0, 6, N_STORES)
    staff_store = np.repeat(np.arange(N_STORES), n_staff)
    n_customers = 200
    return {
        "stores": pa.table(
            {
                "store_id": pa.array(np.arange(N_STORES), pa.int32()),
                "size": np.round(size, 1),
                "kind": pa.array(rng.choice(["mall", "street", "outlet"], N_STORES)),
            }
        ),
        "staff": pa.table(
            {
                "staff_id": pa.array(np.arange(len(staff_store)), pa.int32()),
                "store_id": pa.array(staff_store, pa.int32()),
                "tenure": np.round(rng.exponential(3, len(staff_store)), 2),
            }
        ),
        "visits": pa.table(
            {
                "visit_id": pa.array(np.arange(n), pa.int32()),
                "store_id": pa.array(store_of_visit, pa.int32()),
                "customer_id": pa.array(rng.integers(0, n_customers, n), pa.int32()),
                "duration": np.round(rng.exponential(20, n), 1),
                "basket": rng.integers(1, 30, n).astype(np.float64),
                "visited_at": pa.array(
                    np.datetime64("2026-01-01T00:00:00", "s") + rng.integers(0, 300 * 86400, n)
                ),
                "label": pa.array(np.where(np.arange(n) % HELD_OUT == 0, None, label), pa.int32()),
            }
        ),
        "customers": pa.table({"customer_id": pa.array(np.arange(n_customers), pa.int32())}),
        "truth": pa.table({"visit_id": pa.array(np.arange(n), pa.int32()), "label": label}),
    }


@pytest.fixture(scope="module")
def store_run(tmp_path_factory) -> tuple[Spec, dict[str, pa.Table]]:
    folder = tmp_path_factory.mktemp("stores")
    warehouse = folder / "w.duckdb"
    tables = _tables()
    write_tables(warehouse, tables)
    spec = write_spec(
        folder / "spaces.yaml",
        {
            "warehouse": str(warehouse),
            "artifacts": str(folder / "artifacts"),
            "seed": 0,
            "training": {"steps": 60},
            "spaces": {
                "visits": {
                    "table": "main.visits",
                    "key": "visit_id",
                    "columns": {"label": {"target": True}, "visited_at": {"type": "timestamp"}},
                    "references": [{"space": "stores", "foreign_key": "store_id"}],
                },
                "stores": {
                    "table": "main.stores",
                    "key": "store_id",
                    "children": [{"space": "staff", "foreign_key": "store_id"}],
                },
                "staff": {"table": "main.staff", "key": "staff_id"},
                "customers": {
                    "table": "main.customers",
                    "key": "customer_id",
                    "children": [{"space": "visits", "foreign_key": "customer_id"}],
                },
            },
        },
    )
    runner.run(spec, progress=False)
    return spec, tables


def test_reference_signal_is_found_where_the_visit_alone_fails(store_run) -> None:
    spec, tables = store_run
    truth = tables["truth"].column("label").to_numpy()
    visits = tables["visits"]
    held_out = np.arange(visits.num_rows) % HELD_OUT == 0
    own = np.column_stack(
        [visits.column(c).to_numpy().astype(np.float64) for c in ("duration", "basket")]
    )
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0},
        lgb.Dataset(own[~held_out], truth[~held_out]),
        num_boost_round=100,
    )
    assert roc_auc_score(truth[held_out], booster.predict(own[held_out])) < 0.6
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select visit_id, probabilities['1'], split, feature_importance "
            f"from {spec.output_schema}.visits__label_predictions where visit_id % {HELD_OUT} = 0"
        ).fetchall()
    finally:
        con.close()
    assert rows and all(split == "unlabelled" for _, _, split, _ in rows)
    auc = roc_auc_score([truth[k] for k, *_ in rows], [p for _, p, *_ in rows])
    assert auc >= 0.85
    top = [max(importance, key=importance.get) for *_, importance in rows]
    assert max(set(top), key=top.count) == "stores"


def test_reference_is_read_through_with_stable_addresses(store_run) -> None:
    spec, tables = store_run
    statistics = Space.load(Path(spec.artifacts) / "visits").statistics
    assert statistics is not None
    names = statistics.names
    for address in (
        "stores/size",
        "stores/kind/is/mall",
        "stores/staff/count",
        "stores/staff/tenure/mean",
        "stores/visits/count",
    ):
        assert address in names, address
    parent = Space.load(Path(spec.artifacts) / "customers").statistics
    assert "visits/stores/size/mean" in parent.names
    assert "visits/stores/kind/share/mall" in parent.names


def _statistics_of(spec: Spec, references: list) -> tuple[dict, np.ndarray]:
    con = duckdb.connect(str(spec.warehouse), read_only=True)
    try:
        create_rows_table(con, spec, "visits")
        rows = con.execute(f"select visit_id from {ROWS_TABLE} order by __row").fetchall()
        values = child_statistics(con, spec, "visits", ROWS_TABLE, [], references)
    finally:
        con.close()
    return {k: i for i, (k,) in enumerate(rows)}, values


def test_referenced_values_match_sql(store_run) -> None:
    """Each read-through statistic equals what a plain SQL query gives, and the count of
    other referrers is cut at the visit's own time when the space has a time column."""
    spec, tables = store_run
    statistics = Space.load(Path(spec.artifacts) / "visits").statistics
    names = statistics.names
    row_of, values = _statistics_of(spec, statistics.references)
    visits = tables["visits"].to_pandas()
    stores = tables["stores"].to_pandas().set_index("store_id")
    staff = tables["staff"].to_pandas().groupby("store_id").size()
    per_store = visits.groupby("store_id").size()
    for visit in (0, 7, 123):
        store = int(visits.loc[visit, "store_id"])
        row = values[row_of[visit]]
        assert row[names.index("stores/size")] == pytest.approx(stores.loc[store, "size"])
        assert row[names.index("stores/staff/count")] == staff.get(store, 0)
        assert row[names.index("stores/visits/count")] == per_store[store] - 1
    timed = [dataclasses.replace(r, time_column="visited_at") for r in statistics.references]
    _, values = _statistics_of(spec, timed)
    for visit in (0, 7, 123):
        store = int(visits.loc[visit, "store_id"])
        same = visits[visits.store_id == store]
        earlier = int((same.visited_at < visits.loc[visit, "visited_at"]).sum())
        assert values[row_of[visit]][names.index("stores/visits/count")] == earlier


def test_a_space_referenced_twice_gets_two_addresses() -> None:
    """Flights from and to airports: each reference's columns keep their own addresses."""
    elevation = ColumnPlan("elevation", "number", "scalar")

    def airports(foreign_key: str) -> ReferencePlan:
        lookup = LookupPlan("airports", "main.airports", ("code",), (foreign_key,), (elevation,))
        return ReferencePlan(lookup, (), "flights", "main.flights", None)

    names = feature_names([], [airports("origin"), airports("destination")])
    assert names == [
        "airports[origin]/elevation",
        "airports[origin]/flights/count",
        "airports[destination]/elevation",
        "airports[destination]/flights/count",
    ]
