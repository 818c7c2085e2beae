"""Benchmark: space training speed on a synthetic table of N rows x 15 numeric columns (with
--children also a parent table, N/10 rows, pooling that table as its child set).

Prints, for each table size, the wall time of `runner.train` and the training rows/s (rows
processed per second of the training loop: steps x batch size / seconds). `--legacy` trains
the way the project did before issue 8 (three transformer passes per step, 1,200-step cap,
d_model 128 from 20k rows, dropout 0.1, all of torch's threads, no held-out rows), so before
and after come from the same script on the same machine.

Usage:
  .venv/bin/python bench/training_speed.py --rows 26000 400000
  .venv/bin/python bench/training_speed.py --rows 26000 --legacy --steps 60
  .venv/bin/python bench/training_speed.py --rows 26000 --d-model 64 --compare-steps
  .venv/bin/python bench/training_speed.py --rows 26000 --parts
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline import runner  # noqa: E402
from pipeline.spaces import objective, training  # noqa: E402
from pipeline.spec import TrainingSpec, parse_spec  # noqa: E402
from pipeline.understanding.profiling import profile_space  # noqa: E402

N_NUMBERS = 15


def numbers_sql(n: int, seed_column: str) -> str:
    """`n` numeric columns with structure to learn: three latent factors, mixed and noised."""
    latent = [f"(hash({seed_column} * {k + 1}) % 10007) / 10007.0" for k in range(3)]
    columns = []
    for j in range(n):
        a, b = latent[j % 3], latent[(j + 1) % 3]
        noise = f"(hash({seed_column} + {1000 * (j + 7)}) % 1009) / 1009.0"
        columns.append(f"round({j + 1} * {a} + {b} * {b} + 0.3 * {noise}, 4) as x{j}")
    return ", ".join(columns)


def build(path: Path, rows: int, children: bool) -> None:
    con = duckdb.connect(str(path))
    try:
        con.execute(
            f"create table points as select i as point_id, {numbers_sql(N_NUMBERS, 'i')} "
            f"from range({rows}) t(i)"
        )
        if children:
            parents = max(rows // 10, 2)
            con.execute(
                f"create table owners as select i as owner_id, {numbers_sql(3, 'i')} "
                f"from range({parents}) t(i)"
            )
            con.execute("alter table points add column owner_id bigint")
            con.execute(f"update points set owner_id = hash(point_id) % {parents}")
    finally:
        con.close()


def spec_for(warehouse: Path, artifacts: Path, children: bool, training_overrides: dict):
    spaces: dict = {"points": {"table": "main.points", "key": "point_id"}}
    if children:
        spaces["points"]["columns"] = {"owner_id": {"active": False}}
        spaces["owners"] = {
            "table": "main.owners",
            "key": "owner_id",
            "children": [{"space": "points", "foreign_key": "owner_id", "max_length": 16}],
        }
    return parse_spec(
        {
            "warehouse": str(warehouse),
            "artifacts": str(artifacts),
            "training": training_overrides,
            "spaces": spaces,
        }
    )


def legacy_choices(
    n_rows: int, tokens: list, overrides: TrainingSpec, seed: int
) -> training.TrainingChoices:
    """The zero-configuration rules before issue 8."""
    n_tokens = len(tokens)
    d_model = overrides.d_model or (64 if n_rows < 20_000 else 128)
    batch = overrides.batch_size or int(
        min(256, max(16, 2 ** math.floor(math.log2(max(n_rows, 2) / 4))))
    )
    return training.TrainingChoices(
        d_model=d_model,
        embedding_dim=overrides.embedding_dim or d_model,
        n_layers=2,
        n_heads=4,
        dropout=0.1,
        batch_size=min(batch, max(n_rows, 2)),
        steps=overrides.steps or int(min(1200, max(300, 12 * n_rows / batch))),
        learning_rate=overrides.learning_rate or 1e-3,
        weight_decay=1e-4,
        temperature=0.1,
        spread_weight=0.1 if n_tokens > 1 else 0.3,
        seed=seed,
        wall_clock_limit_s=math.inf,
        threads=torch.get_num_threads(),
        steps_rule="legacy",
    )


def legacy_step(model, batch, generator, choices):
    """The step before issue 8: the full view and the two masked views as three passes."""
    present = torch.stack([part["present"] for part in batch], dim=1)
    in_a = torch.rand(present.shape, generator=generator) < 0.5
    content, present, _ = model.encode_tokens(batch)
    full = model.embed_tokens(content, present)
    view_a = model.embed_tokens(content, present, hidden=~in_a)
    view_b = model.embed_tokens(content, present, hidden=in_a)
    t = choices.temperature
    joint = (objective.info_nce(full, view_a, t) + objective.info_nce(full, view_b, t)) / 2
    per_token: dict[int, list] = {}
    for view, rows in ((view_a, ~in_a & present), (view_b, in_a & present)):
        for k, (loss, _) in objective.token_losses(model, batch, view[None], rows[None], t).items():
            per_token.setdefault(k, []).append(loss[0])
    masked = [torch.stack(losses).mean() for losses in per_token.values()]
    kept_losses = objective.token_losses(model, batch, full[None], present[None], t)
    kept = [loss[0] for loss, _ in kept_losses.values()]
    marginal = torch.stack(masked).mean() if masked else joint * 0
    retention = torch.stack(kept).mean() if kept else joint * 0
    spread = torch.pdist(full).pow(2).mul(-2).exp().mean().clamp_min(1e-12).log()
    total = joint + marginal + retention + choices.spread_weight * spread
    values = torch.stack([total, joint, marginal, retention, spread]).detach().tolist()
    return total, dict(zip(training.LOSS_PARTS, values, strict=True))


def points_inputs(spec) -> tuple:
    """The `points` space's inputs, tokens and zero-configuration choices."""
    from pipeline.spaces.model import token_specs
    from pipeline.spaces.reads import read_space_inputs

    warehouse = runner.warehouse_of(spec)
    with warehouse.connect() as con:
        profiles = profile_space(con, spec, "points")
        inputs = read_space_inputs(warehouse, con, spec, "points", profiles=profiles)
    tokens = token_specs(inputs)
    return inputs, tokens, training.choose_hyperparameters(inputs.n_rows, tokens, spec.training, 0)


