"""Benchmark: the wall time of `pipeline run` against SQL aggregates + LightGBM on TPC-H
warehouses (issue 14 item 3: `run` within max(3 x aggregates + LightGBM, 120 s)).

Two warehouses are built from `tpchgen-cli` parquet output (offline; scale factor per
warehouse), loaded into fresh DuckDB files with a spec written beside each:

  fact_root      root = lineitem (composite key l_orderkey, l_linenumber; ~300k rows at scale
                 0.05) -> orders -> customer, lineitem -> part, lineitem -> supplier.
                 Target l_returnflag (3 classes: 'N' follows from l_receiptdate, 'A' vs 'R'
                 is random in dbgen).
  many_children  root = customer (15k rows at scale 0.1) <- orders (150k) and lineitem split
                 by l_shipmode into 7 child tables (~85k rows each), each carrying c_custkey
                 joined in from orders. Target c_mktsegment (5 classes, random in dbgen:
                 timing only).

Free-text comment columns (`*_comment`) are dropped from every table (free text at scale is
issue 15); the other columns are loaded as tpchgen-cli writes them (DECIMAL, DATE, VARCHAR).
The test split is the relational benchmark's: a seeded 25% of the root keys
(`relational_data.seeded_test_keys`), their target NULL in the warehouse both models read.

In one run, per warehouse:
  (1) sql_aggregates  `bench/relational.py`'s baseline: Featuretools-style aggregates from the
                      spec in DuckDB SQL (`Schema`, `parent_sql`), LightGBM with its fixed
                      protocol (`fit_predict`); wall seconds include reading the warehouse.
                      The PCA probes of relational.py are not run (not needed for time, and
                      its kNN probe is quadratic in the root's rows).
  (2) project         `pipeline.runner.run` (what `python -m pipeline run` calls) in a child
                      Python process, each runner step timed around its call (validate,
                      train and embed per space, train_target and predict per target); wall
                      seconds exclude the child's imports, as in relational.py.
and reports the limit max(3 x sql_aggregates wall, 120 s), whether the project's run is within
it, the seconds of each run in `ml.training_runs` (started_at -> finished_at per space and
predictor), and the predict step's rows/s. Test accuracy / AUC are printed as a sanity check
only (both targets are mostly or wholly random).

Usage:
  .venv/bin/python bench/warehouse_time.py                # fact_root sf 0.05, many_children sf 0.1
  .venv/bin/python bench/warehouse_time.py --scale 0.01   # both at sf 0.01 (a few minutes)
  .venv/bin/python bench/warehouse_time.py --warehouses many_children --many-children-scale 0.2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import duckdb  # noqa: E402
import pandas as pd  # noqa: E402
import relational  # noqa: E402  (imports lightgbm after setting OMP_WAIT_POLICY)
import relational_data  # noqa: E402
import yaml  # noqa: E402
from relational_data import RelationalTask, seeded_test_keys, spec_path_of  # noqa: E402

REPO = BENCH.parent
DEFAULT_SCALES = {"fact_root": 0.05, "many_children": 0.1}
TPCH_TABLES = ("customer", "orders", "lineitem", "part", "supplier")
FREE_TEXT_NOTE = (
    "free-text comment columns (*_comment) dropped from every table: free text at scale is issue 15"
)


def tpchgen_cli() -> str:
    """The tpchgen-cli binary of this venv (the `bench` extra), else the one on PATH."""
    beside = Path(sys.executable).with_name("tpchgen-cli")
    found = str(beside) if beside.exists() else shutil.which("tpchgen-cli")
    if not found:
        raise RuntimeError("tpchgen-cli is not installed: pip install -e '.[bench]'")
    return found


def generate_tpch(scale: float, folder: Path) -> Path:
    """TPC-H tables at `scale` as parquet files `<folder>/<table>.parquet`; reused when there."""
    folder.mkdir(parents=True, exist_ok=True)
    if all((folder / f"{t}.parquet").exists() for t in TPCH_TABLES):
        return folder
    subprocess.run(
        [
            tpchgen_cli(),
            "parquet",
            "--scale-factor",
            str(scale),
            "--output-dir",
            str(folder),
            "--tables",
            ",".join(TPCH_TABLES),
            "--num-threads",
            "1",
            "--overwrite",
            "--quiet",
        ],
        check=True,
    )
    return folder


def sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parquet(source: Path, table: str) -> str:
    return f"read_parquet({sql_text(str(source / f'{table}.parquet'))})"


def _load(con, source: Path, table: str) -> None:
    """`main.<table>`: a TPC-H table without its comment column (`<first letter>_comment`)."""
    con.execute(
        f"create table main.{table} as select * exclude ({table[0]}_comment) "
        f"from {_parquet(source, table)}"
    )


def _space(table: str, key, **extra) -> dict:
    entry = {"table": f"main.{table}", "key": key}
    entry.update({k: v for k, v in extra.items() if v})
    return entry


def build_fact_root(con, source: Path) -> dict:
    for table in TPCH_TABLES:
        _load(con, source, table)
    spec = {
        "spaces": {
            "lineitem": _space(
                "lineitem",
                ["l_orderkey", "l_linenumber"],
                columns={"l_returnflag": {"target": True}},
                references=[
                    {"space": "orders", "foreign_key": "l_orderkey"},
                    {"space": "part", "foreign_key": "l_partkey"},
                    {"space": "supplier", "foreign_key": "l_suppkey"},
                ],
            ),
            "orders": _space(
                "orders",
                "o_orderkey",
                references=[{"space": "customer", "foreign_key": "o_custkey"}],
            ),
            "part": _space("part", "p_partkey"),
            "supplier": _space("supplier", "s_suppkey"),
            "customer": _space("customer", "c_custkey"),
        }
    }
    return {
        "spec": spec,
        "parent": "lineitem",
        "target": "l_returnflag",
        "description": (
            "TPC-H, root = the lineitem fact table (composite key l_orderkey, l_linenumber) "
            "-> orders -> customer, -> part, -> supplier. Target l_returnflag: 'N' iff "
            "l_receiptdate > 1995-06-17, 'A' vs 'R' random."
        ),
    }


def build_many_children(con, source: Path) -> dict:
    _load(con, source, "customer")
    _load(con, source, "orders")
    lineitem = _parquet(source, "lineitem")
    modes = [
        r[0] for r in con.sql(f"select distinct l_shipmode from {lineitem} order by 1").fetchall()
    ]
    children = [{"space": "orders", "foreign_key": "o_custkey", "order_by": "o_orderdate"}]
    spaces = {}
    for mode in modes:
        name = "lineitem_" + re.sub(r"[^a-z0-9]+", "_", mode.lower()).strip("_")
        con.execute(
            f"create table main.{name} as select o.o_custkey as c_custkey, "
            f"l.* exclude (l_comment, l_shipmode) from {lineitem} l "
            f"join main.orders o on o.o_orderkey = l.l_orderkey "
            f"where l.l_shipmode = {sql_text(mode)} "
            "order by l.l_orderkey, l.l_linenumber"
        )
        children.append({"space": name, "foreign_key": "c_custkey", "order_by": "l_shipdate"})
        spaces[name] = _space(name, ["l_orderkey", "l_linenumber"])
    spec = {
        "spaces": {
            "customer": _space(
                "customer",
                "c_custkey",
                columns={"c_mktsegment": {"target": True}},
                children=children,
            ),
            "orders": _space("orders", "o_orderkey"),
            **spaces,
        }
    }
    return {
        "spec": spec,
        "parent": "customer",
        "target": "c_mktsegment",
        "description": (
            f"TPC-H, root = customer <- orders and <- lineitem split by l_shipmode into "
            f"{len(modes)} child tables (c_custkey joined in from orders; l_shipmode dropped, "
            "constant per table). Target c_mktsegment: random in dbgen (timing only)."
        ),
    }


WAREHOUSES: dict[str, Callable[[duckdb.DuckDBPyConnection, Path], dict]] = {
    "fact_root": build_fact_root,
    "many_children": build_many_children,
}


def build_warehouse(
    name: str, scale: float, source: Path, path: Path
) -> tuple[RelationalTask, dict[str, int]]:
    """Load the tables into a fresh DuckDB file, hide the test targets, write the spec beside
    it (the keys `relational_data.write_warehouse` writes). Returns the task, whose only
    table is the root's keys and true target (for scoring), and every table's row count."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    # a fresh warehouse gets fresh models: `run` keeps models that are up to date
    shutil.rmtree(path.with_name(path.stem + "_artifacts"), ignore_errors=True)
    con = duckdb.connect(str(path))
    try:
        built = WAREHOUSES[name](con, source)
        parent, target = built["parent"], built["target"]
        key = relational.as_list(built["spec"]["spaces"][parent]["key"])
        keys_sql = ", ".join(relational.q(k) for k in key)
        truth = con.sql(
            f"select {keys_sql}, {relational.q(target)} from main.{parent} order by {keys_sql}"
        ).df()
        keys = list(truth[key].itertuples(index=False, name=None))
        keys = (
            [tuple(int(v) for v in k) for k in keys] if len(key) > 1 else [int(k[0]) for k in keys]
        )
        test_keys = seeded_test_keys(keys)
        hidden = pd.DataFrame([relational_data._as_tuple(k) for k in test_keys], columns=key)
        con.register("hidden_keys", hidden)
        match = " and ".join(f"p.{relational.q(k)} = h.{relational.q(k)}" for k in key)
        con.execute(
            f"update main.{parent} p set {relational.q(target)} = null "
            f"where exists (select 1 from hidden_keys h where {match})"
        )
        con.unregister("hidden_keys")
        rows = {
            space: con.sql(f"select count(*) from {entry['table']}").fetchone()[0]
            for space, entry in built["spec"]["spaces"].items()
        }
    finally:
        con.close()
    spec = {
        "warehouse": path.name,
        "output_schema": "ml",
        "artifacts": path.stem + "_artifacts",
        "seed": 0,
        **built["spec"],
    }
    spec_path_of(path).write_text(yaml.safe_dump(spec, sort_keys=False))
    n_classes = truth[target].nunique()
    return RelationalTask(
        name=name,
        description=built["description"],
        source=f"tpchgen-cli parquet --scale-factor {scale}",
        tables={parent: truth},
        spec=built["spec"],
        parent=parent,
        target=target,
        task="binary" if n_classes == 2 else "multiclass",
        test_keys=test_keys,
        split_rule=f"25% of the {parent} keys, seeded permutation (seed 0) of the sorted keys",
    ), rows


