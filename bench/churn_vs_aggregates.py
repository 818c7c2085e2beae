"""Benchmark: churn AUC on held-out demo customers, three ways, on one warehouse and split.

1. hierarchical space (customers <- orders <- order_items, <- support_tickets, -> regions)
2. customers table alone (parent-only space)
3. the RelBench-style bar: gradient boosting on hand-written SQL aggregates of the children

Usage: .venv/bin/python bench/churn_vs_aggregates.py --scale 1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import runner  # noqa: E402
from tests.conftest import (  # noqa: E402
    demo_spec_dict,
    held_out_churn_auc,
    make_demo_warehouse,
    parent_only_spec_dict,
    write_spec,
)

AGGREGATES = """
select c.customer_id, c.churned, c.age, c.plan, c.region_id, epoch(c.signup_date) as signup,
       count(distinct o.order_id) as orders,
       avg(case when o.status = 'late' then 1.0 else 0.0 end) as late_share,
       avg(case when o.status = 'returned' then 1.0 else 0.0 end) as returned_share,
       avg(o.shipping_days) as shipping_days, avg(o.total_amount) as amount,
       (select count(*) from main.stg_support_tickets t where t.customer_id = c.customer_id)
           as tickets,
       (select count(*) from main.stg_support_tickets t where t.customer_id = c.customer_id
           and t.priority = 'high') as urgent_tickets
from main.stg_customers c left join main.stg_orders o using (customer_id)
group by all order by c.customer_id
"""


def holdout_mask(labels: list[str], seed: int, fraction: float = 0.2) -> np.ndarray:
    """A seeded 20% hold-out, stratified by label."""
    rng = np.random.default_rng(seed)
    values = np.asarray(labels)
    mask = np.zeros(len(values), dtype=bool)
    for value in sorted(set(labels)):
        rows = np.flatnonzero(values == value)
        mask[rng.permutation(rows)[: int(round(len(rows) * fraction))]] = True
    return mask


def aggregates_auc(warehouse: Path, seeds) -> list[float]:
    con = duckdb.connect(str(warehouse), read_only=True)
    frame = con.sql(AGGREGATES).df()
    con.close()
    frame = frame[frame.churned.notna()].reset_index(drop=True)
    frame["plan"] = frame["plan"].astype("category").cat.codes
    x = frame.drop(columns=["customer_id", "churned"]).to_numpy(np.float64)
    labels = ["true" if v else "false" for v in frame.churned]
    y = np.array([v == "true" for v in labels])
    scores = []
    for seed in seeds:
        held = holdout_mask(labels, seed)
        model = HistGradientBoostingClassifier(random_state=seed).fit(x[~held], y[~held])
        scores.append(float(roc_auc_score(y[held], model.predict_proba(x[held])[:, 1])))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_"))
    started = time.time()
    warehouse = make_demo_warehouse(folder, args.scale)
    built = time.time()
    hierarchical = write_spec(folder / "h.yaml", demo_spec_dict(warehouse, folder / "a"))
    runner.run(hierarchical, progress=False)
    trained = time.time()
    flat = write_spec(folder / "f.yaml", parent_only_spec_dict(warehouse, folder / "f", "ml_flat"))
    runner.run(flat, progress=False)
    results = {
        "hierarchical space + MLP": held_out_churn_auc(hierarchical, args.seeds),
        "customers table alone + MLP": held_out_churn_auc(flat, args.seeds),
        "gradient boosting on SQL aggregates": aggregates_auc(warehouse, args.seeds),
    }
    print(
        f"\nscale {args.scale}, split seeds {args.seeds}; warehouse + dbt "
        f"{built - started:.0f} s, hierarchical pipeline {trained - built:.0f} s\n"
    )
    print("| model | held-out churn AUC (mean) | per split |\n|---|---|---|")
    for name, scores in results.items():
        print(f"| {name} | {np.mean(scores):.3f} | {', '.join(f'{s:.3f}' for s in scores)} |")


if __name__ == "__main__":
    main()
