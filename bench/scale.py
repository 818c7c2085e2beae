"""Benchmark: `pipeline run` on TPC-H as rows grow, and runs that redo only what changed
(issue 15 items 1 and 3).

The warehouse (built from `tpchgen-cli` parquet output, offline, free-text comment columns
dropped as in `bench/warehouse_time.py`): customer <- orders <- lineitem, lineitem -> part
and supplier, customer -> nation; target c_mktsegment (random in dbgen: timing only). Per
scale factor, in one process tree and one session:

  (1) sql_aggregates  SQL aggregates + LightGBM on the same warehouse (`warehouse_time`).
  (2) first run       `pipeline.runner.run` in a child process: wall seconds per step, peak
                      RSS (VmHWM of the child process).
  (3) second run      the same, on unchanged data: nothing should be trained or embedded.
  (4) changed run     after `o_totalprice` of a seeded 1% of the orders changed: only those
                      orders and the customers owning them should be embedded and scored
                      again (checked against `embedded_at` and `predicted_at`).

Usage:
  .venv/bin/python bench/scale.py --scales 0.01 0.05 --workdir /tmp/scale
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import duckdb  # noqa: E402
import relational  # noqa: E402
import warehouse_time  # noqa: E402

CHANGED_SHARE = 0.01


def build_scale_warehouse(con, source: Path) -> dict:
    for table in (*warehouse_time.TPCH_TABLES, "nation"):
        warehouse_time._load(con, source, table)
    space = warehouse_time._space
    spec = {
        "spaces": {
            "customer": space(
                "customer",
                "c_custkey",
                columns={"c_mktsegment": {"target": True}},
                children=[
                    {"space": "orders", "foreign_key": "o_custkey", "order_by": "o_orderdate"}
                ],
                references=[{"space": "nation", "foreign_key": "c_nationkey"}],
            ),
            "orders": space(
                "orders",
                "o_orderkey",
                time_column="o_orderdate",
                children=[{"space": "lineitem", "foreign_key": "l_orderkey"}],
            ),
            "lineitem": space(
                "lineitem",
                ["l_orderkey", "l_linenumber"],
                references=[
                    {"space": "part", "foreign_key": "l_partkey"},
                    {"space": "supplier", "foreign_key": "l_suppkey"},
                ],
            ),
            "part": space("part", "p_partkey"),
            "supplier": space("supplier", "s_suppkey"),
            "nation": space("nation", "n_nationkey"),
        }
    }
    return {
        "spec": spec,
        "parent": "customer",
        "target": "c_mktsegment",
        "description": (
            "TPC-H, customer <- orders <- lineitem, lineitem -> part and supplier, customer -> "
            "nation. Target c_mktsegment: random in dbgen (timing only)."
        ),
    }


warehouse_time.WAREHOUSES["scale"] = build_scale_warehouse


def generate(scale: float, folder: Path) -> Path:
    source = warehouse_time.generate_tpch(scale, folder)
    if not (folder / "nation.parquet").exists():
        subprocess.run(
            [
                warehouse_time.tpchgen_cli(),
                "parquet",
                "--scale-factor",
                str(scale),
                "--output-dir",
                str(folder),
                "--tables",
                "nation",
                "--quiet",
            ],
            check=True,
        )
    return source


def stamps(warehouse: Path, table: str, key: str, column: str) -> dict:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return dict(con.execute(f"select {key}, {column} from ml.{table}").fetchall())
    finally:
        con.close()


def change_orders(warehouse: Path, share: float) -> tuple[int, set]:
    """Change o_totalprice of a seeded `share` of the orders; returns how many and the
    customers owning them."""
    con = duckdb.connect(str(warehouse))
    try:
        con.execute(
            "create temp table changed as select o_orderkey, o_custkey from main.orders "
            f"using sample {share * 100}% (bernoulli, 7)"
        )
        con.execute(
            "update main.orders set o_totalprice = o_totalprice + 1 "
            "where o_orderkey in (select o_orderkey from changed)"
        )
        n = con.execute("select count(*) from changed").fetchone()[0]
        owners = {r[0] for r in con.execute("select distinct o_custkey from changed").fetchall()}
        return n, owners
    finally:
        con.close()


def brief(run: dict) -> dict:
    summary = (json.loads(Path(run["timing"]).read_text()) if run.get("timing") else {}).get(
        "summary", {}
    )
    return {
        "wall_s": run.get("wall_s"),
        "max_rss_mb": run.get("max_rss_mb"),
        "error": run.get("error"),
        "trained": {s: v.get("trained") for s, v in summary.items()},
        "rows_embedded": {s: v.get("rows_embedded") for s, v in summary.items()},
        "rows_predicted": summary.get("customer", {}).get("c_mktsegment_rows_predicted"),
        "steps": run.get("steps"),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.01, 0.05])
    parser.add_argument("--out", default=str(BENCH / "scale_results.json"))
    parser.add_argument("--workdir")
    parser.add_argument("--project-timeout", type=float, default=None)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="scale_"))
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("scales", {})
    for scale in args.scales:
        source = generate(scale, workdir / f"tpch_sf{scale:g}")
        warehouse = workdir / f"scale_sf{scale:g}.duckdb"
        task, rows = warehouse_time.build_warehouse("scale", scale, source, warehouse)
        entry = {
            "rows": rows,
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "sql_aggregates": warehouse_time.aggregates_baseline(task, warehouse),
        }
        runs = {}
        for label in ("first", "unchanged"):
            runs[label] = warehouse_time.run_project(task, warehouse, args.project_timeout)
            runs[label]["timing"] = str(warehouse.with_name(warehouse.stem + f"_{label}.json"))
            os.replace(warehouse.with_name(warehouse.stem + "_timing.json"), runs[label]["timing"])
        customers = stamps(warehouse, "customer_embeddings", "c_custkey", "embedded_at")
        predicted = stamps(
            warehouse, "customer__c_mktsegment_predictions", "c_custkey", "predicted_at"
        )
        n_changed, owners = change_orders(warehouse, CHANGED_SHARE)
        runs["changed"] = warehouse_time.run_project(task, warehouse, args.project_timeout)
        runs["changed"]["timing"] = str(warehouse.with_name(warehouse.stem + "_changed.json"))
        os.replace(warehouse.with_name(warehouse.stem + "_timing.json"), runs["changed"]["timing"])
        after = stamps(warehouse, "customer_embeddings", "c_custkey", "embedded_at")
        scored = stamps(
            warehouse, "customer__c_mktsegment_predictions", "c_custkey", "predicted_at"
        )
        moved = {k for k in after if customers.get(k) != after[k]}
        rescored = {k for k in scored if predicted.get(k) != scored[k]}
        entry["runs"] = {label: brief(run) for label, run in runs.items()}
        first = runs["first"].get("wall_s") or float("nan")
        entry["changed_orders"] = n_changed
        entry["owners"] = len(owners)
        entry["customers_reembedded"] = len(moved)
        entry["only_owners_reembedded"] = moved == owners
        entry["only_owners_rescored"] = rescored == owners
        entry["unchanged_share_of_first"] = round(runs["unchanged"].get("wall_s", 0) / first, 4)
        entry["changed_share_of_first"] = round(runs["changed"].get("wall_s", 0) / first, 4)
        relational.project_limit(runs["first"], entry["sql_aggregates"])
        entry["limit_10x_aggregates_s"] = round(10 * entry["sql_aggregates"]["wall_s"], 1)
        report["scales"][f"{scale:g}"] = entry
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(
            f"sf {scale:g}: aggregates {entry['sql_aggregates']['wall_s']} s; run "
            f"{runs['first'].get('wall_s')} s ({runs['first'].get('max_rss_mb')} MB), unchanged "
            f"{runs['unchanged'].get('wall_s')} s ({entry['unchanged_share_of_first']:.1%}), "
            f"1% orders changed {runs['changed'].get('wall_s')} s "
            f"({entry['changed_share_of_first']:.1%}); customers re-embedded {len(moved)} of "
            f"{len(owners)} owners, only owners: {moved == owners}, rescored only owners: "
            f"{rescored == owners}",
            flush=True,
        )
    print(f"results: {out}")


if __name__ == "__main__":
    main()
