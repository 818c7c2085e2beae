"""Deterministic demo e-commerce warehouse: six raw tables with a planted churn signal.

A latent per-customer `unhappy` flag (never stored) drives late and returned orders, angry
support tickets and churn, so a model that sees the child tables should predict `churned`
far better than one that only sees the customers table. Same seed and scale give identical
table contents.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import demo_text as text
from pipeline.warehouse.connection import Warehouse

SNAPSHOT = np.datetime64("2026-06-30T00:00:00", "s")
HISTORY_START = SNAPSHOT - np.timedelta64(547, "D")  # 18 months of orders and tickets
RECENT_START = SNAPSHOT - np.timedelta64(91, "D")  # the last 3 months
FIRST_SIGNUP = np.datetime64("2021-01-01", "D")
LAST_SIGNUP = np.datetime64("2026-05-31", "D")

# P(late), P(returned), P(cancelled), indexed by [unhappy, recent]; the rest is delivered.
STATUSES = ["late", "returned", "cancelled", "delivered"]
STATUS_RATES = np.array(
    [
        [[0.06, 0.04, 0.03], [0.06, 0.04, 0.03]],
        [[0.40, 0.22, 0.05], [0.50, 0.25, 0.05]],
    ]
)
ORDER_CHANNELS, ORDER_CHANNEL_WEIGHTS = ["web", "app", "phone"], [0.55, 0.35, 0.10]
TICKET_CHANNELS = ["email", "chat", "phone"]
PRIORITIES = ["low", "normal", "high"]
DISCOUNTS, DISCOUNT_WEIGHTS = [0.0, 0.05, 0.10, 0.20], [0.70, 0.15, 0.10, 0.05]
TABLE_KEYS = {
    "regions": "region_id",
    "customers": "customer_id",
    "products": "product_id",
    "orders": "order_id",
    "order_items": "item_id",
    "support_tickets": "ticket_id",
}


def _pick(
    rng: np.random.Generator, options: Sequence[str], size: int, p: Sequence[float] | None = None
) -> list[str]:
    """Draw `size` strings from `options` (optionally weighted)."""
    return [options[i] for i in rng.choice(len(options), size=size, p=p)]


def _ids(n: int) -> pa.Array:
    return pa.array(np.arange(1, n + 1, dtype=np.int64))


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]").astype("datetime64[us]"))


def _times_in_window(rng: np.random.Generator, start: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Uniform times (epoch seconds) between each owner's window start and the snapshot."""
    owner_start = start[owners]
    span = SNAPSHOT.astype(np.int64) - owner_start
    return owner_start + np.floor(rng.random(len(owners)) * span).astype(np.int64)


def _regions() -> pa.Table:
    return pa.table(
        {
            "region_id": _ids(len(text.REGIONS)),
            "name": [r[0] for r in text.REGIONS],
            "country": [r[1] for r in text.REGIONS],
            "timezone": [r[2] for r in text.REGIONS],
        }
    )


def _customers(rng: np.random.Generator, n: int, unhappy: np.ndarray) -> pa.Table:
    """Parent columns are drawn independently of `unhappy`; only `churned` depends on it."""
    plan_index = rng.choice(len(text.PLANS), size=n, p=text.PLAN_WEIGHTS)
    region_id = rng.choice(len(text.REGIONS), size=n, p=text.REGION_WEIGHTS) + 1
    signup_span = int((LAST_SIGNUP - FIRST_SIGNUP).astype(np.int64))
    signup = FIRST_SIGNUP + rng.integers(0, signup_span + 1, size=n).astype("timedelta64[D]")
    age = np.clip(np.round(rng.normal(41, 12, size=n)), 18, 85).astype(np.int32)

    first = _pick(rng, text.FIRST_NAMES, n)
    last = _pick(rng, text.LAST_NAMES, n)
    number = rng.integers(1, 1000, size=n)
    company = rng.random(n) < np.asarray(text.COMPANY_EMAIL_RATE)[plan_index]
    company_domain = _pick(rng, text.COMPANY_DOMAINS, n)
    free_domain = _pick(rng, text.FREE_MAIL_DOMAINS, n)
    email = [
        f"{f}.{s}{k}@{c if is_company else m}"
        for f, s, k, c, m, is_company in zip(
            first, last, number, company_domain, free_domain, company, strict=True
        )
    ]

    has_note = rng.random(n) >= 0.4
    source = _pick(rng, text.NOTE_SOURCES, n)
    preference = _pick(rng, text.NOTE_PREFERENCES, n)
    shape = rng.integers(0, 3, size=n)  # source only, preference only, or both
    notes = [
        None if not keep else (s, p, f"{s} {p}")[k]
        for keep, s, p, k in zip(has_note, source, preference, shape, strict=True)
    ]

    plan = np.asarray(text.PLANS)[plan_index]
    logit = -2.0 + 3.6 * unhappy + 0.35 * (plan == "free") - 0.3 * (plan == "enterprise")
    churned = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    return pa.table(
        {
            "customer_id": _ids(n),
            "signup_date": pa.array(signup, type=pa.date32()),
            "region_id": pa.array(region_id.astype(np.int64)),
            "plan": plan.tolist(),
            "email": email,
            "notes": pa.array(notes, type=pa.string()),
            "age": pa.array(age),
            "churned": pa.array(churned),
        }
    )