# --------------------------------------------------------------------------------------------
# (1) SQL aggregates + LightGBM
# --------------------------------------------------------------------------------------------


def aggregates_baseline(task: RelationalTask, warehouse: Path) -> dict:
    """`relational.baseline(task, warehouse, aggregates=True)` without its PCA probes: read
    the aggregates, fit, predict the test keys; timed."""
    started = time.perf_counter()
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        schema = relational.Schema(con, task.spec)
        frame = con.sql(relational.parent_sql(schema, task.parent, task.target, True)).df()
    finally:
        con.close()
    read_s = time.perf_counter() - started
    key = task.key_columns
    rows = relational.training_rows(
        task, relational._keys(frame, key), frame[task.target].to_numpy(dtype=object)
    )
    x = relational.prepare(frame.drop(columns=[*key, task.target]))
    output, rounds = relational.fit_predict(
        x[rows.train], rows.y_train, x.iloc[rows.test], task.task, rows.n_classes
    )
    wall = time.perf_counter() - started
    result = relational.score(task.task, task.truth(), output, rows.classes)
    result.update(
        wall_s=round(wall, 2),
        read_s=round(read_s, 2),
        n_features=int(x.shape[1]),
        n_train=int(rows.train.sum()),
        trees=int(rounds),
    )
    return result


