"""`ml.<space>_neighbours` and its index: exact on small spaces, an inverted file above
EXACT_UP_TO rows (recall@10 against exact search, deterministic), read by `search`."""

from __future__ import annotations

import logging

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from pipeline import runner
from pipeline.search import nearest
from pipeline.spaces import neighbours
from pipeline.spaces.neighbour_table import _batches
from pipeline.spaces.neighbour_upkeep import write_neighbours
from pipeline.spaces.neighbours import NeighbourIndex
from pipeline.spec import parse_spec
from pipeline.warehouse.connection import Warehouse
from tests.conftest import FAST_TRAINING, demo_spec_dict, two_spaces_with, write_spec


def _clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Rows around 100 random centres, as embeddings of similar rows lie."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(100, dim))
    return (centres[rng.integers(0, 100, n)] + 0.6 * rng.normal(size=(n, dim))).astype(np.float32)


def _exact(x: np.ndarray, k: int) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, :k]


def _every_row(index: NeighbourIndex, k: int) -> tuple[np.ndarray, np.ndarray]:
    parts = list(index.every_row(k))
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


def test_a_small_space_gets_every_rows_true_nearest_rows_without_itself() -> None:
    x = _clustered(700, 16)
    x[6] = x[5]  # a duplicate: each is the other's nearest, and neither lists itself
    index = NeighbourIndex.build(x, seed=0)
    assert index.exact
    similarities, found = _every_row(index, 10)
    assert found.shape == (700, 10)
    assert not (found == np.arange(700)[:, None]).any()
    assert found[5, 0] == 6 and found[6, 0] == 5
    np.testing.assert_allclose(similarities[5, 0], 1.0, atol=1e-5)
    truth = _exact(x, 10)
    same = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
    assert same > 0.999
    assert (np.diff(similarities, axis=1) <= 1e-6).all()  # nearest first


def test_a_large_space_gets_an_inverted_file_with_high_recall(monkeypatch) -> None:
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 2_000)
    x = _clustered(20_000, 64, seed=1)
    first = NeighbourIndex.build(x, seed=0)
    assert not first.exact
    _, found = _every_row(first, 10)
    queries = np.random.default_rng(2).choice(len(x), 1_000, replace=False)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    similarity = unit[queries] @ unit.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    truth = np.argsort(-similarity, axis=1)[:, :10]
    hits = [len(set(found[q]) & set(t)) for q, t in zip(queries, truth, strict=True)]
    recall = np.mean(hits) / 10
    assert recall >= 0.95, recall
    # the same embeddings and seed give the same neighbours
    _, again = _every_row(NeighbourIndex.build(x, seed=0), 10)
    np.testing.assert_array_equal(found, again)


def test_rows_an_inverted_file_finds_too_few_neighbours_for_keep_the_ones_found(
    monkeypatch,
) -> None:
    """With one group searched and groups of a few rows, many rows find fewer than k others
    (faiss answers -1): those places are left out, never written as a neighbour."""
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 10)
    monkeypatch.setattr(neighbours, "LISTS_PER_SQRT_ROW", 8)
    monkeypatch.setattr(neighbours, "TRAINING_ROWS_PER_LIST", 4)
    monkeypatch.setattr(neighbours, "PROBES", 1)
    x = _clustered(400, 8, seed=3)
    index = NeighbourIndex.build(x, seed=0)
    assert not index.exact
    _, found = _every_row(index, 10)
    assert (found < 0).any()  # the case under test happens
    keys = pa.table({"id": pa.array(np.arange(400, dtype=np.int64) + 1000)})
    table = pa.Table.from_batches(list(_batches(index, keys, 10, "v1")))
    assert table.num_rows == int((found >= 0).sum())
    ids, theirs = table.column("id").to_numpy(), table.column("neighbour_id").to_numpy()
    assert (theirs >= 1000).all() and (ids != theirs).all()
    for row in np.unique(ids)[:50]:  # ranks run 1..m for the m neighbours found
        ranks = table.column("rank").to_numpy()[ids == row]
        np.testing.assert_array_equal(ranks, np.arange(1, len(ranks) + 1))


