"""Benchmark: scoring and writing predictions, from a trained predictor to the written
`ml.sales__returned_predictions` table, on a synthetic fact table of N rows.

The warehouse: `sales` (N rows: 8 numeric columns, a channel category, a sale time, a
reference to `stores`, the boolean target `returned`, NULL on a quarter of the rows so they
are scored as new rows) and `stores` (200 rows, referenced N:1). The spaces and the
predictor train once with small budgets (not timed); then `runner.predict` runs end to end
and the rows/s and the time of each part (read inputs, embed, score, importance, OOD, build
table, write) are printed.

Usage:
  .venv/bin/python bench/predict_speed.py                       # 300,000 rows, MLP and GBDT
  .venv/bin/python bench/predict_speed.py --rows 30000 --model mlp
  .venv/bin/python bench/predict_speed.py --rows 30000 --profile  # cProfile of predict
  .venv/bin/python bench/predict_speed.py --rows 30000 --folder /tmp/predict_speed  # reuse
  # an existing warehouse whose spaces and predictor are trained and embedded (e.g. one
  # that bench/scale.py or bench/warehouse_time.py left): its predictions are removed and
  # every row is scored again
  .venv/bin/python bench/predict_speed.py --spec /tmp/s/scale_sf1_spaces.yaml \
      --target customer.c_mktsegment
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import inspect
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import runner  # noqa: E402
from pipeline.predictors import gbdt  # noqa: E402
from pipeline.spec import load_spec, parse_spec  # noqa: E402

N_STORES = 200
N_NUMBERS = 8
CHANNELS = ("web", "store", "phone", "partner", "catalog", "app")


def build(path: Path, rows: int) -> None:
    """`stores` and `sales`; `returned` depends on two columns and the store's size."""
    con = duckdb.connect(str(path))
    try:
        con.execute(
            f"create table stores as select i as store_id, "
            f"round((hash(i) % 1000) / 10.0, 1) as floor_area, "
            f"(hash(i * 7) % 50)::integer as staff, "
            f"['north', 'south', 'east', 'west'][1 + i % 4] as region "
            f"from range({N_STORES}) t(i)"
        )
        numbers = ", ".join(
            f"round((hash(i * {j + 3}) % 10007) / 1000.0 + {j} * ((hash(i) % 97) / 97.0), 3) "
            f"as x{j}"
            for j in range(N_NUMBERS)
        )
        channels = "[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]"
        con.execute(
            f"create table sales as select i as sale_id, {numbers}, "
            f"{channels}[1 + (hash(i * 11) % {len(CHANNELS)})::integer] as channel, "
            f"timestamp '2024-01-01' + to_seconds((hash(i * 13) % 31536000)::bigint) as sold_at, "
            f"(hash(i * 17) % {N_STORES})::bigint as store_id "
            f"from range({rows}) t(i)"
        )
        con.execute(
            "create table sales_labelled as select s.*, case when s.sale_id % 4 = 0 then null "
            "else (s.x0 + s.x1 / 2 + st.floor_area / 20 + (hash(s.sale_id) % 100) / 25.0 > 11) "
            "end as returned from sales s join stores st using (store_id)"
        )
        con.execute("drop table sales")
        con.execute("alter table sales_labelled rename to sales")
    finally:
        con.close()


def spec_for(warehouse: Path, artifacts: Path, model: str, time_budget_s: float):
    return parse_spec(
        {
            "warehouse": str(warehouse),
            "artifacts": str(artifacts),
            "training": {"time_budget_s": time_budget_s, "predictor_epochs": 2},
            "spaces": {
                "stores": {"table": "main.stores", "key": "store_id"},
                "sales": {
                    "table": "main.sales",
                    "key": "sale_id",
                    "columns": {
                        "returned": {"target": True, "model": model},
                        "store_id": {"active": False},
                    },
                    "references": [{"space": "stores", "foreign_key": "store_id"}],
                },
            },
        }
    )


