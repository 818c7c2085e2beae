"""One against two concurrent partitions: the time to embed a space's rows again on a
DuckLake (PostgreSQL catalog, Parquet files) by one unpartitioned process, then by two
processes at once, each its slice (`partitions: 2`, `embed --partition i`).

    .venv/bin/python bench/partitions.py --scale 1 --space order_items --workdir /tmp/parts
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.backends import dbt_staging  # noqa: E402
from pipeline.demo import generate_demo_warehouse  # noqa: E402
from pipeline.warehouse.connection import Warehouse  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402


def embed_processes(spec: Path, space: str, partitions: list[int | None]) -> float:
    """Wall seconds for `python -m pipeline embed` of `space`, one process per partition,
    all started at once."""
    command = [sys.executable, "-m", "pipeline", "embed", "--spec", str(spec), "--space", space]
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            command + ([] if p is None else ["--partition", str(p)]),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for p in partitions
    ]
    for process in processes:
        if process.wait() != 0:
            raise RuntimeError(process.stderr.read().decode()[-3000:])
    return round(time.perf_counter() - started, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--space", default="order_items")
    parser.add_argument("--workdir", default="/tmp/parts")
    parser.add_argument("--out", default=str(REPO / "bench" / "partitions_results.json"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    (workdir / "lake").mkdir(parents=True)
    server = PostgresServer.start()
    try:
        location = f"ducklake:postgres:{server.create_database('lake')}"
        options = {"data_path": str(workdir / "lake")}
        warehouse = Warehouse(location, options=options)
        generate_demo_warehouse(location, scale=args.scale, seed=0, options=options)
        dbt_staging(warehouse)
        spec = yaml.safe_load((REPO / "spaces.yaml").read_text())
        spec.update(
            warehouse=location, warehouse_options=options, artifacts=str(workdir / "artifacts")
        )
        whole, sliced = workdir / "spaces.yaml", workdir / "partitioned.yaml"
        whole.write_text(yaml.safe_dump(spec, sort_keys=False))
        sliced.write_text(yaml.safe_dump({**spec, "partitions": 2}, sort_keys=False))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "pipeline", "run", "--spec", str(whole)],
            cwd=REPO, check=True, capture_output=True,
        )  # fmt: skip
        result = {
            "scale": args.scale,
            "space": args.space,
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "first_run_s": round(time.perf_counter() - started, 1),
        }
        table = f"ml.{args.space}_embeddings"
        with warehouse.connect() as con:
            result["rows"] = con.execute(f"select count(*) from {table}").fetchone()[0]
        for label, spec_path, partitions in (
            ("one_process_s", whole, [None]),
            ("two_partitions_at_once_s", sliced, [0, 1]),
            ("one_process_again_s", whole, [None]),
        ):
            with warehouse.connect() as con:
                con.execute(f"drop table {table}")
            result[label] = embed_processes(spec_path, args.space, partitions)
            print(label, result[label], flush=True)
    finally:
        server.stop()
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