# --------------------------------------------------------------------------------------------
# (2) the project, in a child process
# --------------------------------------------------------------------------------------------

_CHILD = """
import inspect, json, sys, time
started = time.perf_counter()
from pipeline import runner
from pipeline.spec import load_spec
imported = time.perf_counter()
spec = load_spec(sys.argv[1])
out = {"import_s": imported - started, "steps": []}
def peak_mb():
    # VmHWM: this process's own peak; ru_maxrss would carry the parent's peak across the fork
    return next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmHWM:")) / 1024
def save():
    with open(sys.argv[2], "w") as handle:
        json.dump(out, handle, default=str)
def timed(step):
    untimed = getattr(runner, step)
    signature = inspect.signature(untimed)
    def call(*args, **kwargs):
        called = signature.bind(*args, **kwargs).arguments
        parts = None
        if step == "predict" and "timings" in signature.parameters and "timings" not in called:
            parts = kwargs["timings"] = {}
        began = time.perf_counter()
        result = untimed(*args, **kwargs)
        entry = {"step": step.lstrip("_"), "space": called.get("name"),
                 "target": called.get("target"),
                 "seconds": time.perf_counter() - began,
                 "peak_rss_mb": peak_mb()}  # the step that raises it holds the run's peak
        if step in ("embed", "predict") and isinstance(result, int):
            entry["rows"] = result
        if parts:
            entry["parts"] = parts
        out["steps"].append(entry)
        save()  # a run stopped by the timeout still tells which steps finished
        return result
    setattr(runner, step, call)  # runner.run calls each step by its module-level name
# run trains through _train (which also hands the rows read to embed) where it exists
for step in ("validate", "_train" if hasattr(runner, "_train") else "train", "embed",
             "neighbours", "train_target", "predict"):
    if hasattr(runner, step):
        timed(step)
kwargs = {"progress": False} if "progress" in inspect.signature(runner.run).parameters else {}
out["summary"] = runner.run(spec, **kwargs)
out["run_s"] = time.perf_counter() - imported
out["max_rss_mb"] = peak_mb()
save()
"""


