"""Benchmark: does DuckDB's memory stay within its `memory_limit` as the rows written grow?

What `publish` does at the end of `embed` (the pending rows become the embeddings table, in
one transaction), on an embeddings-shaped table (two integer keys, a FLOAT[64] embedding,
a fingerprint, a version and a time) of N rows, in a fresh child process per (N, limit):
the child's peak resident memory (VmHWM) before and after the transaction, and its seconds.

Usage:
  .venv/bin/python bench/duckdb_memory.py --rows 600000 2400000 6000000 --limits 256MB 1GB
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

CHILD = """
import duckdb, json, sys, time
def status():
    return {l.split(':')[0]: int(l.split()[1]) // 1024 for l in open('/proc/self/status')
            if l.startswith(('VmRSS', 'VmHWM'))}
path, limit = sys.argv[1], sys.argv[2]
con = duckdb.connect(path, config={'memory_limit': limit})
con.execute('set enable_progress_bar = false')
before = status()
started = time.perf_counter()
con.execute('begin transaction')
con.execute('create or replace table embeddings as select * from pending')
con.execute('drop table pending')
con.execute('commit')
seconds = time.perf_counter() - started
after = status()
con.execute('drop table embeddings')
con.close()
print(json.dumps({'before_mb': before['VmHWM'], 'peak_mb': after['VmHWM'],
                  'seconds': round(seconds, 2)}))
"""


def build(path: Path, rows: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(
            "create or replace table pending as select range // 4 as l_orderkey, "
            "range % 4 as l_linenumber, "
            "list_transform(range(64), j -> (hash(range, j) % 1000 / 1000.0)::float)::float[64] "
            "as embedding, hash(range) as row_fingerprint, 'abc123' as space_version, "
            f"now()::timestamp as embedded_at from range({rows})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[600_000, 2_400_000, 6_000_000])
    parser.add_argument("--limits", nargs="+", default=["256MB", "1GB"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "duckdb_memory_results.json"))
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "memory.duckdb"
        for rows in args.rows:
            for limit in args.limits:
                build(path, rows)
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), limit],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                measured = json.loads(out.stdout.strip().splitlines()[-1])
                result = {"rows": rows, "memory_limit": limit, **measured}
                results.append(result)
                print(result, flush=True)
    Path(args.out).write_text(
        json.dumps({"duckdb": duckdb.__version__, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
