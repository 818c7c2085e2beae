"""Benchmark: three approximate nearest-neighbour indexes on the same real embeddings
(issue 15 item 4, "measure and choose").

Reads `ml.<space>_embeddings` of a warehouse a run wrote (the first --rows rows), then for
each index: the time to build it, the time to find every row's 10 nearest other rows (what
`ml.<space>_neighbours` costs; measured on --every-row-sample rows and scaled to all),
recall@10 of those against exact search for 2,000 seeded rows, one query's p50 latency, and
whether a second build gives the same neighbours:

- faiss (the project's choice): an inverted file, 4 sqrt(n) lists, 32 probed;
- DuckDB's `vss` extension (PyPI `duckdb-extension-vss`): an HNSW index on the table, cosine,
  queried with `order by array_cosine_distance(...) limit k`;
- usearch: HNSW, connectivity 16, expansion 128 (add) / 64 (search), cosine.

Usage:
  .venv/bin/pip install -e '.[bench]'
  .venv/bin/python bench/neighbour_indexes.py --warehouse W.duckdb --space lineitem
"""

from __future__ import annotations

import argparse
import json
import platform
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

from bench.neighbours import QUERIES, K, exact_nearest, unit  # noqa: E402
from pipeline.spaces.neighbours import NeighbourIndex  # noqa: E402
from pipeline.warehouse.backends import extension_file  # noqa: E402
from pipeline.warehouse.connection import fetch_arrow  # noqa: E402

LATENCY_QUERIES = 200


def recall(found: dict[int, list[int]], truth: np.ndarray, rows: np.ndarray) -> float:
    hits = [len(set(found[int(r)]) & set(t.tolist())) for r, t in zip(rows, truth, strict=True)]
    return float(np.mean(hits)) / K


def faiss_report(x: np.ndarray, rows: np.ndarray, sample: np.ndarray, seed: int) -> dict:
    started = time.perf_counter()
    index = NeighbourIndex.build(x, seed)
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    index.nearest_others(x[sample], sample, K)
    every_s = (time.perf_counter() - started) * len(x) / len(sample)
    _, found = index.nearest_others(x[rows], rows, K)
    _, again = NeighbourIndex.build(x, seed).nearest_others(x[rows], rows, K)
    times = []
    for r in rows[:LATENCY_QUERIES]:
        started = time.perf_counter()
        index.search(x[r : r + 1], K + 1)
        times.append(time.perf_counter() - started)
    return {
        "index": "faiss exact"
        if index.exact
        else f"faiss inverted file, {index.index.nlist} lists, {index.index.nprobe} probed",
        "build_s": round(build_s, 1),
        "every_row_s": round(every_s, 1),
        "found": {int(r): f.tolist() for r, f in zip(rows, found, strict=True)},
        "same_twice": bool((found == again).all()),
        "query_p50_ms": round(1000 * float(np.median(times)), 2),
    }


def usearch_report(x: np.ndarray, rows: np.ndarray, sample: np.ndarray) -> dict:
    from usearch.index import Index

    def build() -> Index:
        index = Index(
            ndim=x.shape[1], metric="cos", connectivity=16, expansion_add=128, expansion_search=64
        )
        index.add(np.arange(len(x)), x, threads=torch.get_num_threads())
        return index

    started = time.perf_counter()
    index = build()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    index.search(x[sample], K + 1, threads=torch.get_num_threads())
    every_s = (time.perf_counter() - started) * len(x) / len(sample)

    def others(found_index: Index) -> np.ndarray:
        keys = found_index.search(x[rows], K + 1).keys
        return np.array([[k for k in row if k != r][:K] for row, r in zip(keys, rows, strict=True)])

    found, again = others(index), others(build())
    times = []
    for r in rows[:LATENCY_QUERIES]:
        started = time.perf_counter()
        index.search(x[r], K + 1)
        times.append(time.perf_counter() - started)
    return {
        "index": "usearch HNSW, connectivity 16, expansion 128 / 64",
        "build_s": round(build_s, 1),
        "every_row_s": round(every_s, 1),
        "found": {int(r): f.tolist() for r, f in zip(rows, found, strict=True)},
        "same_twice": bool((found == again).all()),
        "query_p50_ms": round(1000 * float(np.median(times)), 2),
    }