def run_project(task: RelationalTask, warehouse: Path, timeout_s: float | None) -> dict:
    """`pipeline.runner.run` on the warehouse's spec in a child process; its steps' seconds,
    `ml.training_runs`, the test keys' scores. Failures and timeouts are reported, never
    raised."""
    spec_path = spec_path_of(warehouse)
    timing = warehouse.with_name(warehouse.stem + "_timing.json")
    log = warehouse.with_name(warehouse.stem + "_run.log")
    timing.unlink(missing_ok=True)
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GX_ANALYTICS_ENABLED="false")
    if (
        env.get("OMP_WAIT_POLICY") == "PASSIVE"
        and "OMP_WAIT_POLICY" not in relational._ORIGINAL_ENV
    ):
        del env["OMP_WAIT_POLICY"]  # the project runs with the user's environment
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    result: dict = {
        "warehouse": str(warehouse),
        "spec": str(spec_path),
        "log": str(log),
        "load_average_before": os.getloadavg(),
    }
    started = time.perf_counter()
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
        result["process_s"] = round(time.perf_counter() - started, 1)
        if process.returncode != 0:
            result["error"] = f"exit code {process.returncode}"
            result["log_tail"] = log.read_text(errors="replace")[-4000:]
    except subprocess.TimeoutExpired:
        result["process_s"] = round(time.perf_counter() - started, 1)
        result["error"] = f"timeout: stopped after {timeout_s} s"
    result["load_average_after"] = os.getloadavg()
    times = json.loads(timing.read_text()) if timing.exists() else {}
    result["steps"] = [{**s, "seconds": round(s["seconds"], 2)} for s in times.get("steps", [])]
    if "run_s" in times:
        result["wall_s"] = round(times["run_s"], 1)
        result["import_s"] = round(times["import_s"], 1)
        result["max_rss_mb"] = round(times["max_rss_mb"])
    for step in result["steps"]:
        if step["step"] == "predict" and (step["space"], step["target"]) == (
            task.parent,
            task.target,
        ):
            result.update(
                predict_rows=int(step["rows"]),
                predict_s=step["seconds"],
                predict_rows_per_s=round(step["rows"] / max(step["seconds"], 1e-9), 1),
            )
    try:
        result["training_runs"] = training_runs(warehouse)
        result["text_columns"] = text_columns(warehouse)
    except Exception:  # noqa: BLE001 - reported, not raised
        result["training_runs_error"] = traceback.format_exc()[-2000:]
    if "error" not in result:
        try:
            scored = relational._score_project(task, warehouse)
            result.update({k: v for k, v in scored.items() if k != "predictor_runs"})
            runs = scored.get("predictor_runs") or []
            if runs:
                result["chosen"] = (runs[-1].get("metrics") or {}).get("chosen")
                result["candidates"] = [
                    {k: c.get(k) for k in ("name", "metric", "score", "seconds")}
                    for c in (runs[-1].get("metrics") or {}).get("candidates", [])
                ]
        except Exception:  # noqa: BLE001 - reported, not raised
            result["error"] = "scoring failed: " + traceback.format_exc()[-3000:]
    return result


