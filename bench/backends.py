"""The demo's run time on the three warehouses: a DuckDB file, a DuckLake (PostgreSQL
catalog, Parquet files) and a PostgreSQL database, on a throwaway local PostgreSQL server.

Per backend, in one process after another: the demo's raw tables, dbt staging, `python -m
pipeline run` on fresh models (*first*), and again on unchanged data (*unchanged*), each
`run` in its own child process (wall time and peak RSS, VmHWM).

    .venv/bin/python bench/backends.py --scale 0.25 --workdir /tmp/backends
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

from pipeline.demo import generate_demo_warehouse  # noqa: E402
from pipeline.warehouse.connection import Warehouse  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

BIN = Path(sys.executable).parent


def timed_run(spec: Path) -> dict:
    """`python -m pipeline run` in a child process: wall seconds and its peak RSS (MB)."""
    script = (
        "import runpy, sys; sys.argv = ['pipeline', 'run', '--spec', sys.argv[1]]\n"
        "try:\n    runpy.run_module('pipeline', run_name='__main__')\nfinally:\n"
        "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
        "    print('PEAK_KB', peak.split()[1], file=sys.stderr)\n"
    )
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", script, str(spec)], capture_output=True, text=True, cwd=REPO
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    peak = [line for line in result.stderr.splitlines() if line.startswith("PEAK_KB")]
    return {"wall_s": round(wall, 1), "peak_rss_mb": int(peak[-1].split()[1]) // 1024}


def dbt_staging(warehouse: Warehouse) -> float:
    env = {**os.environ, **warehouse.backend.dbt_environment()}
    sql = str(REPO / "sql")
    started = time.perf_counter()
    subprocess.run(
        [str(BIN / "dbt"), "run", "--select", "staging", "--project-dir", sql,
         "--profiles-dir", sql],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    return round(time.perf_counter() - started, 1)


def measure(name: str, location: str, options: dict, folder: Path, scale: float) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    warehouse = Warehouse(location, options=options)
    started = time.perf_counter()
    generate_demo_warehouse(location, scale=scale, seed=0, options=options)
    entry = {"demo_tables_s": round(time.perf_counter() - started, 1)}
    entry["dbt_staging_s"] = dbt_staging(warehouse)
    spec = yaml.safe_load((REPO / "spaces.yaml").read_text())
    spec.update(warehouse=location, artifacts=str(folder / "artifacts"))
    if options:
        spec["warehouse_options"] = options
    (folder / "spaces.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    entry["first"] = timed_run(folder / "spaces.yaml")
    entry["unchanged"] = timed_run(folder / "spaces.yaml")
    print(name, entry, flush=True)
    return entry


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.25)
    parser.add_argument("--workdir", default="/tmp/backends")
    parser.add_argument("--out", default=str(REPO / "bench" / "backends_results.json"))
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    server = PostgresServer.start()
    try:
        lake_data = workdir / "lake" / "data"
        lake_data.mkdir(parents=True)
        results = {
            "scale": args.scale,
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "file": measure(
                "file", str(workdir / "file" / "warehouse.duckdb"), {}, workdir / "file",
                args.scale,
            ),
            "ducklake": measure(
                "ducklake", f"ducklake:postgres:{server.create_database('lake')}",
                {"data_path": str(lake_data)}, workdir / "lake", args.scale,
            ),
            "postgres": measure(
                "postgres", f"postgres:{server.create_database('shop')}", {},
                workdir / "postgres", args.scale,
            ),
        }  # fmt: skip
    finally:
        server.stop()
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
