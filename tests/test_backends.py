"""The three warehouses behind one door: a DuckDB file, a DuckLake whose catalog is
PostgreSQL, and a PostgreSQL database, against a real PostgreSQL server."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipeline import runner
from pipeline.warehouse.backends import DUCKLAKE, FILE, POSTGRES, WarehouseSettingError, backend_of
from pipeline.warehouse.connection import Warehouse, fetch_arrow, table_columns
from tests.conftest import TWO_SPACES, write_spec


def test_warehouse_setting_forms():
    assert backend_of("warehouse.duckdb").kind == FILE
    assert backend_of(Path("/x/w.duckdb")).path == Path("/x/w.duckdb")
    lake = backend_of("ducklake:postgres:dbname=lake host=db", {"DATA_PATH": "s3://b/lake"})
    assert (lake.kind, lake.options, lake.extensions) == (
        DUCKLAKE,
        {"data_path": "s3://b/lake"},
        ["postgres", "ducklake"],
    )
    shop = backend_of("postgres:dbname=shop host=db user=me password=secret")
    assert shop.kind == POSTGRES and "secret" not in shop.display and "***" in shop.display
    assert "(read_only true)" in shop.attach_sql(read_only=True)
    with pytest.raises(WarehouseSettingError, match="warehouse: 'mysql:'"):
        backend_of("mysql:host=db")
    with pytest.raises(WarehouseSettingError, match="warehouse_options .*DuckDB file"):
        backend_of("w.duckdb", {"data_path": "/tmp"})


def _spec(tmp_path: Path, warehouse: str, **options):
    data = {**TWO_SPACES, "warehouse": warehouse, "artifacts": str(tmp_path / "artifacts")}
    if options:
        data["warehouse_options"] = options
    return write_spec(tmp_path / "spaces.yaml", data)


def test_bad_settings_are_named_before_anything_trains(postgres, tmp_path: Path):
    lake_catalog = postgres.create_database("bad_settings_lake")
    cases = [
        (f"postgres:{postgres.dsn('no_such_database')}", {}, 'database "no_such_database"'),
        (f"postgres:dbname=x host=127.0.0.1 port={postgres.port + 1} user=postgres", {}, "refused"),
        (f"ducklake:postgres:{lake_catalog}", {}, "data_path is not set"),
        (
            f"ducklake:postgres:{lake_catalog}",
            {"data_path": str(tmp_path / "missing")},
            "warehouse_options.data_path: folder .* does not exist",
        ),
    ]
    for warehouse, options, problem in cases:
        spec = _spec(tmp_path, warehouse, **options)
        with pytest.raises(WarehouseSettingError, match=problem) as raised:
            runner.run(spec)
        assert str(raised.value).startswith(("warehouse:", "warehouse_options.")), raised.value
        assert not (tmp_path / "artifacts").exists()  # nothing trained, nothing written


DATABASES = itertools.count()


@pytest.fixture(params=[POSTGRES, DUCKLAKE])
def attached(request, postgres, tmp_path: Path) -> Warehouse:
    # one database per test: id(tmp_path) repeated once a second test used this fixture
    database = postgres.create_database(f"types_{request.param}_{next(DATABASES)}")
    if request.param == POSTGRES:
        return Warehouse(f"postgres:{database}")
    (tmp_path / "lake").mkdir()
    return Warehouse(f"ducklake:postgres:{database}", options={"data_path": str(tmp_path / "lake")})


def test_output_tables_keep_their_values_in_each_backend(attached: Warehouse):
    rows = pa.table(
        {
            "key": pa.array([1, 2, 3], pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.arange(12, dtype=np.float32)), 4
            ),
            "probabilities": pa.array(
                [[("true", 0.25), ("false", 0.75)]] * 3, pa.map_(pa.string(), pa.float64())
            ),
            "row_fingerprint": pa.array([2**64 - 1, 0, 12345], pa.uint64()),
        }
    )
    with attached.connect() as con:
        attached.write_table(con, "typed", rows)
        attached.write_table(con, "typed", rows.slice(0, 1), replace_where="key = 1")
        back = fetch_arrow(
            con,
            "select key, embedding, (probabilities::json ->> 'true')::double as p_true, "
            "row_fingerprint = 18446744073709551615::ubigint as max_fingerprint "
            "from ml.typed order by key",
        )
        assert set(table_columns(con, "ml.typed")) == set(rows.column_names)
    assert back.column("key").to_pylist() == [1, 2, 3]
    assert back.column("embedding").to_pylist()[2] == [8.0, 9.0, 10.0, 11.0]
    assert back.column("p_true").to_pylist() == [0.25] * 3
    assert back.column("max_fingerprint").to_pylist() == [True, False, False]


def test_writers_side_by_side_on_a_lake(postgres, tmp_path: Path):
    """Four writers at once, each its own connection (as separate processes would be): each
    merges into its own table, all append to one table and all replace one table whole. No
    lock, every write lands (a conflicting one is run again), no table is ever a mix."""
    lake = Warehouse(
        f"ducklake:postgres:{postgres.create_database('side_by_side')}",
        options={"data_path": str(tmp_path)},
    )
    with lake.connect() as con:
        lake.write_table(con, "shared", pa.table({"writer": pa.array([], pa.int64())}))
    errors: list[BaseException] = []

    def write(writer: int) -> None:
        try:
            with lake.connect() as con:
                for batch in range(5):
                    rows = pa.table({"writer": [writer] * 10, "batch": [batch] * 10})
                    lake.write_table(con, f"own_{writer}", rows, replace_where=f"batch = {batch}")
                    lake.append_rows(con, "shared", rows.select(["writer"]))
                    lake.write_table(con, "latest", rows)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with lake.connect(read_only=True) as con:
        for writer in range(4):
            assert con.execute(f"select count(*) from ml.own_{writer}").fetchone()[0] == 50
        counts = con.execute("select writer, count(*) from ml.shared group by 1 order by 1")
        assert counts.fetchall() == [(w, 50) for w in range(4)]
        latest = con.execute("select count(*), count(distinct writer) from ml.latest")
        assert latest.fetchone() == (10, 1)


def test_init_describes_an_attached_warehouse(attached: Warehouse, tmp_path: Path):
    """`init` on a lake and on PostgreSQL (whose declared constraints DuckDB does not see):
    keys and the relation found in the data, the attach string and options written as they
    are, and a spec that loads."""
    from pipeline.discovery.draft import draft_spec

    with attached.connect() as con:
        con.execute(
            "create table customers as select range as customer_id, "
            "(range % 5)::varchar as plan, range % 3 = 0 as churned from range(300)"
        )
        con.execute(
            "create table orders as select range as order_id, range % 300 as customer_id, "
            "(range % 97) * 1.5 as amount from range(1500)"
        )
    draft = draft_spec(
        attached.backend.location,
        "customers.churned",
        options=attached.backend.options or None,
        spec_folder=tmp_path,
    )
    assert [(r.columns, r.coverage) for r in draft.relations] == [(("customer_id",), 1.0)]
    spec = draft.spec
    assert spec.warehouse == attached.backend.location
    assert dict(spec.warehouse_options) == dict(attached.backend.options)
    assert spec.spaces["customers"].key == "customer_id"
    assert [c.space for c in spec.spaces["customers"].children] == ["orders"]