def vss_report(x: np.ndarray, rows: np.ndarray, folder: Path) -> dict:
    path = extension_file("vss", duckdb.__version__)
    if path is None:
        return {"index": "DuckDB vss HNSW", "error": "duckdb-extension-vss is not installed"}
    dim = x.shape[1]
    stored = pa.table(  # noqa: F841 (read by the SQL below)
        {
            "id": pa.array(np.arange(len(x), dtype=np.int64)),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim),
        }
    )
    con = duckdb.connect(str(folder / "vss.duckdb"))
    con.execute(f"install '{path}'")
    con.execute("load vss")
    con.execute("set hnsw_enable_experimental_persistence = true")
    con.execute("create table e as select * from stored")

    def build() -> float:
        started = time.perf_counter()
        con.execute("drop index if exists e_hnsw")
        con.execute("create index e_hnsw on e using hnsw (embedding) with (metric = 'cosine')")
        return time.perf_counter() - started

    query = (
        f"select id from e order by array_cosine_distance(embedding, ?::FLOAT[{dim}]) limit {K + 1}"
    )

    def others() -> tuple[np.ndarray, list[float]]:
        found, times = [], []
        for r in rows:
            started = time.perf_counter()
            ids = [i for (i,) in con.execute(query, [x[r].tolist()]).fetchall()]
            times.append(time.perf_counter() - started)
            found.append([i for i in ids if i != r][:K])
        return np.array(found), times

    build_s = build()
    plan = con.execute(f"explain {query}", [x[0].tolist()]).fetchall()
    uses_index = any("HNSW" in str(part) for row in plan for part in row)
    found, times = others()
    build()
    again, _ = others()
    con.close()
    return {
        "index": "DuckDB vss HNSW (cosine), one query per row",
        "plan_uses_index": uses_index,
        "build_s": round(build_s, 1),
        "every_row_s": round(float(np.mean(times)) * len(x), 1),
        "found": {int(r): f.tolist() for r, f in zip(rows, found, strict=True)},
        "same_twice": bool((found == again).all()),
        "query_p50_ms": round(1000 * float(np.median(times)), 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--warehouse", required=True)
    parser.add_argument("--space", default="lineitem")
    parser.add_argument("--rows", type=int, default=150_000)
    parser.add_argument("--every-row-sample", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "neighbour_indexes_results.json"))
    args = parser.parse_args(argv)
    with duckdb.connect(args.warehouse, read_only=True) as con:
        stored = fetch_arrow(
            con,
            f"select embedding from ml.{args.space}_embeddings order by rowid limit {args.rows}",
        )
    column = stored.column("embedding").combine_chunks()
    x = column.flatten().to_numpy().reshape(len(stored), column.type.list_size)
    x = np.ascontiguousarray(unit(x.astype(np.float32)))
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(x), QUERIES, replace=False))
    sample = np.sort(rng.choice(len(x), min(args.every_row_sample, len(x)), replace=False))
    truth = exact_nearest(x, rows)
    reports = []
    with tempfile.TemporaryDirectory() as folder:
        for report in (
            faiss_report(x, rows, sample, args.seed),
            usearch_report(x, rows, sample),
            vss_report(x, rows, Path(folder)),
        ):
            found = report.pop("found", None)
            if found is not None:
                report["recall_at_10"] = round(recall(found, truth, rows), 4)
            print(json.dumps(report), flush=True)
            reports.append(report)
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "source": f"{args.warehouse} ml.{args.space}_embeddings, first {len(x)} rows",
        "indexes": reports,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
