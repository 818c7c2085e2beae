"""Benchmark: what profiling and join validation cost on a large messy table, as ratios of
one plain scan of the same table (count and count distinct of every column).

Usage: .venv/bin/python bench/profiling_cost.py --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.spec import parse_spec  # noqa: E402
from pipeline.understanding.joins import validate_joins  # noqa: E402
from pipeline.understanding.profiling import profile_space  # noqa: E402

MESSY_COLUMNS = """
    i as customer_id,
    case when i % 97 = 0 then 'n/a' else (random() * 100)::decimal(8, 2)::varchar end
        as amount_text,
    case when i % 2 = 0 then 'yes' else 'no' end as newsletter,
    ['low', 'medium', 'high'][i % 3 + 1] as risk,
    strftime(date '2020-01-01' + (i % 1000)::int, '%m/%d/%Y') as signup,
    'user' || i || '@' || ['gmail.com', 'acme.io', 'corp.de'][i % 3 + 1] as email,
    'https://www.' || ['acme', 'shop'][i % 2 + 1] || '.com/p/' || (i % 50) || '?ref=' || i
        as landing_page,
    '+1 (' || (200 + i % 700) || ') 555-' || lpad((i % 10000)::varchar, 4, '0') as phone,
    '{"visits": ' || (i % 7) || ', "device": {"os": "' || ['ios', 'android'][i % 2 + 1]
        || '"}}' as attributes,
    uuid()::varchar as session_uuid,
    md5(i::varchar) as row_hash,
    ['free', 'pro', 'basic'][i % 3 + 1] as plan,
    'crm' as source_system,
    round(random() * 500, 2) as lifetime_value
"""


def build(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(f"create table customers as select {MESSY_COLUMNS} from range({rows}) t(i)")
        con.execute(
            "create table orders as select j as order_id, "
            f"case when j % 100 = 0 then j + {rows} else j % {rows} end as customer_id, "
            "random() * 100 as amount from range(?) t(j)",
            [2 * rows],
        )
    finally:
        con.close()


def timed(step) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        warehouse = Path(folder) / "messy.duckdb"
        build_s = timed(lambda: build(warehouse, args.rows))
        spec = parse_spec(
            {
                "warehouse": str(warehouse),
                "spaces": {
                    "customers": {
                        "table": "main.customers",
                        "key": "customer_id",
                        "children": [{"space": "orders", "foreign_key": "customer_id"}],
                    },
                    "orders": {"table": "main.orders", "key": "order_id"},
                },
            }
        )
        con = duckdb.connect(str(warehouse))
        try:
            columns = [r[0] for r in con.execute("describe customers").fetchall()]
            scan = ", ".join(f'count("{c}"), count(distinct "{c}")' for c in columns)
            scan_s = timed(lambda: con.execute(f"select {scan} from customers").fetchall())
            profiles: list = []
            profile_s = timed(lambda: profiles.extend(profile_space(con, spec, "customers")))
            joins: list = []
            join_s = timed(lambda: joins.extend(validate_joins(con, spec, space="customers")))
        finally:
            con.close()
    print(f"rows: {args.rows:,} customers, {2 * args.rows:,} orders (built in {build_s:.1f} s)")
    print(f"one scan (count + count distinct per column): {scan_s:.2f} s")
    print(f"profile_space: {profile_s:.2f} s ({profile_s / scan_s:.1f}x the scan)")
    print(f"validate_joins (customers <- orders): {join_s:.2f} s ({join_s / scan_s:.1f}x)")
    for p in profiles:
        state = f"excluded: {p.reason}" if p.excluded else p.reason
        print(f"  {p.column:16s} {p.detected_type:10s} unparsed={p.unparsed_count:<6d} {state}")
    for j in joins:
        print(f"  join {j.parent} <- {j.child}: {j.status}, kl {j.kl_shift}, {j.message}")


if __name__ == "__main__":
    main()
