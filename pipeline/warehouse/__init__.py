"""Warehouse I/O: the only package that talks to the database.

`connection` (the `Warehouse`: opening, the lock, atomic table writes, Arrow reads), `sql`
(quoted names and literals: plain strings), `text_cache` (text embeddings cached in the
warehouse).
"""