def training_runs(warehouse: Path) -> list[dict]:
    """Every run of `ml.training_runs` (a fresh warehouse: this run's), in start order."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.sql(
            "select kind, space, target, started_at, finished_at, epochs, steps "
            "from ml.training_runs order by started_at"
        ).fetchall()
    finally:
        con.close()
    return [
        {
            "kind": kind,
            "space": space,
            "target": target,
            "seconds": round((finished - started).total_seconds(), 2),
            "epochs": epochs,
            "steps": steps,
        }
        for kind, space, target, started, finished, epochs, steps in rows
    ]


def text_columns(warehouse: Path) -> list[str]:
    """`space.column` of the input columns the project embeds as free text."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        rows = con.sql(
            'select space, "column" from ml.column_profile '
            "where detected_type = 'text' and not excluded order by 1, 2"
        ).fetchall()
    finally:
        con.close()
    return [f"{space}.{column}" for space, column in rows]


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def _metric(result: dict) -> str:
    if "auc" not in result:
        return ""
    return f"AUC {result['auc']:.3f}, acc {result['accuracy']:.3f}"


def markdown(report: dict) -> str:
    lines = [
        f"Limit: max({relational.PROJECT_LIMIT_FACTOR} x sql_aggregates wall, "
        f"{relational.PROJECT_LIMIT_FLOOR_S} s). {FREE_TEXT_NOTE.capitalize()}.",
        "",
        "| warehouse | scale | rows (root / all tables) | sql_aggregates s | project s | "
        "limit s | within | predict rows/s | test (sanity only) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in report["warehouses"].items():
        base, project = entry["sql_aggregates"], entry["project"]
        rows = entry["rows"]
        wall = project.get("wall_s", "")
        if "error" in project:
            wall = f"{wall} ({project['error'].splitlines()[0][:40]})"
        within = "yes" if project.get("within_limit") else "no"
        rate = project.get("predict_rows_per_s")
        lines.append(
            f"| {name} | {entry['scale']} | {rows[entry['parent']]:,} / {sum(rows.values()):,} | "
            f"{base.get('wall_s', '')} | {wall} | {project.get('limit_s', '')} | {within} | "
            f"{'' if rate is None else f'{rate:,.0f}'} | "
            f"aggregates {_metric(base)}; project {_metric(project)} |"
        )
    for name, entry in report["warehouses"].items():
        project = entry["project"]
        runs = {(r["kind"], r["space"], r["target"]): r for r in project.get("training_runs", [])}
        lines += [
            "",
            f"#### {name}: steps of the project run (child-timed; training_runs = "
            "started_at -> finished_at of `ml.training_runs`)",
            "",
            "| step | space | target | table rows | seconds | training_runs s |",
            "|---|---|---|---|---|---|",
        ]
        for step in project.get("steps", []):
            kind = {"train": "space", "train_target": "predictor"}.get(step["step"])
            run = runs.get((kind, step["space"], step["target"])) if kind else None
            rows = entry["rows"].get(step["space"], "") if step["space"] else ""
            lines.append(
                f"| {step['step']} | {step['space'] or ''} | {step['target'] or ''} | "
                f"{rows if rows == '' else f'{rows:,}'} | {step['seconds']} | "
                f"{run['seconds'] if run else ''} |"
            )
        parts = next(
            (s.get("parts") for s in project.get("steps", []) if s["step"] == "predict"), None
        )
        if parts:
            lines += [
                "",
                "predict parts (s): " + ", ".join(f"{k} {v:.2f}" for k, v in parts.items()),
            ]
        if project.get("text_columns"):
            lines += ["", "embedded as free text: " + ", ".join(project["text_columns"])]
        if project.get("chosen"):
            lines += ["", f"predictor chosen: {project['chosen']}"]
        before, after = project.get("load_average_before"), project.get("load_average_after")
        if before and after:
            lines += [
                "",
                f"load average (1 min) around the project run: {before[0]:.1f} -> "
                f"{after[0]:.1f} on {report.get('cpus', os.cpu_count())} cores",
            ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--warehouses", nargs="+", default=list(WAREHOUSES), choices=list(WAREHOUSES)
    )
    parser.add_argument("--scale", type=float, help="TPC-H scale factor of every warehouse")
    for name, default in DEFAULT_SCALES.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}-scale",
            type=float,
            help=f"scale factor of {name} (default: --scale, else {default})",
        )
    parser.add_argument("--out", default=str(BENCH / "warehouse_time_results.json"))
    parser.add_argument("--workdir", help="where data and warehouses go (default: a temp folder)")
    parser.add_argument("--threads", type=int, default=relational.THREADS, help="LightGBM threads")
    parser.add_argument(
        "--project-timeout", type=float, default=None, help="stop the project run after s"
    )
    args = parser.parse_args(argv)
    relational.LGB_PARAMS["num_threads"] = args.threads
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="warehouse_time_"))
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    report.setdefault("warehouses", {})
    report["machine"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "lightgbm": relational.lgb.__version__,
        "duckdb": duckdb.__version__,
        "lightgbm_threads": args.threads,
    }
    report["note"] = FREE_TEXT_NOTE
    for name in args.warehouses:
        scale = getattr(args, f"{name}_scale") or args.scale or DEFAULT_SCALES[name]
        source = generate_tpch(scale, workdir / f"tpch_sf{scale:g}")
        warehouse = workdir / f"{name}_sf{scale:g}.duckdb"
        task, rows = build_warehouse(name, scale, source, warehouse)
        entry = {
            "scale": scale,
            "description": task.description,
            "parent": task.parent,
            "target": task.target,
            "task": task.task,
            "rows": rows,
            "n_test_keys": len(task.test_keys),
            "split_rule": task.split_rule,
            "dropped": "*_comment columns (free text, issue 15)",
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "load_average": os.getloadavg(),
        }
        entry["sql_aggregates"] = aggregates_baseline(task, warehouse)
        project = run_project(task, warehouse, args.project_timeout)
        relational.project_limit(project, entry["sql_aggregates"])
        entry["project"] = project
        report["warehouses"][name] = entry
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(
            f"{name}: sql_aggregates {entry['sql_aggregates']['wall_s']} s, project "
            f"{project.get('wall_s')} s, limit {project['limit_s']} s",
            flush=True,
        )
    print(markdown({"warehouses": {n: report["warehouses"][n] for n in args.warehouses}}))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
