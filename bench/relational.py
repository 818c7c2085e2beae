"""Benchmark: the project against LightGBM baselines on real public multi-table data.

For each task of `bench/relational_data.py` (data shipped inside PyPI wheels, written into a
fresh DuckDB warehouse with the test targets set to NULL), on one fixed test split:

  (a) parent_only     LightGBM on the parent table's own columns;
  (b) sql_aggregates  LightGBM on Featuretools-style aggregates computed in DuckDB SQL,
                      generated from the spec (count; sum/mean/min/max/std of numbers;
                      distinct count and most frequent label of small categories; min/max of
                      timestamps; grandchildren aggregated per child first, then stacked),
                      plus the parent's own columns;
  (c) project         `pipeline.runner.run` on the spec, scored from
                      `ml.<parent>__<target>_predictions`, with the predictor runs of
                      `ml.training_runs` (every candidate's score where recorded).

Wall seconds include reading the warehouse (and computing the aggregates). LightGBM: fixed
parameters, the number of trees by early stopping on a seeded 20% of the TRAINING keys, then
refitted on all training keys; num_threads=2, seed 0.

Probes (not counted in any wall time) ask how much of the target a row vector holds, the same
way for two vectors: the project's stored root embedding (`ml.<parent>_embeddings`, read after
the run) and a 64-d PCA of the sql_aggregates features (rank-gaussianised, missing indicators,
top-10 one-hot, standardized; fitted on all rows, no target). Each gets (1) kNN: the mean label
of the 25 nearest training rows by cosine similarity, and (2) LightGBM on the coordinates, with
the protocol above. Training rows are the labelled rows outside the test keys, as for the
baselines; the test labels are used for scoring only.

The project's result also carries `limit_s` = max(3 x sql_aggregates wall_s, 120) with
`within_limit`, and the throughput of its predict step (rows / seconds of `runner.predict`,
timed around the call in the child process).

Usage:
  .venv/bin/python bench/relational.py                      # every task, (a), (b) and (c)
  .venv/bin/python bench/relational.py --skip-project       # baselines only (seconds)
  .venv/bin/python bench/relational.py --tasks nlswork_collgrad --project-timeout 900
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import duckdb

_ORIGINAL_ENV = set(os.environ)
# LightGBM's OpenMP threads spin while they wait: on a busy 2-core machine that costs more
# than the work itself. Must be set before lightgbm is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score, roc_auc_score  # noqa: E402
from sklearn.preprocessing import QuantileTransformer, StandardScaler  # noqa: E402

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

import relational_data  # noqa: E402
from relational_data import RelationalTask, write_warehouse  # noqa: E402

LOW_CARDINALITY = 100
"""A text column with at most this many distinct values is a category (count distinct + mode;
a category of the parent for LightGBM); a longer-tailed one is free text and left out."""
MAX_DEPTH = 2
"""Children and grandchildren."""
THREADS = 2
SEED = 0
LGB_PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "num_threads": THREADS,
    "seed": SEED,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
MAX_ROUNDS = 2000
EARLY_STOPPING = 50
KNN_NEIGHBOURS = 25
PCA_COMPONENTS = 64
ONE_HOT_TOP = 10
"""The most frequent values of a text column one-hot encoded for the PCA probe."""
PROJECT_LIMIT_FACTOR = 3
PROJECT_LIMIT_FLOOR_S = 120

NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "FLOAT",
    "REAL",
    "DOUBLE",
    "BOOLEAN",
)


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def table_sql(table: str) -> str:
    return ".".join(q(part) for part in table.split("."))


def as_list(key) -> list[str]:
    return [key] if isinstance(key, str) else list(key)


def kind_of(duck_type: str) -> str | None:
    t = duck_type.upper()
    if t in NUMERIC_TYPES or t.startswith("DECIMAL"):
        return "numeric"
    if t == "DATE" or t.startswith("TIMESTAMP"):
        return "time"
    if t == "VARCHAR":
        return "text"
    return None


class Schema:
    """Column types and text cardinalities of the warehouse tables, read once."""

    def __init__(self, con, spec: dict):
        self.con = con
        self.spec = spec["spaces"]
        self.types: dict[str, dict[str, str]] = {}
        self.low_card: dict[str, set[str]] = {}
        for name, space in self.spec.items():
            rows = con.sql(f"describe {table_sql(space['table'])}").fetchall()
            self.types[name] = {r[0]: r[1] for r in rows}
            texts = [c for c, t in self.types[name].items() if kind_of(t) == "text"]
            self.low_card[name] = set()
            if texts:
                counts = con.sql(
                    "select "
                    + ", ".join(f"count(distinct {q(c)})" for c in texts)
                    + f" from {table_sql(space['table'])}"
                ).fetchone()
                self.low_card[name] = {
                    c for c, n in zip(texts, counts, strict=True) if n <= LOW_CARDINALITY
                }

    def own_features(self, name: str, exclude: set[str]) -> list[tuple[str, str, str]]:
        """(sql expression on alias `t`, feature name, kind) of a table's usable columns."""
        space = self.spec[name]
        exclude = set(exclude)
        exclude |= {c for c, col in (space.get("columns") or {}).items() if col.get("target")}
        for ref in space.get("references", []):
            exclude |= set(as_list(ref["foreign_key"]))
        out = []
        for column, duck_type in self.types[name].items():
            kind = kind_of(duck_type)
            if column in exclude or kind is None:
                continue
            if kind == "text" and column not in self.low_card[name]:
                continue
            out.append((f"t.{q(column)}", column, kind))
        return out

    def reference_joins(self, name: str, alias: str) -> tuple[list[str], list]:
        """Featuretools' direct features: the referenced rows' columns joined in."""
        joins, features = [], []
        for i, ref in enumerate(self.spec[name].get("references", [])):
            target = self.spec[ref["space"]]
            r = f"{alias}_r{i}"
            on = " and ".join(
                f"{alias}.{q(f)} = {r}.{q(k)}"
                for f, k in zip(as_list(ref["foreign_key"]), as_list(target["key"]), strict=True)
            )
            joins.append(f"left join {table_sql(target['table'])} {r} on {on}")
            for expr, column, kind in self.own_features(ref["space"], set(as_list(target["key"]))):
                features.append((expr.replace("t.", f"{r}.", 1), f"{ref['space']}__{column}", kind))
        return joins, features


