"""Names as people write them: `customer_id`, `customerID`, `CustomerId`, `c_custkey`: one
comparable form, table names in the singular, and whether a column's name says it is a key."""

from __future__ import annotations

import re

KEY_SUFFIXES = ("id", "key", "code", "no", "number", "nr")
"""Name endings that say a column identifies something (compared in the folded form)."""
_PREFIX = re.compile(r"^[a-z]{1,3}_(?=[a-z])", re.IGNORECASE)
"""A short table prefix as in TPC-H's `c_custkey` or `ps_partkey`."""


def folded(name: str) -> str:
    """Lower case, letters and digits only: `customerID`, `Customer_Id` -> `customerid`."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def without_prefix(name: str) -> str:
    """`c_custkey` -> `custkey`; a name without a short prefix stays as it is."""
    return _PREFIX.sub("", name)


def singular(word: str) -> str:
    """A plain English singular of a folded table name: `categories` -> `category`,
    `addresses` -> `address`, `orders` -> `order`, `status` stays."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def table_stems(table: str) -> set[str]:
    """Folded forms a column naming this table may start with: the name and its singular,
    and both without a schema-like prefix (`dim_customers`, `tbl_orders`)."""
    stems = set()
    for name in (table, re.sub(r"^(dim|fact|fct|tbl|stg|raw|src)_", "", table.lower())):
        word = folded(name)
        stems |= {word, singular(word)}
    return {s for s in stems if s}


def says_key(column: str) -> bool:
    """Whether the name ends like an identifier (`id`, `_key`, `code`, `no`, ...)."""
    word = folded(column)
    return any(word.endswith(suffix) for suffix in KEY_SUFFIXES)


def names_own_key(column: str, table: str) -> bool:
    """Whether `column` is the natural key name of `table`: `id`, `customer_id`,
    `customerID`, `customer_key` in `customers`, `c_custkey` in `customer` (a short prefix
    and the stem's first letters); not `o_custkey` in `orders`."""
    word = folded(column)
    if word in ("id", "key"):
        return True
    stems = table_stems(table)
    short = folded(without_prefix(column))
    if any(word in (f"{stem}id", f"{stem}key", f"{stem}code", f"{stem}no") for stem in stems):
        return True
    # a short table prefix and an abbreviated stem: `c_custkey` in `customer`
    return (
        short != word
        and short.endswith(("key", "id"))
        and any(len(stem) >= 3 and short.startswith(stem[:3]) for stem in stems)
    )
