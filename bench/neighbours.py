"""Benchmark: the neighbour index (issue 15 item 4) on real stored embeddings.

Reads `ml.<space>_embeddings` of a warehouse a run wrote (by default TPC-H's line items from
`bench/warehouse_time.py --warehouses fact_root`, 300k rows at scale 0.05), then:

  (1) per size (the first n rows in key order): the index's build time, the time to find
      every row's 10 nearest other rows (what `ml.<space>_neighbours` costs), recall@10 of
      those against exact search for 2,000 seeded rows, and the time exact search of every
      row would take (measured on 20k rows, scaled by n^2);
  (2) per --update-rows size (the first n rows): the table and index built whole, then 1% of
      the rows moved (given the embeddings of real rows beyond n), 0.5% removed and 0.5%
      added, and `write_neighbours` again (the update): its time and rows written against a
      rebuild's on the same data, and recall@10 of both tables against exact search;
  (3) at --search-rows rows (the real embeddings repeated with 2% noise and normalised again,
      to reach sizes the bench data does not have): `write_neighbours` end to end into a
      scratch warehouse (index, table, saved index), then `search.nearest` for 200 seeded
      keys, p50 and p95 milliseconds, each call opening the warehouse as the CLI does.

Usage:
  .venv/bin/python bench/warehouse_time.py --warehouses fact_root --fact-root-scale 0.05 \\
      --workdir /tmp/nb
  .venv/bin/python bench/neighbours.py --warehouse /tmp/nb/fact_root_sf0.05.duckdb \\
      --space lineitem
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.search import nearest  # noqa: E402
from pipeline.spaces import neighbours  # noqa: E402
from pipeline.spaces.neighbour_table import build_neighbours  # noqa: E402
from pipeline.spaces.neighbour_upkeep import write_neighbours  # noqa: E402
from pipeline.spaces.neighbours import NeighbourIndex  # noqa: E402
from pipeline.spec import parse_spec  # noqa: E402
from pipeline.warehouse.connection import Warehouse, fetch_arrow  # noqa: E402

K = 10
QUERIES = 2_000
EXACT_SAMPLE = 20_000


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_nearest(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """[len(rows), K]: exact nearest other rows by cosine (torch, every core)."""
    data = torch.from_numpy(unit(x))
    out = []
    for start in range(0, len(rows), 1024):
        batch = torch.from_numpy(rows[start : start + 1024])
        similarity = data[batch] @ data.T
        similarity[torch.arange(len(batch)), batch] = -float("inf")
        out.append(similarity.topk(K).indices.numpy())
    return np.concatenate(out)


def exact_seconds(x: np.ndarray) -> float:
    """Seconds exact search of every row would take: EXACT_SAMPLE rows against all, x n/EXACT."""
    rows = np.arange(min(EXACT_SAMPLE, len(x)))
    started = time.perf_counter()
    exact_nearest(x, rows)
    return (time.perf_counter() - started) * len(x) / len(rows)


def sizes_report(x: np.ndarray, sizes: list[int], seed: int) -> list[dict]:
    results = []
    for n in sizes:
        part = np.ascontiguousarray(x[:n])
        started = time.perf_counter()
        index = NeighbourIndex.build(part, seed)
        built = time.perf_counter() - started
        started = time.perf_counter()
        found = np.concatenate([f for _, _, f in index.every_row(K)])
        searched = time.perf_counter() - started
        rows = np.sort(np.random.default_rng(seed).choice(n, min(QUERIES, n), replace=False))
        truth = exact_nearest(part, rows)
        hits = [len(set(found[r]) & set(t)) for r, t in zip(rows, truth, strict=True)]
        entry = {
            "rows": n,
            "index": "exact"
            if index.exact
            else f"inverted file, {index.index.nlist} lists, {index.index.nprobe} probed",
            "build_s": round(built, 2),
            "every_row_s": round(searched, 2),
            "rows_per_s": round(n / (built + searched)),
            "recall_at_10": round(float(np.mean(hits)) / K, 4),
            "exact_every_row_s": round(exact_seconds(part), 1),
        }
        print(json.dumps(entry), flush=True)
        results.append(entry)
    return results


def stored_space(folder: Path, x: np.ndarray, ids: np.ndarray, name: str):
    """A scratch warehouse whose `ml.<name>_embeddings` holds `x` under keys `ids` (a row's
    fingerprint: a hash of its embedding), and the spec of a space over it."""
    warehouse = folder / f"{name}.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("create schema if not exists ml")
        store_embeddings(con, name, x, ids)
    spec = parse_spec(
        {
            "warehouse": str(warehouse),
            "artifacts": str(folder / f"{name}_artifacts"),
            "spaces": {name: {"table": f"main.{name}", "key": "id"}},
        }
    )
    return spec, Warehouse(warehouse, "ml")


def store_embeddings(con, name: str, x: np.ndarray, ids: np.ndarray) -> None:
    stored = pa.table(  # noqa: F841 (read by the SQL below)
        {
            "id": pa.array(ids, pa.int64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1]),
            "space_version": pa.array(["bench"] * len(ids)),
        }
    )
    con.execute(
        f"create or replace table ml.{name}_embeddings as "
        "select *, hash(embedding::varchar) as row_fingerprint from stored"
    )
    con.execute(f"create or replace table main.{name} as select id from stored")


def table_recall(spec, name: str, x: np.ndarray, ids: np.ndarray, seed: int) -> float:
    """recall@10 of `ml.<name>_neighbours` against exact search, QUERIES seeded rows."""
    rows = np.sort(np.random.default_rng(seed).choice(len(x), QUERIES, replace=False))
    truth = exact_nearest(x, rows)
    with duckdb.connect(str(spec.warehouse), read_only=True) as con:
        listed = con.execute(
            f"select id, list(neighbour_id) from ml.{name}_neighbours "
            "where id in (select unnest(?::bigint[])) group by id",
            [ids[rows].tolist()],
        ).fetchall()
    lists = dict(listed)
    hits = [
        len(set(lists[int(ids[r])]) & set(ids[t].tolist()))
        for r, t in zip(rows, truth, strict=True)
    ]
    return float(np.mean(hits)) / K


def update_report(x: np.ndarray, n: int, folder: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    part = unit(x[:n]).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    spec, warehouse = stored_space(folder, part, ids, f"u{n}")
    name = f"u{n}"
    started = time.perf_counter()
    write_neighbours(warehouse, spec, name, keep=1)
    first_s = time.perf_counter() - started
    moved = rng.choice(n, n // 100, replace=False)
    gone = rng.choice(np.setdiff1d(ids, moved), n // 200, replace=False)
    spare = unit(x[n:]).astype(np.float32)  # real rows the table does not hold
    picks = rng.choice(len(spare), len(moved) + len(gone), replace=False)
    changed = part.copy()
    changed[moved] = spare[picks[: len(moved)]]
    kept = np.setdiff1d(ids, gone)
    x2 = np.concatenate([changed[kept], spare[picks[len(moved) :]]])
    ids2 = np.concatenate([kept, n + np.arange(len(gone), dtype=np.int64)])
    with duckdb.connect(str(spec.warehouse)) as con:
        store_embeddings(con, name, x2, ids2)
    started = time.perf_counter()
    written = write_neighbours(warehouse, spec, name, keep=1)
    update_s = time.perf_counter() - started
    updated_recall = table_recall(spec, name, x2, ids2, seed)
    started = time.perf_counter()
    unchanged = write_neighbours(warehouse, spec, name, keep=1)
    unchanged_s = time.perf_counter() - started
    started = time.perf_counter()
    rebuilt = build_neighbours(warehouse, spec, name, keep=1)
    rebuild_s = time.perf_counter() - started
    entry = {
        "rows": n,
        "moved": len(moved),
        "removed": len(gone),
        "added": len(gone),
        "first_build_s": round(first_s, 1),
        "update_s": round(update_s, 2),
        "update_rows_written": written,
        "rows_listed_again": written // K,
        "unchanged_s": round(unchanged_s, 2),
        "unchanged_rows_written": unchanged,
        "rebuild_s": round(rebuild_s, 1),
        "rebuild_rows_written": rebuilt,
        "update_share_of_rebuild": round(update_s / rebuild_s, 3),
        "recall_at_10_updated": round(updated_recall, 4),
        "recall_at_10_rebuilt": round(table_recall(spec, name, x2, ids2, seed), 4),
    }
    print(json.dumps(entry), flush=True)
    return entry


def search_report(x: np.ndarray, rows: int, folder: Path, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    repeats = -(-rows // len(x))
    big = np.concatenate(
        [x + (0.02 * rng.normal(size=x.shape) if i else 0) for i in range(repeats)]
    )
    big = unit(big[:rows]).astype(np.float32)
    spec, warehouse = stored_space(folder, big, np.arange(rows, dtype=np.int64), "big")
    started = time.perf_counter()
    written = write_neighbours(warehouse, spec, "big", keep=1)
    table_s = time.perf_counter() - started
    keys = rng.choice(rows, 200, replace=False)
    nearest(spec, "big", [str(keys[0])], k=K)  # the first call loads the libraries
    times = []
    for key in keys:
        started = time.perf_counter()
        found = nearest(spec, "big", [str(key)], k=K)
        times.append((time.perf_counter() - started) * 1000)
        assert len(found) == K
    entry = {
        "rows": rows,
        "neighbours_table_s": round(table_s, 1),
        "neighbour_rows_written": written,
        "search_p50_ms": round(float(np.percentile(times, 50)), 1),
        "search_p95_ms": round(float(np.percentile(times, 95)), 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    print(json.dumps(entry), flush=True)
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--space", default="lineitem")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 150_000, 300_000])
    parser.add_argument("--update-rows", type=int, nargs="*", default=[150_000, 500_000])
    parser.add_argument("--search-rows", type=int, default=1_500_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "neighbours_results.json"))
    args = parser.parse_args(argv)
    with duckdb.connect(args.warehouse, read_only=True) as con:
        stored = fetch_arrow(con, f"select embedding from ml.{args.space}_embeddings")
    column = stored.column("embedding").combine_chunks()
    x = column.flatten().to_numpy().reshape(len(stored), column.type.list_size).astype(np.float32)
    sizes = sorted({min(n, len(x)) for n in args.sizes})
    print(f"{len(x)} embeddings of {args.space}; exact up to {neighbours.EXACT_UP_TO} rows")
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "source": f"{args.warehouse} ml.{args.space}_embeddings ({len(x)} rows)",
        "sizes": sizes_report(x, sizes, args.seed),
    }
    with tempfile.TemporaryDirectory() as folder:
        result["updates"] = [
            update_report(x, n, Path(folder), args.seed) for n in args.update_rows if n < len(x)
        ]
    if args.search_rows:
        with tempfile.TemporaryDirectory() as folder:
            result["search"] = search_report(x, args.search_rows, Path(folder), args.seed)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