def _aggregates(expr: str, name: str, kind: str) -> list[tuple[str, str, str]]:
    if kind in ("numeric", "count"):
        # a count of grandchildren is 0, not NULL, for a child without any
        value = expr if kind == "numeric" else f"coalesce({expr}, 0)"
        x = f"cast({value} as double)"
        return [
            (f"sum({x})", f"{name}__sum", "numeric"),
            (f"avg({x})", f"{name}__mean", "numeric"),
            (f"min({x})", f"{name}__min", "numeric"),
            (f"max({x})", f"{name}__max", "numeric"),
            (f"stddev_samp({x})", f"{name}__std", "numeric"),
        ]
    if kind == "text":
        return [
            (f"count(distinct {expr})", f"{name}__distinct", "numeric"),
            (f"mode({expr})", f"{name}__mode", "text"),
        ]
    if kind == "time":
        return [
            (f"epoch(min({expr}))", f"{name}__min", "numeric"),
            (f"epoch(max({expr}))", f"{name}__max", "numeric"),
        ]
    raise ValueError(kind)


def child_summary(schema: Schema, child: str, fk: list[str], depth: int) -> tuple[str, list]:
    """SQL with one row per foreign-key value of `child`: columns fk0.. and the aggregates of
    the child's columns, its references' columns and (stacked) its own children's summaries."""
    space = schema.spec[child]
    key = as_list(space["key"])
    # a single surrogate key is not a feature; the non-foreign-key parts of a composite key
    # are data (a year, a sample index)
    exclude = set(fk) | (set(key) if len(key) == 1 else set())
    features = schema.own_features(child, exclude)
    joins, direct = schema.reference_joins(child, "t")
    features += direct
    if depth < MAX_DEPTH:
        for i, link in enumerate(space.get("children", [])):
            sub_fk = as_list(link["foreign_key"])
            sub_sql, sub_features = child_summary(schema, link["space"], sub_fk, depth + 1)
            g = f"g{depth}_{i}"
            on = " and ".join(f"t.{q(k)} = {g}.fk{j}" for j, k in enumerate(key))
            joins.append(f"left join ({sub_sql}) {g} on {on}")
            for _, name, kind in sub_features:
                features.append((f"{g}.{q(name)}", name, kind))
    selects = [f"t.{q(c)} as fk{j}" for j, c in enumerate(fk)]
    out = [(f"{child}__count", "count")]
    selects.append(f"count(*) as {q(out[0][0])}")
    for expr, name, kind in features:
        for agg, agg_name, agg_kind in _aggregates(expr, f"{child}__{name}", kind):
            selects.append(f"{agg} as {q(agg_name)}")
            out.append((agg_name, agg_kind))
    group = ", ".join(f"t.{q(c)}" for c in fk)
    sql = (
        f"select {', '.join(selects)} from {table_sql(space['table'])} t "
        + " ".join(joins)
        + f" group by {group}"
    )
    return sql, [(None, name, kind) for name, kind in out]