def compare_steps(spec, repeats: int = 4, steps: int = 6) -> None:
    """Rows/s of single training steps on the same model and batches, interleaved so machine
    load hits every variant alike: the three-pass step against the one batched pass, at
    dropout 0.1 and 0, on one thread and on all of torch's threads."""
    from pipeline.spaces.model import SpaceModel, gather

    inputs, tokens, choices = points_inputs(spec)
    all_threads = torch.get_num_threads()
    kinds = (("three passes", legacy_step), ("one batched pass", training.step_loss))
    variants = [
        (step_name, step, dropout, threads)
        for threads in sorted({1, all_threads})
        for dropout in (0.1, 0.0)
        for step_name, step in kinds
    ]
    models = {}
    for _, _, dropout, _ in variants:
        torch.manual_seed(0)
        model = SpaceModel(tokens, choices.d_model, choices.embedding_dim, dropout=dropout)
        models[dropout] = (model.train(), torch.optim.AdamW(model.parameters(), lr=1e-4))
    generator = torch.Generator().manual_seed(0)
    speeds: dict[tuple, list[float]] = {v[:1] + v[2:]: [] for v in variants}
    for _ in range(repeats):
        for name, step, dropout, threads in variants:
            torch.set_num_threads(threads)
            model, optimizer = models[dropout]
            started = time.perf_counter()
            for _ in range(steps):
                rows = torch.randint(0, inputs.n_rows, (choices.batch_size,), generator=generator)
                loss, _ = step(model, gather(inputs, rows), generator, choices)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            speeds[(name, dropout, threads)].append(
                steps * choices.batch_size / (time.perf_counter() - started)
            )
    torch.set_num_threads(all_threads)
    print(
        f"single steps, {len(tokens)} tokens, d_model {choices.d_model}, batch "
        f"{choices.batch_size} (median of {repeats} runs of {steps} steps, interleaved):"
    )
    for (name, dropout, threads), values in speeds.items():
        print(
            f"  {name:17s} dropout {dropout}, {threads} thread(s): "
            f"{sorted(values)[len(values) // 2]:,.0f} rows/s"
        )


