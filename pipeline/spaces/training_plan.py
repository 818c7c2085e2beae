"""The zero-configuration plan of a space's training: every hyperparameter derived from the
data and the spec (never from the machine's speed, so a run can be repeated exactly), a cost
model that turns a time budget into a step count, and the thread count."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pipeline.spaces.model import TokenSpec
from pipeline.spec import TrainingSpec

N_VIEWS = 3
"""Full view and two complementary masked views (each half the row's tokens)."""
REFERENCE_MACS_PER_SECOND = 13e9
"""Multiply-adds per second of a training step on the reference machine (2 CPU cores, one
thread, d_model 64); with STEP_OVERHEAD_S it turns the time budget into a step count without
timing anything."""
STEP_OVERHEAD_S = 0.0025
"""Seconds per token per step that do not grow with the batch (launching small operations)."""
STEP_FIXED_S = 0.02
"""Seconds per step whatever its size (optimizer, losses, Python): measured on tables of
three to four tokens, where the multiply-adds alone predicted 60% of the time."""
TRAINING_CHILDREN = 64
"""Children per parent row in a training batch: a longer set is sampled down to this many
(see `gather`); embedding reads every child up to the link's `max_length`."""
CHILD_SET_FACTOR = 3.0
"""A child set's element-wise work (positions, masks, max, spread) costs about twice its
multiply-adds on CPU (memory-bound; measured on sets of 512 children)."""
LOG_EVERY = 10
MIN_STEPS = 300
"""Updates a small table gets even when its epochs need fewer, while they fit the budget."""
FLOOR_STEPS = 50
"""Updates every space gets, even past its time budget (a wide child set on a small table)."""
BASE_BUDGET_S = 15.0
BUDGET_PER_1K_ROWS_S = 0.3
MAX_BUDGET_S = 30.0
"""A space of 50k rows or more: the run must still embed, score and write all of them within
minutes (issue 14: a 300k-row root took 125-135 s of a 120 s limit at 45 s, the training
of its space 32-38 s of that)."""
RUN_BASE_S = 40.0
RUN_PER_1K_ROWS_S = 0.1
MAX_RUN_S = 150.0
ROOT_SHARE_WEIGHT = 3.0
"""A root space (one no other space reads) weighs this many times its rows' share: its
embedding is the one users query and predictors read."""
EVALUATIONS = 10
"""Evaluations on the held-out rows per run (fewer when a run has under 100 steps)."""
MIN_IMPROVEMENT = 1e-3
"""Relative fall of the held-out loss that resets the patience count."""


@dataclass(frozen=True)
class TrainingChoices:
    """Every hyperparameter of a run, derived from the data unless the spec overrides it."""

    d_model: int
    embedding_dim: int
    n_layers: int
    n_heads: int
    dropout: float
    batch_size: int
    steps: int
    """Planned optimizer updates (early stopping may use fewer)."""
    learning_rate: float
    weight_decay: float
    temperature: float
    spread_weight: float
    seed: int
    epochs: float = 0.0
    """Planned passes over the training rows: steps * batch_size / training_rows."""
    training_rows: int = 0
    validation_rows: int = 0
    """Held-out rows (never trained on) whose loss decides early stopping; 0: none."""
    eval_every: int = 0
    patience: int = 0
    """Evaluations without improvement before stopping; 0: no early stopping."""
    time_budget_s: float = 0.0
    """Seconds the planned steps should take on the reference machine (cost model)."""
    wall_clock_limit_s: float = 0.0
    """Safety net: a run still going after this many seconds stops with a warning."""
    threads: int = 1
    steps_rule: str = ""
    """Which rule set the step count: epochs, time budget, minimum, or the spec."""


def _power_of_two(x: float) -> int:
    return 2 ** math.floor(math.log2(max(x, 1.0)))


def step_seconds(tokens: list[TokenSpec], d_model: int, n_layers: int, batch_size: int) -> float:
    """Cost model of one training step on the reference machine: a fixed cost per token plus
    the multiply-adds of the full view (every token) and the two masked views (half the
    tokens each) through the transformer (attention projections 4d², feed-forward 2 * d * 2d,
    attention 2 * seq * d per token and layer; the last layer only keys and values 2d² per
    token, the rest for [CLS] alone, see `SpaceModel._encoded_cls`), encoders and decoders
    (about 4d² per token and view), and each child set once per row (projection, keys and
    values of up to `TRAINING_CHILDREN` children, with their element-wise work); backward
    about twice the forward."""
    n_tokens = len(tokens)
    forward = 0.0
    for seq in (n_tokens + 1, (n_tokens + 1) // 2 + 1, (n_tokens + 1) // 2 + 1):
        forward += seq * (n_layers - 1) * (8 * d_model**2 + 2 * seq * d_model)
        forward += seq * 2 * d_model**2 + 6 * d_model**2 + 2 * seq * d_model
    forward += N_VIEWS * n_tokens * 4 * d_model**2
    for token in tokens:
        if token.kind == "children":
            children = min(token.max_length, TRAINING_CHILDREN)
            per_child = token.dim * d_model + 2 * d_model**2 + 4 * d_model
            forward += CHILD_SET_FACTOR * children * per_child
    macs = 3.0 * forward * batch_size
    return STEP_FIXED_S + n_tokens * STEP_OVERHEAD_S + macs / REFERENCE_MACS_PER_SECOND


def time_budget(n_rows: int) -> float:
    """Seconds of training a space gets on the reference machine: 15 s + 0.3 s per 1k rows, at
    most 30 s, so a whole run of a few tables stays within minutes."""
    return min(MAX_BUDGET_S, BASE_BUDGET_S + BUDGET_PER_1K_ROWS_S * n_rows / 1000)


def run_budget(rows: dict[str, int]) -> float:
    """Seconds of training for every space of a run together, on the reference machine:
    40 s + 0.1 s per 1k rows of all tables, at most 150 s."""
    return min(MAX_RUN_S, RUN_BASE_S + RUN_PER_1K_ROWS_S * sum(rows.values()) / 1000)


def space_budget(rows: dict[str, int], roots: set[str], name: str) -> float:
    """A space's share of `run_budget`: in proportion to the square root of its rows, a
    root's share weighed ROOT_SHARE_WEIGHT times, and at most `time_budget(rows)`. An
    8-row lookup table gets a second or two, the table users query most of the run.
    `rows`: every space's row count; `roots`: the spaces no other space reads."""
    weights = {
        space: math.sqrt(max(n, 1)) * (ROOT_SHARE_WEIGHT if space in roots else 1.0)
        for space, n in rows.items()
    }
    share = run_budget(rows) * weights[name] / sum(weights.values())
    return min(time_budget(rows[name]), share)


def choose_hyperparameters(
    n_rows: int,
    tokens: list[TokenSpec],
    overrides: TrainingSpec,
    seed: int,
    budget_s: float | None = None,
) -> TrainingChoices:
    """Zero-configuration defaults; every number is a function of the data and the spec only
    (never of the machine's speed), so a run can be repeated exactly.

    - d_model 64: under a time budget a model twice as wide costs four times as much per row
      and sees a quarter of the rows.
    - batch: n/4 rounded down to a power of two, within [16, 256] (larger batches gave no more
      rows per second on CPU and fewer updates per epoch).
    - validation: min(5%, 1024) rows held out when that is at least 64 rows (tables of 1,280
      rows and more); early stopping after 3 evaluations without a 0.1% improvement.
    - epochs: 40 / sqrt(n / 1000), within [1, 40] (40 up to 1k rows, 8 at 26k, 2 at 400k).
    - time budget: `budget_s` (the space's share of the run's, `space_budget`), else
      `time_budget`, or the spec's `time_budget_s`, turned into a step cap by the cost model
      (`step_seconds`). It is a cap: the self-supervised space feeds the
      predictors beside the child statistics, which need no training, and a whole run must
      stay within minutes of a GROUP BY + LightGBM on the same tables.
    - steps: enough for the epochs and at least 300 (with fewer updates the reconstruction
      losses of small tables stayed near chance), both capped by the time budget; never under
      50 unless the spec sets the time budget.
    - dropout 0.1 when the plan sees each row 5 times or more, else 0 (no time to overfit).
    - learning rate 3e-3 (with 5% warmup and a cosine decay): at 1e-3 the reconstruction
      losses needed about three times the updates to reach the same held-out loss.
    - evaluation on the held-out rows about 10 times per run (at most every 10 steps); its
      cost (a forward pass, a third of a training step per row) is part of the budget.
    """
    d_model = overrides.d_model or 64
    n_layers = 2
    validation_rows = min(1024, n_rows // 20)
    if validation_rows < 64:
        validation_rows = 0
    training_rows = n_rows - validation_rows
    batch = overrides.batch_size or min(256, max(16, _power_of_two(n_rows / 4)))
    batch = min(batch, max(training_rows, 2))
    n_tokens = len(tokens)
    seconds_per_step = step_seconds(tokens, d_model, n_layers, batch)
    seconds_per_evaluation = seconds_per_step * validation_rows / batch / 3
    budget = overrides.time_budget_s or budget_s or time_budget(n_rows)
    budget_steps = int((budget - EVALUATIONS * seconds_per_evaluation) / seconds_per_step)
    epochs = min(40.0, max(1.0, 40.0 / math.sqrt(max(n_rows, 1) / 1000)))
    epoch_steps = math.ceil(epochs * training_rows / batch)
    floor = 1 if overrides.time_budget_s else FLOOR_STEPS
    if overrides.steps:
        steps, rule = overrides.steps, "spec"
    elif budget_steps < floor:
        steps, rule = floor, "floor"
    elif budget_steps < max(epoch_steps, MIN_STEPS):
        steps, rule = budget_steps, "time budget"
    elif epoch_steps < MIN_STEPS:
        steps, rule = MIN_STEPS, "minimum"
    else:
        steps, rule = epoch_steps, "epochs"
    planned_epochs = steps * batch / max(training_rows, 1)
    eval_every = max(LOG_EVERY, math.ceil(steps / EVALUATIONS))
    evaluations = math.ceil(steps / eval_every) if validation_rows else 0
    estimate = steps * seconds_per_step + evaluations * seconds_per_evaluation
    return TrainingChoices(
        d_model=d_model,
        embedding_dim=overrides.embedding_dim or d_model,
        n_layers=n_layers,
        n_heads=4,
        dropout=0.1 if planned_epochs >= 5 else 0.0,
        batch_size=batch,
        steps=steps,
        learning_rate=overrides.learning_rate or 3e-3,
        weight_decay=1e-4,
        temperature=0.1,
        spread_weight=0.1 if n_tokens > 1 else 0.3,
        seed=seed,
        epochs=round(planned_epochs, 3),
        training_rows=training_rows,
        validation_rows=validation_rows,
        eval_every=eval_every,
        patience=3 if validation_rows and not overrides.steps else 0,
        time_budget_s=round(estimate, 1),
        wall_clock_limit_s=round(max(600.0, 5 * estimate), 1),
        threads=training_threads(batch),
        steps_rule=rule,
    )


MAX_TRAINING_THREADS = 4
THREADED_BATCH = 128
"""Batches of fewer rows train on one thread: their operations are too small to share."""


def training_threads(batch_size: int) -> int:
    """Intra-op threads for training: every core, at most MAX_TRAINING_THREADS (the model's
    matrices are small), for batches of THREADED_BATCH rows or more; one below. Spaces train
    one at a time (`run` trains them in turn; the Dagster code location runs in process,
    with the warehouse's pool limited to one), so a space's training has the machine. On 2
    cores: a 256-row step 0.166 s on two threads against 0.214 s on one, but the demo's
    tables of 8 and 80 rows (batches of 8 and 16) trained 10-25% slower on two."""
    if batch_size < THREADED_BATCH:
        return 1
    return max(1, min(MAX_TRAINING_THREADS, os.cpu_count() or 1))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
