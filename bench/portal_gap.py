"""Analysis: where the project's loss on Portal comes from, on the warehouses that
`bench/relational.py --workdir W` left behind (run it first).

Prints the test AUC of (1) the project's own tree features (parent columns + child
statistics, as `gbdt_aggregates` reads them) fitted with the benchmark's LightGBM protocol
(one model, early stopping on 20% of the training keys, refit), which separates features
from protocol; (2) the SQL-aggregate baseline, whole and with each group of its columns left
out, which shows which aggregates carry the signal the project lacks.

Usage:
  .venv/bin/python bench/portal_gap.py --workdir /tmp/b7/w
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import relational  # noqa: E402
import relational_data  # noqa: E402

from pipeline import runner  # noqa: E402
from pipeline.predictors import predictor_features  # noqa: E402
from pipeline.predictors.reads import target_column  # noqa: E402
from pipeline.spaces.space import Space  # noqa: E402
from pipeline.spec import load_spec  # noqa: E402

TASK = "portal_plot_type"
GROUPS = ("genus", "taxa", "species", "mode", "distinct", "hindfoot", "weight", "sex", "date")


def test_auc(task, x: pd.DataFrame, keys: list[tuple], labels: np.ndarray, classes) -> float:
    test = {relational_data._as_tuple(k) for k in task.test_keys}
    labelled = np.array([not relational._missing(v) for v in labels])
    labelled &= ~np.array([k in test for k in keys])
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in labels[labelled]])
    position = {k: i for i, k in enumerate(keys)}
    order = [position[relational_data._as_tuple(k)] for k in task.test_keys]
    output, _ = relational.fit_predict(x[labelled], y, x.iloc[order], task.task, len(classes))
    return relational.score(task.task, task.truth(), np.asarray(output), classes)["auc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", required=True)
    workdir = Path(parser.parse_args().workdir)
    task = relational_data.TASKS[TASK]()

    spec = load_spec(workdir / f"{TASK}_spaces.yaml")
    space = Space.load(runner.space_folder(spec, task.parent))
    warehouse = runner.warehouse_of(spec)
    with warehouse.connect() as con:
        inputs = space.read_inputs(warehouse, con, spec)
        labels = np.array(
            target_column(con, spec, task.parent, task.target).to_pylist(), dtype=object
        )
    features = predictor_features(inputs, np.zeros((inputs.n_rows, 1)))
    ours = pd.DataFrame(features.table, columns=features.names)
    for j in features.categorical:
        ours[features.names[j]] = ours[features.names[j]].astype("category")
    columns = inputs.keys.column_names
    keys = [
        relational_data._as_tuple(k)
        for k in zip(*(inputs.keys.column(c).to_pylist() for c in columns), strict=True)
    ]
    classes = relational.classes_of(labels[[v is not None for v in labels]])
    auc = test_auc(task, ours, keys, labels, classes)
    print(f"project's tree features ({ours.shape[1]}), benchmark protocol: AUC {auc:.4f}")

    con = duckdb.connect(str(workdir / f"{TASK}_baselines.duckdb"), read_only=True)
    try:
        sql = relational.parent_sql(
            relational.Schema(con, task.spec), task.parent, task.target, True
        )
        frame = con.sql(sql).df()
    finally:
        con.close()
    key = task.key_columns
    aggregates = relational.prepare(frame.drop(columns=[*key, task.target]))
    base_keys = relational._keys(frame, key)
    base_labels = frame[task.target].to_numpy(dtype=object)
    auc = test_auc(task, aggregates, base_keys, base_labels, classes)
    print(f"SQL aggregates ({aggregates.shape[1]}): AUC {auc:.4f}")
    for word in GROUPS:
        kept = [c for c in aggregates.columns if word not in c.lower()]
        if len(kept) < aggregates.shape[1]:
            auc = test_auc(task, aggregates[kept], base_keys, base_labels, classes)
            left = aggregates.shape[1] - len(kept)
            print(f"  without the {left} columns naming '{word}': AUC {auc:.4f}")


if __name__ == "__main__":
    main()
