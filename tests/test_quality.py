"""Quality claims on data with a planted signal: the hierarchy must beat the parent alone.

The demo's `churned` depends on a hidden per-customer state that shows only in child rows
(late and returned orders, angry tickets); the customers table itself carries almost none.
"""

from __future__ import annotations

import duckdb
import numpy as np
from sklearn.linear_model import LogisticRegression

from tests.conftest import held_out_churn_auc

SPLIT_SEEDS = (0, 1, 2)
REQUIRED_MARGIN = 0.15


def test_hierarchy_beats_parent_only_on_planted_signal(hierarchical_run, parent_only_run):
    hierarchical = held_out_churn_auc(hierarchical_run, SPLIT_SEEDS)
    parent_only = held_out_churn_auc(parent_only_run, SPLIT_SEEDS)
    margin = np.mean(hierarchical) - np.mean(parent_only)
    print(
        f"held-out churn AUC: hierarchy {np.round(hierarchical, 3)} "
        f"parent-only {np.round(parent_only, 3)} margin {margin:.3f}"
    )
    assert np.mean(hierarchical) > 0.75
    assert margin >= REQUIRED_MARGIN


def test_predictor_metrics_are_recorded(hierarchical_run):
    con = duckdb.connect(str(hierarchical_run.warehouse), read_only=True)
    try:
        metrics = con.execute(
            "select metrics from ml.training_runs where kind = 'predictor' "
            "and space = 'customers' and target = 'churned'"
        ).fetchone()[0]
    finally:
        con.close()
    assert '"auc"' in metrics


def test_child_embeddings_carry_child_content(hierarchical_run):
    """Orders embeddings must encode the order status (the signal the parent pools)."""
    con = duckdb.connect(str(hierarchical_run.warehouse), read_only=True)
    try:
        rows = con.execute(
            "select e.embedding, o.status from ml.orders_embeddings e "
            "join main.stg_orders o using (order_id) order by order_id"
        ).fetchall()
    finally:
        con.close()
    x = np.array([r[0] for r in rows])
    status = np.array([r[1] for r in rows])
    train = np.random.default_rng(0).random(len(x)) < 0.7
    probe = LogisticRegression(max_iter=2000).fit(x[train], status[train])
    accuracy = probe.score(x[~train], status[~train])
    majority = max(np.mean(status[~train] == c) for c in set(status))
    assert accuracy > majority + 0.15