def parent_sql(schema: Schema, parent: str, target: str, aggregates: bool) -> str:
    """The parent's keys, target and own columns (timestamps as epoch seconds); with
    `aggregates`, also its references' columns and every child's summary."""
    space = schema.spec[parent]
    key = as_list(space["key"])
    selects = [f"t.{q(k)} as {q(k)}" for k in key] + [f"t.{q(target)} as {q(target)}"]
    features = schema.own_features(parent, set(key))
    joins = []
    if aggregates:
        ref_joins, direct = schema.reference_joins(parent, "t")
        joins += ref_joins
        features += direct
    for expr, name, kind in features:
        value = f"epoch({expr})" if kind == "time" else expr
        selects.append(f"{value} as {q('own__' + name)}")
    if aggregates:
        for i, link in enumerate(space.get("children", [])):
            sub_sql, sub_features = child_summary(
                schema, link["space"], as_list(link["foreign_key"]), 1
            )
            c = f"c{i}"
            on = " and ".join(f"t.{q(k)} = {c}.fk{j}" for j, k in enumerate(key))
            joins.append(f"left join ({sub_sql}) {c} on {on}")
            for _, name, kind in sub_features:
                value = f"coalesce({c}.{q(name)}, 0)" if kind == "count" else f"{c}.{q(name)}"
                selects.append(f"{value} as {q(name)}")
    order = ", ".join(f"t.{q(k)}" for k in key)
    return (
        f"select {', '.join(selects)} from {table_sql(space['table'])} t "
        + " ".join(joins)
        + f" order by {order}"
    )


# --------------------------------------------------------------------------------------------
# LightGBM and metrics
# --------------------------------------------------------------------------------------------


def prepare(frame: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for column in frame.columns:
        values = frame[column]
        if values.dtype == object or str(values.dtype) in ("string", "category"):
            out[column] = values.astype("category")
        else:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)


def fit_predict(
    x_train: pd.DataFrame, y_train: np.ndarray, x_test: pd.DataFrame, task: str, n_classes: int
) -> tuple[np.ndarray, int]:
    params = dict(LGB_PARAMS)
    if task == "binary":
        params["objective"] = "binary"
    elif task == "multiclass":
        params.update(objective="multiclass", num_class=n_classes)
    else:
        params["objective"] = "regression"
    if x_train.shape[1] == 0:  # nothing to learn from: the prior / the mean
        x_train = x_train.assign(constant=0.0)
        x_test = x_test.assign(constant=0.0)
    order = np.random.default_rng(SEED).permutation(len(x_train))
    n_val = max(1, int(round(0.2 * len(x_train))))
    val, fit = order[:n_val], order[n_val:]
    train_set = lgb.Dataset(x_train.iloc[fit], y_train[fit], free_raw_data=False)
    val_set = lgb.Dataset(x_train.iloc[val], y_train[val], reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[val_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
    )
    rounds = max(1, booster.best_iteration or booster.current_iteration())
    final = lgb.train(params, lgb.Dataset(x_train, y_train), num_boost_round=rounds)
    return final.predict(x_test), rounds


def classes_of(values) -> list:
    return sorted({v for v in values if not _missing(v)}, key=lambda v: (str(type(v)), v))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def score(task: str, truth: np.ndarray, output: np.ndarray, classes: list) -> dict:
    """binary: AUC, accuracy; multiclass: macro one-vs-rest AUC, accuracy; regression: RMSE, R²."""
    known = np.array([not _missing(v) for v in truth])
    truth, output = truth[known], output[known]
    if task == "regression":
        y = truth.astype(float)
        p = output.astype(float)
        return {
            "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
            "r2": float(r2_score(y, p)),
            "n_test": int(len(y)),
        }
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index.get(v, -1) for v in truth])
    probabilities = output if output.ndim == 2 else np.column_stack([1 - output, output])
    accuracy = float(accuracy_score(y, probabilities.argmax(axis=1)))
    if task == "binary":
        auc = float(roc_auc_score(y == 1, probabilities[:, 1]))
        return {"auc": auc, "accuracy": accuracy, "n_test": int(len(y))}
    aucs = [
        roc_auc_score(y == k, probabilities[:, k])
        for k in range(len(classes))
        if 0 < (y == k).sum() < len(y)
    ]
    return {"auc": float(np.mean(aucs)), "accuracy": accuracy, "n_test": int(len(y))}


def _keys(frame: pd.DataFrame, key: list[str]) -> list[tuple]:
    return list(frame[key].itertuples(index=False, name=None))


@dataclass
class TrainingRows:
    """Which rows of a frame of parent rows a model learns from, and where the test keys sit.
    Training rows are the labelled rows outside the test keys: a test row's label is never
    read, even where the frame holds it."""

    train: np.ndarray
    """bool per row"""
    y_train: np.ndarray
    """the training rows' labels: class index (classification) or float (regression)"""
    test: list[int]
    """the row of each test key, in the order of `task.test_keys`"""
    classes: list
    """the training labels' classes, sorted; [] for regression"""

    @property
    def n_classes(self) -> int:
        return max(2, len(self.classes))


