"""Atomic writes: old table or new, never half; partial replaces survive layout changes."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from pipeline.warehouse.connection import Warehouse
from pipeline.warehouse.sql import quote


def rows(path: Path, query: str) -> list:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()
    finally:
        con.close()


def test_replace_where_keeps_other_rows_and_new_columns(tmp_path: Path):
    w = Warehouse(tmp_path / "w.duckdb", "ml")
    with w.connect() as con:
        w.write_table(con, "report", pa.table({"space": ["a", "b"], "n": [1, 2]}))
        w.write_table(
            con,
            "report",
            pa.table({"space": ["a"], "n": [10], "extra": ["x"]}),
            replace_where="space = 'a'",
        )
    assert rows(w.path, "select * from ml.report order by space") == [
        ("a", 10, "x"),
        ("b", 2, None),
    ]


def test_failed_write_leaves_the_old_table(tmp_path: Path):
    w = Warehouse(tmp_path / "w.duckdb", "ml")
    with w.connect() as con:
        w.write_table(con, "report", pa.table({"space": ["a"], "n": [1]}))
        bad = pa.table({"space": ["b"], "n": [pa.scalar({"x": 1})]})
        with pytest.raises(duckdb.Error):
            w.write_table(con, "report", bad, replace_where="space = 'b'")
    assert rows(w.path, "select * from ml.report") == [("a", 1)]


def test_identifiers_are_quoted():
    assert quote('we"ird; drop table x') == '"we""ird; drop table x"'