def _products(rng: np.random.Generator, n: int) -> pa.Table:
    categories = list(text.CATEGORIES)
    category_index = rng.integers(0, len(categories), size=n)
    names: list[str] = []
    used: dict[str, int] = {}
    for index in category_index:
        category = categories[index]
        nouns = text.CATEGORIES[category][1]
        base = f"{_pick(rng, text.PRODUCT_ADJECTIVES, 1)[0]} {_pick(rng, nouns, 1)[0]}"
        used[base] = used.get(base, 0) + 1
        names.append(base if used[base] == 1 else f"{base} {used[base]}")
    base_price = np.asarray([text.CATEGORIES[categories[i]][0] for i in category_index])
    price = np.maximum(np.floor(base_price * rng.lognormal(0.0, 0.5, size=n)), 1.0) + 0.99
    opener = _pick(rng, text.DESCRIPTION_OPENERS, n)
    feature = _pick(rng, text.DESCRIPTION_FEATURES, n)
    descriptions = [
        f"{o.format(category=categories[c])} {name.lower()}, {f}"
        for o, c, name, f in zip(opener, category_index, names, feature, strict=True)
    ]
    return pa.table(
        {
            "product_id": _ids(n),
            "name": names,
            "category": [categories[i] for i in category_index],
            "description": descriptions,
            "price": pa.array(np.round(price, 2)),
        }
    )


