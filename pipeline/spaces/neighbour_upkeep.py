"""Keeping `ml.<space>_neighbours` and its saved index up to date for the rows embedded
again, instead of rebuilding both.

The saved keys file records each indexed row's `row_fingerprint`; the rows of
`ml.<space>_embeddings` whose fingerprint is new or different were embedded again (same
fingerprint, same model: same embedding). They are removed from the index and added back
under new ids, rows that left the table are removed, and the neighbours are found again for
the rows whose list can have changed:

- the rows embedded again (their own list);
- the rows that listed a removed or re-embedded row;
- the rows a re-embedded row now comes nearer than their k-th neighbour: on an exact index
  every row is compared with the re-embedded ones (the result equals a rebuild's); on an
  inverted file only the CANDIDATES_PER_ROW x k rows nearest each re-embedded row are
  (a row farther than that from it is not expected to take it among its k nearest).

Their rows of the table are replaced in one transaction. The whole is rebuilt instead when
there is no saved index to start from, the model or `neighbours: k` changed, the table was
not written from this index, more than REBUILD_SHARE of the rows changed at once or since
the last rebuild (an inverted file's centres were fitted on the rows of its build), or an
exact index grew past EXACT_UP_TO rows.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline.spaces import neighbours as index_settings
from pipeline.spaces.neighbour_table import (
    LIVE,
    META_FILE,
    build_neighbours,
    index_folder,
    neighbour_batch,
    neighbour_column,
    read_keys,
    save_index,
    table_name,
)
from pipeline.spaces.neighbours import NeighbourIndex
from pipeline.spaces.row_fingerprints import FINGERPRINT
from pipeline.spec import Spec
from pipeline.store import model_store
from pipeline.warehouse.connection import Connection, Warehouse, fetch_arrow
from pipeline.warehouse.sql import quote
from pipeline.warehouse.vectors import vectors_of

log = logging.getLogger(__name__)

REBUILD_SHARE = 0.2
"""Rows changed (at once, or added up since the last rebuild) above which the index and the
table are rebuilt whole."""
CANDIDATES_PER_ROW = 3
"""Inverted file: a re-embedded row is offered to its CANDIDATES_PER_ROW x k nearest rows."""
SCAN_BATCH_ROWS = 8_192


def write_neighbours(warehouse: Warehouse, spec: Spec, name: str, keep: int) -> int:
    """Bring `ml.<name>_neighbours` and the space's saved index up to date with the stored
    embeddings: only the rows whose lists changed when it can, whole otherwise. Returns the
    table rows written (0 when nothing changed or the space keeps no neighbours)."""
    k = spec.neighbours(name)
    if not k:
        return 0
    updated = _update(warehouse, spec, name, k, keep)
    if updated is not None:
        return updated
    return build_neighbours(warehouse, spec, name, keep)


def _saved_state(spec: Spec, name: str) -> tuple[Path, dict, pa.Table] | None:
    folder = index_folder(spec.artifacts, name)
    if model_store.current_name(folder) is None:
        return None
    path = model_store.current_set(folder, f"neighbours of {name}", check=False)
    meta = json.loads((path / META_FILE).read_text())
    if not meta.get("fingerprints"):
        return None  # saved before fingerprints were kept, or the table has none
    return path, meta, read_keys(path)


def _update(warehouse: Warehouse, spec: Spec, name: str, k: int, keep: int) -> int | None:
    """The update described above; None when the whole must be rebuilt."""
    state = _saved_state(spec, name)
    if state is None:
        return None
    path, meta, key_file = state
    keys = spec.spaces[name].key_columns
    source = warehouse.output_table(f"{name}_embeddings")
    target = warehouse.output_table(table_name(name))
    with warehouse.connect() as con:
        for table in (f"{name}_embeddings", table_name(name)):
            if not warehouse.table_exists(con, f"{spec.output_schema}.{table}"):
                return None
        n, version = con.execute(f"select count(*), max(space_version) from {source}").fetchone()
        other = con.execute(
            f"select count(*) from {target} where space_version <> ?", [meta["space_version"]]
        ).fetchone()[0]
        if (version, other, meta.get("k")) != (meta["space_version"], 0, k) or n <= 2 * k:
            return None
        stale, changed = _differences(con, source, keys, key_file)
        if stale.num_rows == 0 and changed.num_rows == 0:
            return 0
        churn = meta["changed_since_build"] + changed.num_rows + stale.num_rows
        if (
            changed.num_rows + stale.num_rows > REBUILD_SHARE * n
            or churn > REBUILD_SHARE * meta["built_rows"]
            or (meta["exact"] and n > index_settings.EXACT_UP_TO)
        ):
            return None
        new_ids = np.arange(meta["ids"], meta["ids"] + changed.num_rows, dtype=np.int64)
        key_file = _next_key_file(key_file, stale, changed.select([*keys, FINGERPRINT]))
        if key_file is None:
            return None
        index = NeighbourIndex.load(path, writable=True)
        index.remove(stale.column("__id").to_numpy())
        vectors = vectors_of(changed)
        if len(vectors):
            index.add(vectors, new_ids)
        touched = pa.concat_tables([stale.select(keys), changed.select(keys)]).combine_chunks()
        con.register("__current", _live_ids(key_file, keys))
        try:
            affected = _affected(con, index, keys, source, target, k, vectors, new_ids, stale)
            written = _rewrite(
                con, warehouse, index, keys, source, name, k, affected, touched, key_file, version
            )
        finally:
            con.unregister("__current")
    meta.update(rows=index.n_rows, ids=meta["ids"] + changed.num_rows, changed_since_build=churn)
    save_index(index, key_file, meta, index_folder(spec.artifacts, name), keep)
    log.info(
        "space %s: neighbours found again for %d rows (%d embedded again or new, %d indexed "
        "rows stale)",
        name,
        len(affected),
        changed.num_rows,
        stale.num_rows,
    )
    return written


def _live_ids(key_file: pa.Table, keys: list[str]) -> pa.Table:
    """Keys and `__id` of the rows in the index."""
    ids = pa.array(np.arange(len(key_file), dtype=np.int64))
    return key_file.select(keys).append_column("__id", ids).filter(key_file.column(LIVE))


def _next_key_file(key_file: pa.Table, stale: pa.Table, added: pa.Table) -> pa.Table | None:
    """The keys file after the `stale` ids leave the index and the `added` rows (keys and
    fingerprint) join it under the next ids; None when their types no longer match (the
    table's key changed type: rebuilt whole)."""
    live = np.asarray(key_file.column(LIVE).to_numpy(zero_copy_only=False)).copy()
    live[stale.column("__id").to_numpy()] = False
    kept = key_file.drop_columns([LIVE])
    try:
        added = added.cast(kept.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        return None
    flags = pa.array(np.concatenate([live, np.ones(added.num_rows, bool)]))
    return pa.concat_tables([kept, added]).append_column(LIVE, flags)


def _differences(
    con: Connection, source: str, keys: list[str], key_file: pa.Table
) -> tuple[pa.Table, pa.Table]:
    """(stale, changed) of the embeddings table against the saved keys file: `stale` the
    indexed rows (`__id`, keys) that left the table or were embedded again; `changed` the
    table's rows (keys, fingerprint, embedding) that are not indexed as they are now."""
    ids = pa.array(np.arange(len(key_file), dtype=np.int64))
    con.register("__saved", key_file.append_column("__id", ids).filter(key_file.column(LIVE)))
    try:
        return _stale_and_changed(con, source, keys)
    finally:
        con.unregister("__saved")


def _stale_and_changed(con: Connection, source: str, keys: list[str]) -> tuple[pa.Table, pa.Table]:
    on = " and ".join(f"s.{quote(c)} = e.{quote(c)}" for c in keys)
    key_list = ", ".join(f"s.{quote(c)}" for c in keys)
    first = quote(keys[0])
    stale = fetch_arrow(
        con,
        f"select s.__id, {key_list} from __saved s left join {source} e on {on} "
        f"where e.{first} is null or e.{FINGERPRINT} is distinct from s.{FINGERPRINT} "
        "order by s.__id",
    )
    own = ", ".join(f"e.{quote(c)}" for c in keys)
    changed = fetch_arrow(
        con,
        f"select {own}, e.{FINGERPRINT}, e.embedding from {source} e left join __saved s "
        f"on {on} where s.__id is null or e.{FINGERPRINT} is distinct from s.{FINGERPRINT} "
        f"order by {own}",
    )
    return stale, changed


def _affected(
    con: Connection,
    index: NeighbourIndex,
    keys: list[str],
    source: str,
    target: str,
    k: int,
    vectors: np.ndarray,
    new_ids: np.ndarray,
    stale: pa.Table,
) -> np.ndarray:
    """Ids of the live rows (the registered `__current`) whose neighbour list must be found
    again (see the module)."""
    on_current = " and ".join(f"c.{quote(c)} = n.{quote(c)}" for c in keys)
    on_stale = " and ".join(f"t.{quote(c)} = n.{quote(neighbour_column(c))}" for c in keys)
    con.register("__stale", stale.select(keys))
    try:
        listed_stale = fetch_arrow(
            con,
            f"select distinct c.__id from {target} n join __stale t on {on_stale} "
            f"join __current c on {on_current}",
        ).column("__id")
    finally:
        con.unregister("__stale")
    most = min(k, index.n_rows - 1)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    if not len(unit):
        nearer = np.zeros(0, np.int64)
    elif index.exact:
        nearer = _nearer_by_scan(con, unit, keys, source, target, most)
    else:
        nearer = _nearer_by_candidates(con, index, keys, target, unit, new_ids, k, most)
    return np.unique(np.concatenate([new_ids, listed_stale.to_numpy(), nearer]))


def _nearer_by_scan(
    con: Connection, unit: np.ndarray, keys: list[str], source: str, target: str, most: int
) -> np.ndarray:
    """Ids of every listed row that a re-embedded row (`unit` vectors) comes nearer than its
    k-th neighbour, or that lists fewer than `most`: every row compared with every one."""
    on = " and ".join(f"e.{quote(c)} = c.{quote(c)}" for c in keys)
    on_current = " and ".join(f"c.{quote(c)} = n.{quote(c)}" for c in keys)
    lists = (  # per listed row: its id, its k-th similarity and how many it lists
        f"select c.__id, min(n.similarity) as kth, count(*) as listed from {target} n "
        f"join __current c on {on_current} group by c.__id"
    )
    reader = con.execute(
        f"select l.__id, l.kth, l.listed, e.embedding from ({lists}) l "
        f"join __current c on c.__id = l.__id join {source} e on {on}"
    ).to_arrow_reader(SCAN_BATCH_ROWS)
    found = [np.zeros(0, np.int64)]
    for batch in reader:
        rows = vectors_of(batch)
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
        best = (rows @ unit.T).max(axis=1)
        hit = (best > _column(batch, "kth")) | (_column(batch, "listed") < most)
        found.append(_column(batch, "__id")[hit].astype(np.int64))
    return np.concatenate(found)


def _nearer_by_candidates(
    con: Connection,
    index: NeighbourIndex,
    keys: list[str],
    target: str,
    unit: np.ndarray,
    new_ids: np.ndarray,
    k: int,
    most: int,
) -> np.ndarray:
    """Ids of the rows among each re-embedded row's CANDIDATES_PER_ROW x k nearest that it
    comes nearer than their k-th neighbour (or that list fewer than `most`); only the
    candidates' rows of the table are read."""
    similarities, found = index.nearest_others(unit, new_ids, CANDIDATES_PER_ROW * k)
    hit = found >= 0
    offered = pa.table({"__id": pa.array(found[hit]), "similarity": pa.array(similarities[hit])})
    own = ", ".join(f"c.{quote(c)}" for c in keys)
    on = " and ".join(f"n.{quote(c)} = f.{quote(c)}" for c in keys)
    con.register("__offered", offered)
    try:
        nearer = fetch_arrow(
            con,
            f"with offered as (select c.__id, {own}, max(o.similarity) as best from __offered o "
            f"join __current c on c.__id = o.__id group by c.__id, {own}) "
            f"select f.__id from offered f join {target} n on {on} group by f.__id, f.best "
            f"having f.best > min(n.similarity) or count(*) < {int(most)}",
        )
    finally:
        con.unregister("__offered")
    return nearer.column("__id").to_numpy().astype(np.int64)


def _column(batch: pa.RecordBatch, name: str) -> np.ndarray:
    return batch.column(name).to_numpy(zero_copy_only=False)


def _rewrite(
    con: Connection,
    warehouse: Warehouse,
    index: NeighbourIndex,
    keys: list[str],
    source: str,
    name: str,
    k: int,
    affected: np.ndarray,
    touched: pa.Table,
    key_file: pa.Table,
    version: str,
) -> int:
    """Find the `affected` rows' neighbours again and replace, in one transaction, the
    table's rows of those rows and of the `touched` keys (removed or embedded again)."""
    on = " and ".join(f"e.{quote(c)} = c.{quote(c)}" for c in keys)
    con.register("__affected", pa.table({"__id": pa.array(affected, pa.int64())}))
    try:
        rows = fetch_arrow(
            con,
            f"select c.__id, e.embedding from __affected a join __current c on c.__id = a.__id "
            f"join {source} e on {on} order by c.__id",
        )
    finally:
        con.unregister("__affected")
    ids = rows.column("__id").to_numpy()
    key_columns = key_file.select(keys)
    batches = []
    for start in range(0, len(ids), index_settings.BATCH_ROWS):
        part = rows.slice(start, index_settings.BATCH_ROWS)
        own = ids[start : start + part.num_rows]
        similarities, found = index.nearest_others(vectors_of(part), own, k)
        batches.append(neighbour_batch(key_columns, own, similarities, found, version))
    replaced = pa.concat_tables([key_columns.take(pa.array(ids)), touched]).combine_chunks()
    on_target = " and ".join(f"t.{quote(c)} = d.{quote(c)}" for c in keys)
    statements = [
        f"delete from {warehouse.output_table(table_name(name))} t using __replaced d "
        f"where {on_target}"
    ]
    views: dict[str, pa.Table] = {"__replaced": replaced}
    written = sum(b.num_rows for b in batches)
    if written:
        views["__incoming"] = pa.Table.from_batches(batches)
        statements.append(
            f"insert into {warehouse.output_table(table_name(name))} by name "
            "select * from __incoming"
        )
    warehouse.transaction(con, views, statements)
    return written