def timed_predict(
    spec, profile: bool, space: str = "sales", target: str = "returned"
) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Wall and CPU seconds of `runner.predict`, and of each of its parts (when it reports
    them)."""
    clock = None
    if "clock" in inspect.signature(runner.predict).parameters:  # not before issue 14
        from pipeline.predictors.predictions import Stopwatch

        clock = Stopwatch()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler:
        profiler.enable()
    options = {"clock": clock} if clock else {}
    if "just_embedded" in inspect.signature(runner.predict).parameters:  # before 9b2fe7d
        options["just_embedded"] = True  # stored embeddings, as `run` read them
    runner.predict(spec, space, target, **options)
    if profiler:
        profiler.disable()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    parts = {k: (v, clock.cpu_seconds[k]) for k, v in clock.seconds.items()} if clock else {}
    return wall, cpu, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000, help="rows of the fact table")
    parser.add_argument(
        "--model",
        nargs="+",
        default=["mlp", "gbdt"],
        choices=["mlp", "gbdt", "gbdt_aggregates", "auto"],
        help="predictor candidates to time, one predictor each",
    )
    parser.add_argument("--time-budget", type=float, default=8.0, help="space training, s")
    parser.add_argument(
        "--gbdt-rounds", type=int, default=100, help="most boosting rounds (training cost)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile of predict")
    parser.add_argument(
        "--folder",
        type=Path,
        help="build and train here once, then reuse the warehouse and the trained models (so "
        "two versions of the code can be timed on the same models); default: a temp folder",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--spec", type=Path, help="time an existing warehouse's predictor")
    parser.add_argument("--target", help="with --spec: SPACE.TARGET")
    args = parser.parse_args()
    gbdt.MAX_ROUNDS = args.gbdt_rounds
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.spec:
        existing(args.spec, args.target, args.profile)
        return
    with contextlib.ExitStack() as stack:
        folder = args.folder or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        folder.mkdir(parents=True, exist_ok=True)
        run(folder, args)


def existing(spec_path: Path, target: str, profile: bool) -> None:
    """Score every row of an existing warehouse's `SPACE.TARGET` again, timed."""
    spec = load_spec(spec_path)
    space, column = target.split(".", 1)
    con = duckdb.connect(str(spec.warehouse))
    try:
        rows = con.execute(f"select count(*) from {spec.spaces[space].table}").fetchone()[0]
        con.execute(f"delete from {spec.output_schema}.{space}__{column}_predictions")
    finally:
        con.close()
    load = os.getloadavg()[0]
    wall, cpu, timings = timed_predict(spec, profile, space, column)
    report(f"predict {target}", rows, wall, cpu, load, timings)


def report(label: str, rows: int, wall: float, cpu: float, load: float, timings: dict) -> None:
    print(
        f"{label}: {rows:,} rows in {wall:.2f} s, {cpu:.2f} CPU-s (load average {load:.1f} "
        f"on {os.cpu_count()} cores) -> {rows / wall:,.0f} rows/s, {rows / cpu:,.0f} "
        "rows/CPU-s",
        flush=True,
    )
    for part, (seconds, cpu_seconds) in timings.items():
        print(
            f"  {part:12s} {seconds:7.2f} s {cpu_seconds:7.2f} CPU-s "
            f"{rows / max(seconds, 1e-9):>10,.0f} rows/s "
            f"{rows / max(cpu_seconds, 1e-9):>10,.0f} rows/CPU-s"
        )


def run(folder: Path, args: argparse.Namespace) -> None:
    warehouse, artifacts = folder / "sales.duckdb", folder / "artifacts"
    built = folder / "built.json"
    if built.exists() and json.loads(built.read_text()) == {"rows": args.rows}:
        print(f"reusing the warehouse and models in {folder}")
    else:
        shutil.rmtree(artifacts, ignore_errors=True)
        warehouse.unlink(missing_ok=True)
        started = time.perf_counter()
        build(warehouse, args.rows)
        spec = spec_for(warehouse, artifacts, args.model[0], args.time_budget)
        runner.validate(spec)
        for name in ("stores", "sales"):
            runner.train(spec, name, progress=False)
            runner.embed(spec, name)
        built.write_text(json.dumps({"rows": args.rows}))
        print(
            f"set-up (build, validate, train and embed the spaces): "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    for model in args.model:
        spec = spec_for(warehouse, artifacts, model, args.time_budget)
        kept = folder / "predictors" / model
        if kept.exists():
            target = runner.predictor_folder(spec, "sales", "returned")
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(kept, target)
        else:
            started = time.perf_counter()
            predictor = runner.train_target(spec, "sales", "returned")
            shutil.copytree(runner.predictor_folder(spec, "sales", "returned"), kept)
            print(
                f"predictor {model}: chose {predictor.model}, trained in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
        load = os.getloadavg()[0]
        wall, cpu, timings = timed_predict(spec, args.profile)
        report(f"predict {model}", args.rows, wall, cpu, load, timings)


if __name__ == "__main__":
    main()