def test_the_run_writes_the_table_and_search_reads_the_index(hierarchical_run) -> None:
    spec = hierarchical_run
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        customers = con.execute("select count(*) from ml.customers_embeddings").fetchone()[0]
        counts = con.execute(
            "select count(*), count(distinct customer_id), min(rank), max(rank), "
            "count(*) filter (where customer_id = neighbour_customer_id) "
            "from ml.customers_neighbours"
        ).fetchone()
        assert counts == (customers * 10, customers, 1, 10, 0)
        # similarity is the stored embeddings' cosine, nearest first
        worst = con.execute(
            "select max(abs(n.similarity - array_cosine_similarity(a.embedding, b.embedding))) "
            "from ml.customers_neighbours n "
            "join ml.customers_embeddings a on a.customer_id = n.customer_id "
            "join ml.customers_embeddings b on b.customer_id = n.neighbour_customer_id"
        ).fetchone()[0]
        assert worst < 1e-5
        unordered = con.execute(
            "select count(*) from (select similarity < lead(similarity) over "
            "(partition by customer_id order by rank) as up from ml.customers_neighbours) "
            "where up"
        ).fetchone()[0]
        assert unordered == 0
        stored = con.execute(
            "select neighbour_customer_id, similarity from ml.customers_neighbours "
            "where customer_id = 12 order by rank limit 4"
        ).fetchall()
        tables = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    assert "orders_neighbours" not in tables  # a pooled child keeps none by default
    found = nearest(spec, "customers", ["12"], k=4)
    assert [n.key for n in found] == [(key,) for key, _ in stored]
    np.testing.assert_allclose([n.similarity for n in found], [s for _, s in stored], atol=1e-5)


def test_search_scans_every_row_when_the_index_is_older_than_the_embeddings(
    small_demo, tmp_path, caplog
) -> None:
    data = demo_spec_dict(small_demo, tmp_path / "artifacts", training=FAST_TRAINING)
    data["spaces"] = {"regions": data["spaces"]["regions"]}
    spec = write_spec(tmp_path / "spaces.yaml", data)
    runner.run(spec, progress=False)
    with duckdb.connect(str(small_demo), read_only=True) as con:
        regions = con.execute("select count(*) from ml.regions_neighbours").fetchone()[0]
    assert regions > 0
    indexed = nearest(spec, "regions", ["1"], k=3)
    with duckdb.connect(str(small_demo)) as con:  # the embeddings change after the index
        con.execute("delete from ml.regions_embeddings where region_id = ?", [indexed[0].key[0]])
    with caplog.at_level(logging.WARNING):
        scanned = nearest(spec, "regions", ["1"], k=3)
    assert "the neighbour index is older than" in caplog.text
    assert [n.key for n in scanned] == [n.key for n in indexed[1:]] + [scanned[-1].key]


def test_neighbours_in_the_spec() -> None:
    def spec(**customers) -> dict:
        return two_spaces_with(lambda d: d["spaces"]["customers"].update(customers))

    default = parse_spec(spec())
    assert (default.neighbours("customers"), default.neighbours("orders")) == (10, 0)
    assert parse_spec(spec(neighbours=0)).neighbours("customers") == 0
    assert parse_spec(spec(neighbours=25)).neighbours("customers") == 25
    with pytest.raises(Exception, match="neighbours"):
        parse_spec(spec(neighbours=-1))
    # a root keyed by several columns (events, facts) keeps none unless asked for
    composite = parse_spec(spec(key=["customer_id", "region"], children=[]))
    assert composite.neighbours("customers") == 0
    assert (
        parse_spec(spec(key=["customer_id", "region"], children=[], neighbours=10)).neighbours(
            "customers"
        )
        == 10
    )


def _stored_space(folder, x: np.ndarray, ids: np.ndarray | None = None):
    """A warehouse whose `ml.big_embeddings` holds `x` (keys `ids`, a fingerprint per row)
    and a spec of the space `big` over it."""
    warehouse = folder / "big.duckdb"
    ids = np.arange(len(x), dtype=np.int64) if ids is None else ids
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists ml")
        con.execute("create or replace table main.big as select unnest(?::bigint[]) as id", [ids])
        _store(con, x, ids, version="v1")
    spec = parse_spec(
        {
            "warehouse": str(warehouse),
            "artifacts": str(folder / "artifacts"),
            "spaces": {"big": {"table": "main.big", "key": "id"}},
        }
    )
    return spec, Warehouse(warehouse, "ml")


def _store(con, x: np.ndarray, ids: np.ndarray, version: str) -> None:
    """Replace `ml.big_embeddings` by rows `ids` with embeddings `x`; a row's fingerprint is
    a hash of its embedding (a changed row, a changed fingerprint)."""
    stored = pa.table(  # noqa: F841 (read by the SQL below)
        {
            "id": pa.array(ids, pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(x.astype(np.float32).reshape(-1)), x.shape[1]
            ),
            "space_version": pa.array([version] * len(ids)),
        }
    )
    con.execute(
        "create or replace table ml.big_embeddings as "
        "select *, hash(embedding::varchar) as row_fingerprint from stored"
    )


def _table(spec) -> dict[int, list[tuple[int, float]]]:
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        rows = con.execute(
            "select id, neighbour_id, similarity from ml.big_neighbours order by id, rank"
        ).fetchall()
    lists: dict[int, list[tuple[int, float]]] = {}
    for own, theirs, similarity in rows:
        lists.setdefault(own, []).append((theirs, similarity))
    return lists