def step_parts(spec, repeats: int = 20) -> None:
    """Where one training step's time goes, on one thread: forward + backward of the column
    encoders, of the transformer (the full view and the two masked views) and of the
    decoders' losses, each alone on the same 256-row batch, beside the whole loss."""
    from pipeline.spaces.model import SpaceModel, gather

    torch.set_num_threads(1)
    inputs, tokens, choices = points_inputs(spec)
    torch.manual_seed(0)
    model = SpaceModel(tokens, choices.d_model, choices.embedding_dim, dropout=0.0).train()
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, inputs.n_rows, (choices.batch_size,), generator=generator)
    batch = gather(inputs, rows)
    in_a = objective.complementary_split(len(rows), len(batch), generator)
    hidden = torch.stack([torch.zeros_like(in_a), ~in_a, in_a])
    content, present, _ = model.encode_tokens(batch)
    content = content.detach().requires_grad_()
    views = torch.cat([present[None], hidden[1:] & present])
    embedding = torch.randn(3, len(rows), choices.embedding_dim, requires_grad=True)

    def encoders() -> None:
        model.encode_tokens(batch)[0].sum().backward()

    def transformer() -> None:
        full = model.embed_tokens(content, present)
        masked = model.embed_tokens(
            content.repeat(2, 1, 1), present.repeat(2, 1), hidden=hidden[1:].flatten(0, 1)
        )
        (full.sum() + masked.sum()).backward()

    def decoders() -> None:
        parts = objective.token_losses(model, batch, embedding, views, choices.temperature)
        sum(loss.sum() for loss, _ in parts.values()).backward()

    def whole() -> None:
        objective.losses(model, batch, in_a, choices)[0].backward()

    print(f"one step, {len(tokens)} tokens, batch {len(rows)}, 1 thread (forward + backward):")
    for name, part in (
        ("encoders", encoders),
        ("transformer", transformer),
        ("decoders", decoders),
        ("whole loss", whole),
    ):
        for _ in range(3):
            part()
        started = time.perf_counter()
        for _ in range(repeats):
            part()
        print(f"  {name:12s} {(time.perf_counter() - started) / repeats * 1000:6.1f} ms")


def train_one(spec, name: str) -> dict:
    started = time.perf_counter()
    space = runner.train(spec, name, progress=False)
    wall = time.perf_counter() - started
    result = space.training
    return {
        "wall_s": wall,
        "train_s": result.train_seconds,
        "steps": result.steps_done,
        "choices": result.choices,
        "epochs": result.epochs,
        "rows_per_s": result.rows_per_second,
        "stopped_early": result.stopped_early,
        "validation": result.validation_losses,
        "losses": result.final_losses,
        "failures": result.failures + result.warnings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[26_000, 400_000])
    parser.add_argument("--d-model", type=int, default=None, help="override d_model")
    parser.add_argument("--steps", type=int, default=None, help="override the step count")
    parser.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    parser.add_argument("--children", action="store_true", help="also a parent with a child set")
    parser.add_argument("--legacy", action="store_true", help="train as before issue 8")
    parser.add_argument(
        "--compare-steps", action="store_true", help="only time single steps, old and new"
    )
    parser.add_argument("--parts", action="store_true", help="only time the parts of a step")
    args = parser.parse_args()
    overrides = {"d_model": args.d_model, "steps": args.steps, "batch_size": args.batch_size}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.legacy:
        training.choose_hyperparameters = legacy_choices
        training.step_loss = legacy_step
    mode = "legacy (before issue 8)" if args.legacy else "current"
    print(f"{mode}; torch {torch.__version__}; overrides {overrides or 'none'}")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as folder:
            warehouse = Path(folder) / "speed.duckdb"
            build(warehouse, rows, args.children)
            spec = spec_for(warehouse, Path(folder) / "artifacts", args.children, overrides)
            runner.validate(spec)
            if args.compare_steps:
                compare_steps(spec)
                continue
            if args.parts:
                step_parts(spec)
                continue
            for name in ["points", "owners"] if args.children else ["points"]:
                r = train_one(spec, name)
                c = r["choices"]
                print(
                    f"{name} ({rows:,} points): train {r['wall_s']:.1f} s wall, training loop "
                    f"{r['train_s']:.1f} s: {r['steps']} of {c.steps} steps ({c.steps_rule}) x "
                    f"{c.batch_size} rows, d_model {c.d_model}, dropout {c.dropout}, "
                    f"{c.threads} thread(s), {r['epochs']:.2f} epochs, stopped early "
                    f"{r['stopped_early']} -> {r['rows_per_s']:,.0f} training rows/s",
                    flush=True,
                )
                print(f"  final losses { ({k: round(v, 3) for k, v in r['losses'].items()}) }")
                if r["validation"]:
                    print(f"  held-out loss by step {r['validation']}")
                if r["failures"]:
                    print(f"  failures and warnings {r['failures']}")
                if name == "points" and args.children:
                    runner.embed(spec, name)


if __name__ == "__main__":
    main()