def _orders_and_items(
    rng: np.random.Generator,
    unhappy: np.ndarray,
    window_start: np.ndarray,
    prices: np.ndarray,
) -> tuple[pa.Table, pa.Table]:
    """Orders (statuses driven by `unhappy`) and their items; ids follow order time."""
    history = float((SNAPSHOT - HISTORY_START).astype(np.int64))
    active_fraction = (SNAPSHOT.astype(np.int64) - window_start) / history
    rate = rng.gamma(shape=3.0, scale=2.0, size=len(unhappy)) * active_fraction
    owner = np.repeat(np.arange(len(unhappy)), rng.poisson(rate))
    ordered_at = _times_in_window(rng, window_start, owner)
    order = np.lexsort((owner, ordered_at))
    owner, ordered_at = owner[order], ordered_at[order]
    n_orders = len(owner)

    recent = ordered_at >= RECENT_START.astype(np.int64)
    rates = STATUS_RATES[unhappy[owner].astype(int), recent.astype(int)]
    draw = rng.random(n_orders)
    status_index = (draw[:, None] >= np.cumsum(rates, axis=1)).sum(axis=1)
    status = np.asarray(STATUSES)[status_index]
    shipping_days = np.select(
        [status == "delivered", status == "late", status == "returned"],
        [
            1 + rng.poisson(2.0, n_orders),
            6 + rng.poisson(5.0, n_orders),
            2 + rng.poisson(2.0, n_orders),
        ],
        default=0,
    ).astype(np.int32)

    n_lines = rng.integers(1, 5, size=n_orders)
    item_order = np.repeat(np.arange(n_orders), n_lines)
    n_items = len(item_order)
    popularity = 1.0 / (rng.permutation(len(prices)) + 5.0)
    product = rng.choice(len(prices), size=n_items, p=popularity / popularity.sum())
    quantity = (1 + np.minimum(rng.poisson(0.4, n_items), 4)).astype(np.int32)
    discount = np.asarray(DISCOUNTS)[rng.choice(len(DISCOUNTS), size=n_items, p=DISCOUNT_WEIGHTS)]
    unit_price = prices[product]
    # Exact decimal arithmetic in 1/10000 of a currency unit, rounded half up to cents.
    line_units = (
        quantity.astype(np.int64)
        * np.round(unit_price * 100).astype(np.int64)
        * (100 - np.round(discount * 100).astype(np.int64))
    )
    order_units = np.zeros(n_orders, dtype=np.int64)
    np.add.at(order_units, item_order, line_units)
    total = ((order_units + 50) // 100) / 100.0

    orders = pa.table(
        {
            "order_id": _ids(n_orders),
            "customer_id": pa.array(owner.astype(np.int64) + 1),
            "ordered_at": _timestamps(ordered_at),
            "status": status.tolist(),
            "channel": _pick(rng, ORDER_CHANNELS, n_orders, ORDER_CHANNEL_WEIGHTS),
            "shipping_days": pa.array(shipping_days),
            "total_amount": pa.array(total),
        }
    )
    items = pa.table(
        {
            "item_id": _ids(n_items),
            "order_id": pa.array(item_order.astype(np.int64) + 1),
            "product_id": pa.array(product.astype(np.int64) + 1),
            "quantity": pa.array(quantity),
            "unit_price": pa.array(unit_price),
            "discount": pa.array(discount),
        }
    )
    return orders, items


def _support_tickets(
    rng: np.random.Generator, unhappy: np.ndarray, window_start: np.ndarray
) -> pa.Table:
    """Unhappy customers open more tickets, and most of theirs are complaints."""
    owner = np.repeat(np.arange(len(unhappy)), rng.poisson(np.where(unhappy, 2.0, 0.4)))
    opened_at = _times_in_window(rng, window_start, owner)
    order = np.lexsort((owner, opened_at))
    owner, opened_at = owner[order], opened_at[order]
    n = len(owner)

    angry = rng.random(n) < np.where(unhappy[owner], 0.75, 0.10)
    bodies = [
        " ".join(parts)
        for parts in zip(
            _pick(rng, text.ANGRY_OPENERS, n),
            _pick(rng, text.ANGRY_COMPLAINTS, n),
            _pick(rng, text.ANGRY_CLOSERS, n),
            strict=True,
        )
    ]
    questions = [
        " ".join(parts)
        for parts in zip(
            _pick(rng, text.QUESTION_OPENERS, n),
            _pick(rng, text.QUESTIONS, n),
            _pick(rng, text.QUESTION_CLOSERS, n),
            strict=True,
        )
    ]
    body = [b if a else q for a, b, q in zip(angry, bodies, questions, strict=True)]
    channel_draw, priority_draw = rng.random(n), rng.random(n)
    channel = np.where(
        channel_draw < np.where(angry, 0.35, 0.15),
        2,
        np.where(channel_draw < np.where(angry, 0.65, 0.55), 1, 0),
    )
    priority = np.where(
        priority_draw < np.where(angry, 0.5, 0.05),
        2,
        np.where(priority_draw < np.where(angry, 0.9, 0.5), 1, 0),
    )
    return pa.table(
        {
            "ticket_id": _ids(n),
            "customer_id": pa.array(owner.astype(np.int64) + 1),
            "opened_at": _timestamps(opened_at),
            "channel": [TICKET_CHANNELS[i] for i in channel],
            "priority": [PRIORITIES[i] for i in priority],
            "body": body,
        }
    )


def build_demo_tables(scale: float = 1.0, seed: int = 0) -> dict[str, pa.Table]:
    """The six raw demo tables as Arrow tables, rows in key order."""
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    rng = np.random.default_rng(seed)
    n_customers = max(1, round(2000 * scale))
    n_products = max(40, round(200 * scale))
    unhappy = rng.random(n_customers) < 0.3  # the latent cause; never written

    customers = _customers(rng, n_customers, unhappy)
    products = _products(rng, n_products)
    signup_seconds = (
        customers.column("signup_date").to_numpy().astype("datetime64[s]").astype(np.int64)
    )
    window_start = np.maximum(signup_seconds, HISTORY_START.astype(np.int64))
    orders, order_items = _orders_and_items(
        rng, unhappy, window_start, products.column("price").to_numpy()
    )
    return {
        "regions": _regions(),
        "customers": customers,
        "products": products,
        "orders": orders,
        "order_items": order_items,
        "support_tickets": _support_tickets(rng, unhappy, window_start),
    }


def generate_demo_warehouse(
    path: str | Path, scale: float = 1.0, seed: int = 0, options: dict | None = None
) -> dict[str, int]:
    """Write the raw demo tables into schema `raw` of the warehouse at `path` (a DuckDB file,
    created if missing, or an attach string with its `options`, as `warehouse:` in the spec);
    returns row counts per table. Tables are replaced in one transaction."""
    tables = build_demo_tables(scale=scale, seed=seed)
    with Warehouse(path, options=options).connect() as con:
        con.execute("begin transaction")
        try:
            con.execute("create schema if not exists raw")
            for name, table in tables.items():
                view = f"demo_{name}_arrow"
                con.register(view, table)
                con.execute(
                    f"create or replace table raw.{name} as "
                    f"select * from {view} order by {TABLE_KEYS[name]}"
                )
                con.unregister(view)
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise
    return {name: table.num_rows for name, table in tables.items()}


def main(argv: list[str] | None = None) -> None:
    """`python -m pipeline.demo --warehouse warehouse.duckdb --scale 1 --seed 0`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--warehouse",
        default="warehouse.duckdb",
        help="DuckDB file to write, or an attach string (ducklake:postgres:..., postgres:...)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an ATTACH option of an attached warehouse (e.g. data_path=/lake/data)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 2000 customers")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    options = dict(option.split("=", 1) for option in args.option)
    counts = generate_demo_warehouse(args.warehouse, args.scale, args.seed, options)
    for name, count in counts.items():
        print(f"raw.{name:<16} {count:>8} rows")


if __name__ == "__main__":
    main()