def _changed(x: np.ndarray, ids: np.ndarray, seed: int, share: float):
    """Some rows moved (embedded again), some removed, as many new: (x, ids, moved ids)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    moved = rng.choice(n, int(share * n), replace=False)
    x = x.copy()
    x[moved] = _clustered(len(moved), x.shape[1], seed=seed + 1)
    gone = rng.choice(np.setdiff1d(np.arange(n), moved), int(share * n / 2), replace=False)
    kept = np.setdiff1d(np.arange(n), gone)
    new = _clustered(len(gone), x.shape[1], seed=seed + 2)
    new_ids = ids.max() + 1 + np.arange(len(gone))
    return np.concatenate([x[kept], new]), np.concatenate([ids[kept], new_ids]), ids[moved]


def test_the_table_is_kept_up_to_date_for_the_rows_that_changed(tmp_path) -> None:
    """An exact index: after 3% of the rows moved, 1.5% left and as many came, the update
    writes far fewer rows than a rebuild and every row's list is its exact nearest rows;
    the index `search` reads agrees; nothing changed, nothing written."""
    x = _clustered(3_000, 16, seed=4)
    spec, warehouse = _stored_space(tmp_path, x)
    assert write_neighbours(warehouse, spec, "big", keep=2) == 3_000 * 10
    assert write_neighbours(warehouse, spec, "big", keep=2) == 0  # nothing changed
    x2, ids2, moved = _changed(x, np.arange(3_000, dtype=np.int64), seed=5, share=0.01)
    with duckdb.connect(str(spec.warehouse)) as con:
        _store(con, x2, ids2, version="v1")
    written = write_neighbours(warehouse, spec, "big", keep=2)
    assert 0 < written < 0.5 * 3_000 * 10
    lists = _table(spec)
    assert sorted(lists) == sorted(ids2.tolist())
    truth = _exact(x2, 10)
    unit = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
    same = []
    for row, own in enumerate(ids2):  # the exact nearest rows (up to float ties)
        found = [theirs for theirs, _ in lists[int(own)]]
        same.append(len(set(found) & set(ids2[truth[row]].tolist())) / 10)
        exact = unit[truth[row]] @ unit[row]
        np.testing.assert_allclose([s for _, s in lists[int(own)]], exact, atol=1e-5)
    assert np.mean(same) > 0.999
    for own in moved[:20]:  # a moved row's similarities are its new embedding's
        theirs, similarity = lists[int(own)][0]
        a, b = x2[ids2 == own][0], x2[ids2 == theirs][0]
        expected = a @ b / np.linalg.norm(a) / np.linalg.norm(b)
        np.testing.assert_allclose(similarity, expected, atol=1e-5)
    found = nearest(spec, "big", [str(moved[0])], k=5)  # the saved index, not a scan
    assert [n.key[0] for n in found] == [theirs for theirs, _ in lists[int(moved[0])][:5]]
    # a new model version: rebuilt whole
    with duckdb.connect(str(spec.warehouse)) as con:
        _store(con, x2, ids2, version="v2")
    assert write_neighbours(warehouse, spec, "big", keep=2) == len(ids2) * 10


def test_an_inverted_file_is_kept_up_to_date_with_high_recall(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(neighbours, "EXACT_UP_TO", 2_000)
    x = _clustered(20_000, 32, seed=6)
    spec, warehouse = _stored_space(tmp_path, x)
    assert write_neighbours(warehouse, spec, "big", keep=2) == 20_000 * 10
    x2, ids2, _ = _changed(x, np.arange(20_000, dtype=np.int64), seed=7, share=0.01)
    with duckdb.connect(str(spec.warehouse)) as con:
        _store(con, x2, ids2, version="v1")
    written = write_neighbours(warehouse, spec, "big", keep=2)
    assert 0 < written < 0.2 * 20_000 * 10
    lists = _table(spec)
    assert sorted(lists) == sorted(ids2.tolist())
    queries = np.random.default_rng(8).choice(len(x2), 1_000, replace=False)
    unit = x2 / np.linalg.norm(x2, axis=1, keepdims=True)
    similarity = unit[queries] @ unit.T
    similarity[np.arange(len(queries)), queries] = -np.inf
    truth = np.argsort(-similarity, axis=1)[:, :10]
    hits = [
        len({t for t, _ in lists[int(ids2[q])]} & set(ids2[t].tolist()))
        for q, t in zip(queries, truth, strict=True)
    ]
    assert np.mean(hits) / 10 >= 0.95
    # past REBUILD_SHARE of the rows changed since the build: rebuilt whole
    x3, ids3, _ = _changed(x2, ids2, seed=9, share=0.15)
    with duckdb.connect(str(spec.warehouse)) as con:
        _store(con, x3, ids3, version="v1")
    assert write_neighbours(warehouse, spec, "big", keep=2) == len(ids3) * 10