def training_rows(task: RelationalTask, keys: list[tuple], labels: np.ndarray) -> TrainingRows:
    """`keys` and `labels`: one per row of the frame, in its order."""
    test = {relational_data._as_tuple(k) for k in task.test_keys}
    is_test = np.array([k in test for k in keys], dtype=bool)
    train = np.array([not _missing(v) for v in labels], dtype=bool) & ~is_test
    if task.task == "regression":
        classes: list = []
        y_train = labels[train].astype(float)
    else:
        classes = classes_of(labels[train])
        index = {c: i for i, c in enumerate(classes)}
        y_train = np.array([index[v] for v in labels[train]])
    position = {k: i for i, k in enumerate(keys)}
    absent = [k for k in task.test_keys if relational_data._as_tuple(k) not in position]
    if absent:
        raise ValueError(f"{len(absent)} test key(s) have no row, e.g. {absent[0]!r}")
    order = [position[relational_data._as_tuple(k)] for k in task.test_keys]
    return TrainingRows(train=train, y_train=y_train, test=order, classes=classes)


def baseline(task: RelationalTask, warehouse: Path, aggregates: bool) -> dict:
    """(a) parent_only or (b) sql_aggregates: read, (aggregate), fit, predict; timed. With
    `aggregates`, also the probes of a PCA of the same features (`pca_probes`, not timed in
    `wall_s`)."""
    started = time.perf_counter()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        schema = Schema(con, task.spec)
        sql = parent_sql(schema, task.parent, task.target, aggregates)
        frame = con.sql(sql).df()
    finally:
        con.close()
    read_s = time.perf_counter() - started
    key = task.key_columns
    rows = training_rows(task, _keys(frame, key), frame[task.target].to_numpy(dtype=object))
    x = prepare(frame.drop(columns=[*key, task.target]))
    output, rounds = fit_predict(
        x[rows.train], rows.y_train, x.iloc[rows.test], task.task, rows.n_classes
    )
    wall = time.perf_counter() - started
    result = score(task.task, task.truth(), np.asarray(output), rows.classes)
    result.update(
        wall_s=round(wall, 2),
        read_s=round(read_s, 2),
        n_features=int(x.shape[1]),
        n_train=int(rows.train.sum()),
        trees=int(rounds),
    )
    if aggregates:
        started = time.perf_counter()
        vectors = pca_features(x)
        pca_s = round(time.perf_counter() - started, 2)
        if vectors.shape[1]:
            result["pca_probes"] = {**vector_probes(task, vectors, rows), "pca_s": pca_s}
        else:
            result["pca_probes"] = {"error": "no feature to take a PCA of"}
    return result


# --------------------------------------------------------------------------------------------
# Probes: how much of the target a row vector holds
# --------------------------------------------------------------------------------------------


def pca_features(x: pd.DataFrame, n_components: int = PCA_COMPONENTS) -> np.ndarray:
    """An unsupervised summary of a feature frame (`prepare`d, no target in it): numbers
    rank-gaussianised (a missing-indicator column where any is missing, then the median), the
    `ONE_HOT_TOP` most frequent values of each category one-hot, every column standardized,
    then a PCA fitted on all rows with min(n_components, columns, rows) components.

    Shape: x [rows, features] -> [rows, components]."""
    blocks: list[np.ndarray] = []
    for column in x.columns:
        values = x[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            counts = values.value_counts()
            top = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
            blocks += [(values == v).to_numpy(dtype=float) for v, n in top[:ONE_HOT_TOP] if n]
            continue
        v = values.to_numpy(dtype=float)
        missing = np.isnan(v)
        if len(np.unique(v[~missing])) < 2 and not missing.any():
            continue  # constant: nothing to summarise
        if missing.any():
            blocks.append(missing.astype(float))
        if (~missing).sum() == 0:
            continue
        quantiles = QuantileTransformer(
            output_distribution="normal",
            n_quantiles=int(min(1000, (~missing).sum())),
            random_state=SEED,
        )
        gaussian = quantiles.fit_transform(v[~missing, None])[:, 0]
        filled = np.full(len(v), float(np.median(gaussian)))
        filled[~missing] = gaussian
        blocks.append(filled)
    if not blocks:
        return np.zeros((len(x), 0))
    matrix = StandardScaler().fit_transform(np.column_stack(blocks))
    n = min(n_components, matrix.shape[1], matrix.shape[0])
    return PCA(n_components=n, random_state=SEED).fit_transform(matrix)


def knn_output(
    vectors: np.ndarray, rows: TrainingRows, kind: str, k: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """For each test row, the mean label of its k nearest training rows by cosine similarity:
    the share of positives (binary), of each class (multiclass), the mean (regression).

    Shape: vectors [rows, d] -> [test] (binary, regression) or [test, classes]."""
    vectors = np.asarray(vectors, dtype=np.float64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    train = unit[rows.train]
    k = min(k, len(train))
    if kind == "regression":
        targets = rows.y_train.astype(float)[:, None]
    else:
        targets = np.eye(rows.n_classes)[rows.y_train]
    outputs = []
    for start in range(0, len(rows.test), 1024):
        similarity = unit[rows.test[start : start + 1024]] @ train.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        outputs.append(targets[nearest].mean(axis=1))
    output = np.concatenate(outputs) if outputs else np.zeros((0, targets.shape[1]))
    if kind == "regression":
        return output[:, 0]
    return output[:, 1] if kind == "binary" else output


def vector_probes(task: RelationalTask, vectors: np.ndarray, rows: TrainingRows) -> dict:
    """kNN and LightGBM probes of one vector per row, scored on the test keys.

    Shape: vectors [rows, d], in the order `rows` was built on."""
    truth = task.truth()
    started = time.perf_counter()
    knn = score(task.task, truth, knn_output(vectors, rows, task.task), rows.classes)
    knn.update(
        k=int(min(KNN_NEIGHBOURS, rows.train.sum())),
        seconds=round(time.perf_counter() - started, 2),
    )
    started = time.perf_counter()
    x = pd.DataFrame(np.asarray(vectors, dtype=np.float64))
    x.columns = [f"v{i}" for i in range(x.shape[1])]
    output, rounds = fit_predict(
        x[rows.train], rows.y_train, x.iloc[rows.test], task.task, rows.n_classes
    )
    lightgbm = score(task.task, truth, np.asarray(output), rows.classes)
    lightgbm.update(trees=int(rounds), seconds=round(time.perf_counter() - started, 2))
    return {
        "dim": int(x.shape[1]),
        "n_train": int(rows.train.sum()),
        "knn": knn,
        "lightgbm": lightgbm,
    }


def embedding_probes(task: RelationalTask, warehouse: Path) -> dict:
    """The probes of the project's stored root embedding, `ml.<parent>_embeddings`; the
    training labels are read from the warehouse the project saw (test targets NULL there)."""
    key = task.key_columns
    keys_sql = ", ".join(f"e.{q(k)}" for k in key)
    on = " and ".join(f"e.{q(k)} = t.{q(k)}" for k in key)
    parent_table = table_sql(task.spec["spaces"][task.parent]["table"])
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        frame = con.sql(
            f"select {keys_sql}, e.embedding, t.{q(task.target)} as {q(task.target)} "
            f"from ml.{q(task.parent + '_embeddings')} e "
            f"left join {parent_table} t on {on} order by {keys_sql}"
        ).df()
    finally:
        con.close()
    vectors = np.stack([np.asarray(v, dtype=np.float64) for v in frame["embedding"]])
    rows = training_rows(task, _keys(frame, key), frame[task.target].to_numpy(dtype=object))
    return vector_probes(task, vectors, rows)


# --------------------------------------------------------------------------------------------
# (c) the project
# --------------------------------------------------------------------------------------------

_CHILD = """
import inspect, json, sys, time
started = time.perf_counter()
from pipeline import runner
from pipeline.spec import load_spec
imported = time.perf_counter()
spec = load_spec(sys.argv[1])
kwargs = {"progress": False} if "progress" in inspect.signature(runner.run).parameters else {}
predict_steps = []
untimed_predict = runner.predict
def timed_predict(*args, **kwargs):
    called = inspect.signature(untimed_predict).bind(*args, **kwargs).arguments
    began = time.perf_counter()
    rows = untimed_predict(*args, **kwargs)
    predict_steps.append({"space": called["name"], "target": called["target"], "rows": rows,
                          "seconds": time.perf_counter() - began})
    return rows
runner.predict = timed_predict  # runner.run calls it by its module-level name
summary = runner.run(spec, **kwargs)
finished = time.perf_counter()
with open(sys.argv[2], "w") as handle:
    json.dump({"import_s": imported - started, "run_s": finished - imported,
               "predict_steps": predict_steps, "summary": summary}, handle, default=str)
"""

_CANDIDATE_CHILD = """
import sys, yaml
from pathlib import Path
from pipeline import runner
from pipeline.spec import load_spec
source, parent, target, model = sys.argv[1:5]
data = yaml.safe_load(Path(source).read_text())
data["spaces"][parent]["columns"][target]["model"] = model
forced = Path(source).with_name(Path(source).stem + f"_{model}.yaml")
forced.write_text(yaml.safe_dump(data, sort_keys=False))
spec = load_spec(forced)
runner.train_target(spec, parent, target)
runner.predict(spec, parent, target)
"""
CANDIDATES = ("gbdt", "gbdt_aggregates", "mlp", "fine_tune")


def run_candidates(task: RelationalTask, result: dict, timeout_s: float | None) -> None:
    """Test scores of every predictor candidate, each forced with `model:` on the spaces the
    project run trained (not part of the project's wall time)."""
    chosen = None
    for run in result.get("predictor_runs") or []:
        chosen = (run.get("metrics") or {}).get("chosen", chosen)
    scores = {}
    for model in CANDIDATES:
        if model == chosen:
            continue
        process = subprocess.run(
            [
                sys.executable,
                "-c",
                _CANDIDATE_CHILD,
                result["spec"],
                task.parent,
                task.target,
                model,
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if process.returncode != 0:
            scores[model] = {"error": process.stderr[-2000:]}
            continue
        scored = _score_project(task, Path(result["warehouse"]))
        scores[model] = {k: v for k, v in scored.items() if k not in ("predictor_runs", "splits")}
    result["other_candidates_test"] = scores


def run_project(task: RelationalTask, workdir: str | Path, timeout_s: float | None = None) -> dict:
    """Write the warehouse (test targets NULL), run `pipeline.runner.run` on the spec in a
    child Python process (so a hang can be stopped), score the predictions of the test keys.
    Failures and timeouts are reported in the result, never raised."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    warehouse = workdir / f"{task.name}.duckdb"
    spec_path = write_warehouse(task, warehouse, hide_test=True)
    timing = workdir / f"{task.name}_timing.json"
    timing.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GX_ANALYTICS_ENABLED="false")
    if env.get("OMP_WAIT_POLICY") == "PASSIVE" and "OMP_WAIT_POLICY" not in _ORIGINAL_ENV:
        del env["OMP_WAIT_POLICY"]  # the project runs with the user's environment
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    result: dict = {
        "warehouse": str(warehouse),
        "spec": str(spec_path),
        "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_before": os.getloadavg(),
    }
    started = time.perf_counter()
    log = workdir / f"{task.name}_run.log"
    try:
        with open(log, "w") as handle:
            process = subprocess.run(
                [sys.executable, "-c", _CHILD, str(spec_path), str(timing)],
                cwd=REPO,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                timeout=timeout_s,
            )
    except subprocess.TimeoutExpired:
        result.update(error=f"timeout: stopped after {timeout_s} s", log=str(log))
        result["wall_s"] = round(time.perf_counter() - started, 1)
        return result
    result["process_s"] = round(time.perf_counter() - started, 1)
    result["load_average_after"] = os.getloadavg()
    if process.returncode != 0 or not timing.exists():
        tail = log.read_text(errors="replace")[-4000:]
        result.update(error=f"exit code {process.returncode}", log=str(log), log_tail=tail)
        return result
    times = json.loads(timing.read_text())
    result["wall_s"] = round(times["run_s"], 1)
    result["import_s"] = round(times["import_s"], 1)
    for step in times.get("predict_steps") or []:
        if (step["space"], step["target"]) == (task.parent, task.target) and step["seconds"] > 0:
            result.update(
                predict_rows=int(step["rows"]),
                predict_s=round(step["seconds"], 2),
                predict_rows_per_s=round(step["rows"] / step["seconds"], 1),
            )
    try:
        result.update(_score_project(task, warehouse))
    except Exception:  # noqa: BLE001 - reported, not raised
        result["error"] = "scoring failed: " + traceback.format_exc()[-3000:]
    try:
        result["embedding_probes"] = embedding_probes(task, warehouse)
    except Exception:  # noqa: BLE001 - reported, not raised
        result["embedding_probes"] = {"error": traceback.format_exc()[-3000:]}
    return result


def project_limit(project: dict, aggregates: dict) -> None:
    """The project's time limit on a task, max(3 x sql_aggregates wall_s, 120) s, and whether
    its run finished within it."""
    limit = max(PROJECT_LIMIT_FACTOR * aggregates["wall_s"], PROJECT_LIMIT_FLOOR_S)
    wall = project.get("wall_s")
    project["limit_s"] = round(limit, 1)
    project["within_limit"] = bool(wall is not None and "error" not in project and wall <= limit)


def _score_project(task: RelationalTask, warehouse: Path) -> dict:
    key = task.key_columns
    table = f"ml.{q(f'{task.parent}__{task.target}_predictions')}"
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        columns = {r[0] for r in con.sql(f"describe {table}").fetchall()}
        keys_sql = ", ".join(q(k) for k in key)
        predictions = con.sql(f"select {keys_sql}, prediction from {table}").df()
        probabilities = None
        if "probabilities" in columns and task.task != "regression":
            probabilities = con.sql(
                f"select {keys_sql}, unnest(map_keys(probabilities)) as label, "
                f"unnest(map_values(probabilities)) as p from {table}"
            ).df()
        runs = con.sql(
            "select version, started_at, finished_at, metrics, hyperparameters "
            "from ml.training_runs where kind = 'predictor' and space = ? and target = ? "
            "order by finished_at",
            params=[task.parent, task.target],
        ).df()
        split_counts = (
            dict(con.sql(f"select split, count(*) from {table} group by split").fetchall())
            if "split" in columns
            else None
        )
    finally:
        con.close()
    wanted = [relational_data._as_tuple(k) for k in task.test_keys]
    by_key = dict(zip(_keys(predictions, key), predictions["prediction"], strict=True))
    missing = sum(k not in by_key for k in wanted)
    out: dict = {"missing_test_predictions": int(missing), "splits": split_counts}
    train_labels = task.tables[task.parent][task.target].to_numpy(dtype=object)
    test = {k for k in wanted}
    parent_keys = _keys(task.tables[task.parent], key)
    classes = classes_of(
        [v for k, v in zip(parent_keys, train_labels, strict=True) if k not in test]
    )
    if task.task == "regression":
        output = np.array([by_key.get(k, np.nan) for k in wanted], dtype=float)
    elif probabilities is not None and len(probabilities):
        table_p: dict[tuple, dict[str, float]] = {}
        for row in probabilities.itertuples(index=False):
            k = tuple(getattr(row, c) for c in key)
            table_p.setdefault(k, {})[str(row.label)] = float(row.p)
        output = np.zeros((len(wanted), len(classes)))
        for i, k in enumerate(wanted):
            row = table_p.get(k, {})
            for j, c in enumerate(classes):
                output[i, j] = _probability(row, c)
        out["probability_keys"] = sorted(next(iter(table_p.values()), {}).keys())
    else:
        index = {c: i for i, c in enumerate(classes)}
        output = np.zeros((len(wanted), len(classes)))
        for i, k in enumerate(wanted):
            j = index.get(_same_type(by_key.get(k), classes))
            if j is not None:
                output[i, j] = 1.0
        out["note"] = "no probabilities: AUC from hard predictions"
    out.update(score(task.task, task.truth(), output, classes))
    out["predictor_runs"] = [
        {
            "version": r.version,
            "seconds": (r.finished_at - r.started_at).total_seconds(),
            "metrics": json.loads(r.metrics) if r.metrics else None,
            "hyperparameters": json.loads(r.hyperparameters) if r.hyperparameters else None,
        }
        for r in runs.itertuples(index=False)
    ]
    return out


def _probability(row: dict[str, float], label) -> float:
    text = str(label)
    if text in row:
        return row[text]
    aliases = {"1": "true", "0": "false", "True": "true", "False": "false"}
    return row.get(aliases.get(text, text), 0.0)


def _same_type(value, classes: list):
    if value is None or not classes:
        return value
    try:
        return type(classes[0])(value)
    except (TypeError, ValueError):
        return value


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _metric_cells(task: str, result: dict) -> tuple[str, str]:
    if "error" in result:
        return "error", result["error"].splitlines()[0][:60]
    if task == "regression":
        return f"RMSE {result['rmse']:.4f}", f"R² {result['r2']:.3f}"
    return f"AUC {result['auc']:.4f}", f"accuracy {result['accuracy']:.3f}"


def markdown(name: str, entry: dict) -> str:
    lines = [
        f"### {name} ({entry['task']}, target `{entry['target']}`)",
        "",
        "rows: "
        + ", ".join(f"{t} {n:,}" for t, n in entry["rows"].items())
        + f"; test keys: {entry['n_test_keys']:,} ({entry['split_rule']})",
        "",
        "| model | metric | second metric | wall s |",
        "|---|---|---|---|",
    ]
    for model, result in entry["results"].items():
        first, second = _metric_cells(entry["task"], result)
        wall = result.get("wall_s", "")
        label = model
        runs = result.get("predictor_runs") or []
        chosen = (runs[-1].get("metrics") or {}).get("chosen") if runs else None
        if chosen:
            label = f"{model} (chosen: {chosen})"
        lines.append(f"| {label} | {first} | {second} | {wall} |")
        if runs:
            for candidate in (runs[-1].get("metrics") or {}).get("candidates", []):
                lines.append(
                    f"| &nbsp;&nbsp;candidate {candidate.get('name')} | validation "
                    f"{candidate.get('metric')} {candidate.get('score', float('nan')):.4f} | "
                    f"(out-of-fold on training keys) | {candidate.get('seconds', '')} |"
                )
        for other, scored in (result.get("other_candidates_test") or {}).items():
            first, second = _metric_cells(entry["task"], scored)
            label = f"&nbsp;&nbsp;{other} forced (`model: {other}`)"
            lines.append(f"| {label} | {first} | {second} | |")
    project = entry["results"].get("project") or {}
    if "limit_s" in project:
        limit = (
            f"{project['limit_s']} s (max({PROJECT_LIMIT_FACTOR} x sql_aggregates wall, "
            f"{PROJECT_LIMIT_FLOOR_S}))"
        )
        if "error" in project:
            line = f"project failed; its limit was {limit}"
        else:
            within = "within" if project["within_limit"] else "over"
            line = f"project wall {project['wall_s']} s, {within} its limit of {limit}"
        if "predict_rows_per_s" in project:
            line += (
                f"; predict step {project['predict_rows']:,} rows in {project['predict_s']} s "
                f"({project['predict_rows_per_s']:,.0f} rows/s)"
            )
        lines += ["", line + "."]
    lines += ["", *probe_lines(entry)]
    return "\n".join(lines)


def _probe_metric(task: str) -> tuple[str, str, int]:
    """The probes' headline metric: its key, its label, +1 if higher is better else -1."""
    return ("rmse", "RMSE", -1) if task == "regression" else ("auc", "AUC", 1)


def probe_lines(entry: dict) -> list[str]:
    """The probes of a task as a table: the project's embedding against the PCA of the
    sql_aggregates features, and which is ahead."""
    key, label, sign = _probe_metric(entry["task"])
    embedding = (entry["results"].get("project") or {}).get("embedding_probes")
    pca = (entry["results"].get("sql_aggregates") or {}).get("pca_probes")
    if not embedding and not pca:
        return []
    lines = [
        f"probes on the test keys (kNN: mean label of the {KNN_NEIGHBOURS} nearest training "
        "rows by cosine; LightGBM on the coordinates):",
        "",
        "| probe | project embedding | PCA of the sql_aggregates features | ahead |",
        "|---|---|---|---|",
    ]

    def cell(probes: dict | None, name: str) -> tuple[str, float | None]:
        if not probes:
            return "not run", None
        if "error" in probes:
            return "error: " + probes["error"].strip().splitlines()[-1][:60], None
        value = probes[name][key]
        return f"{label} {value:.4f} (d={probes['dim']})", value

    for name, title in (("knn", "kNN"), ("lightgbm", "LightGBM")):
        first, a = cell(embedding, name)
        second, b = cell(pca, name)
        if a is None or b is None:
            ahead = ""
        elif a == b:
            ahead = "tie"
        else:
            winner = "embedding" if sign * (a - b) > 0 else "PCA"
            ahead = f"{winner} by {abs(a - b):.4f}"
        lines.append(f"| {title} | {first} | {second} | {ahead} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(relational_data.TASKS))
    parser.add_argument("--skip-project", action="store_true", help="baselines only")
    parser.add_argument(
        "--skip-candidates", action="store_true", help="no forced runs of the other candidates"
    )
    parser.add_argument("--out", default=str(BENCH / "relational_results.json"))
    parser.add_argument("--workdir", help="where warehouses go (default: a temporary folder)")
    parser.add_argument("--threads", type=int, default=THREADS, help="LightGBM threads")
    parser.add_argument(
        "--project-timeout", type=float, default=None, help="stop the project run after s"
    )
    args = parser.parse_args(argv)
    LGB_PARAMS["num_threads"] = args.threads
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="relational_"))
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("tasks", {})
    report["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "lightgbm": lgb.__version__,
        "duckdb": duckdb.__version__,
        "lightgbm_threads": args.threads,
    }
    for name in args.tasks:
        task = relational_data.load(name)
        warehouse = workdir / f"{name}_baselines.duckdb"
        write_warehouse(task, warehouse, hide_test=True)
        entry = {
            "task": task.task,
            "target": task.target,
            "parent": task.parent,
            "source": task.source,
            "description": task.description,
            "rows": task.row_counts(),
            "split_rule": task.split_rule,
            "n_test_keys": len(task.test_keys),
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
            "results": {},
        }
        previous = report["tasks"].get(name, {}).get("results", {})
        entry["results"]["parent_only"] = baseline(task, warehouse, aggregates=False)
        entry["results"]["sql_aggregates"] = baseline(task, warehouse, aggregates=True)
        if args.skip_project:
            if "project" in previous:
                entry["results"]["project"] = previous["project"]
        else:
            project = run_project(task, workdir, args.project_timeout)
            project_limit(project, entry["results"]["sql_aggregates"])
            if "error" not in project and not args.skip_candidates:
                run_candidates(task, project, args.project_timeout)
            entry["results"]["project"] = project
        report["tasks"][name] = entry
        print(markdown(name, entry), flush=True)
        print(flush=True)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
