"""`python -m pipeline init`: read a warehouse's catalog and data and write a spec that `run`
accepts unchanged: keys, relations with their coverage, time columns, and comments on what
was left out and what a person should look at."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.discovery.catalog import Table, read_catalog
from pipeline.discovery.columns import child_counts, leakage_suspects, max_length, time_column
from pipeline.discovery.keys import FoundKey, find_key
from pipeline.discovery.layout import Layout, choose_root, lay_out
from pipeline.discovery.relations import Relation, find_relations
from pipeline.discovery.spec_text import SpaceDraft, flow, scalar, spec_text
from pipeline.errors import PipelineError
from pipeline.spec import Spec, parse_spec
from pipeline.understanding.profiling import ColumnProfile, profile_space
from pipeline.warehouse.connection import Connection, Warehouse

log = logging.getLogger(__name__)


class InitError(PipelineError):
    """The warehouse cannot be described as asked; nothing was written."""


@dataclass
class Draft:
    """A drafted spec: its text, the parsed spec, and what was found on the way."""

    text: str
    spec: Spec
    relations: list[Relation]
    layout: Layout


def draft_spec(
    warehouse: str | Path,
    target: str | None = None,
    schemas: list[str] | None = None,
    exclude: list[str] | None = None,
    options: dict | None = None,
    output_schema: str = "ml",
    spec_folder: Path | None = None,
    dbt_project: Path | None = None,
) -> Draft:
    """Describe `warehouse` as a spec (`target`: `table.column`, or `schema.table.column`).
    `spec_folder` is where the spec will live: a file warehouse and `dbt_project` (a dbt
    project that `run` keeps following the spec) are written relative to it."""
    if dbt_project is not None and not (dbt_project / "dbt_project.yml").exists():
        raise InitError(f"--dbt-project {dbt_project}: no dbt_project.yml there")
    store = Warehouse(warehouse, output_schema, options=options)
    if store.backend.is_file and not store.path.exists():
        raise InitError(f"warehouse file {store.path} does not exist -> check --warehouse")
    with store.connect(read_only=store.backend.is_file) as con:
        tables, declared = read_catalog(con, schemas, {output_schema})
        tables = _without(tables, exclude or [])
        if not tables:
            looked = f"schemas {', '.join(schemas)}" if schemas else "any schema"
            raise InitError(
                f"warehouse {store} has no table in {looked} (the output schema "
                f"{output_schema} is not looked at) -> load your tables first, or pass --schema"
            )
        root, target_column = _target(tables, target)
        notes = [f"{t.address}: no rows" for t in tables if t.rows == 0 and t.address != root]
        tables = [t for t in tables if t.rows > 0 or t.address == root]
        found_keys = _keys(con, tables)
        keys = {address: found.columns for address, found in found_keys.items()}
        declared = [d for d in declared if d.table in keys and d.referenced in keys]
        relations, found_notes = find_relations(con, tables, keys, declared)
        notes += found_notes
        root = root or choose_root(tables, relations)
        settings = _settings(store, warehouse, options, output_schema, spec_folder)
        if dbt_project is not None:
            settings.append(("dbt_project", scalar(_relative(dbt_project, spec_folder))))
        empty: dict[str, str] = {}
        while True:  # a space with nothing to read is left out, and its parent looked at again
            kept = [t for t in tables if t.address not in empty]
            usable = [r for r in relations if r.table not in empty and r.referenced not in empty]
            layout = lay_out(kept, usable, root)
            layout.left_out += [f"{address}: {why}" for address, why in empty.items()]
            drafts = _spaces(con, tables, found_keys, layout, target_column)
            header = _header(store, tables, relations, layout, notes)
            text = spec_text(header, settings, drafts)
            spec = parse_spec(yaml.safe_load(text), base_dir=spec_folder or Path.cwd())
            profiles = {d.name: profile_space(con, spec, d.name) for d in drafts}
            newly = _nothing_to_read(spec, drafts, profiles)
            if not newly:
                break
            if root in newly:
                raise InitError(f"table {root}: {newly[root]} -> it cannot be the root")
            empty.update(newly)
        text = _with_profiles(drafts, profiles, header, settings)
    spec = parse_spec(yaml.safe_load(text), base_dir=spec_folder or Path.cwd())
    return Draft(text, spec, relations, layout)


def write_spec_file(draft: Draft, out: Path, force: bool = False) -> Path | None:
    """Write the drafted spec to `out` (atomically). An existing file is replaced only with
    `force`, and kept beside it as `<name>.bak`; returns that backup's path, if any."""
    backup = None
    if out.exists():
        if not force:
            raise InitError(f"{out} exists -> pass --force to replace it (it is kept as .bak)")
        backup = out.with_name(out.name + ".bak")
        backup.write_bytes(out.read_bytes())
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    partial.write_text(draft.text)
    os.replace(partial, out)
    return backup


def _without(tables: list[Table], exclude: list[str]) -> list[Table]:
    unknown = [e for e in exclude if not any(e in (t.name, t.address) for t in tables)]
    if unknown:
        raise InitError(
            f"--exclude {', '.join(unknown)}: no such table (known: "
            f"{', '.join(t.address for t in tables)})"
        )
    return [t for t in tables if not any(e in (t.name, t.address) for e in exclude)]


def _target(tables: list[Table], target: str | None) -> tuple[str | None, str | None]:
    """(root address, target column) of `--target`, checked against the catalog."""
    if target is None:
        return None, None
    table_name, _, column = target.rpartition(".")
    found = [t for t in tables if table_name in (t.name, t.address)]
    if not table_name or not column:
        raise InitError(f"--target {target}: write it as TABLE.COLUMN (e.g. customers.churned)")
    if not found:
        raise InitError(
            f"--target {target}: no table {table_name} in the warehouse (known: "
            f"{', '.join(t.address for t in tables)})"
        )
    if len(found) > 1:
        raise InitError(
            f"--target {target}: {table_name} is in several schemas "
            f"({', '.join(t.address for t in found)}) -> write it as schema.table.column"
        )
    if column not in found[0].columns:
        raise InitError(
            f"--target {target}: {found[0].address} has no column {column} (its columns: "
            f"{', '.join(found[0].columns)})"
        )
    return found[0].address, column


def _keys(con: Connection, tables: list[Table]) -> dict[str, FoundKey]:
    keys: dict[str, FoundKey] = {}
    for table in tables:
        found = find_key(con, table)
        if found is None and table.rows == 0:
            raise InitError(f"--target: table {table.address} has no rows")
        if found is None:
            raise InitError(
                f"table {table.address} has no usable key: no column, nor up to 3 columns "
                f"together, is unique and not null over its {table.rows:,} rows -> give it a "
                f"key column (e.g. a dbt model adding row_number()), or leave it out with "
                f"--exclude {table.name}"
            )
        keys[table.address] = found
    return keys


def _spaces(
    con: Connection,
    tables: list[Table],
    keys: dict[str, FoundKey],
    layout: Layout,
    target: str | None,
) -> list[SpaceDraft]:
    by_address = {t.address: t for t in tables}
    drafts = []
    for address, name in layout.spaces.items():
        table = by_address[address]
        key = keys[address]
        draft = SpaceDraft(name, address, key.columns, key.how, spec_table=_spec_table(table))
        pointing_columns = {
            c
            for link in layout.links
            if link.relation.table == address
            for c in link.relation.columns
        }
        structure = set(key.columns) | pointing_columns
        when = time_column(table, pointing_columns)
        if address == layout.root:
            pointing = sum(1 for link in layout.links if link.relation.referenced == address)
            draft.note = f"the root: {pointing} table(s) point at it"
            draft.root_time = when
        else:
            draft.time_column = when
        if address == layout.root and target:
            draft.note = f"the root: --target {table.name}.{target}"
            draft.columns.append((target, {"target": True}, "never an input; predicted"))
            suspects = leakage_suspects(con, table, target, key.columns, structure)
            for column, why in suspects.items():
                draft.commented_columns.append(
                    (column, {"active": False}, f"leakage suspect: {why}")
                )
        for link in layout.links:
            relation = link.relation
            foreign_key = _one_or_list(relation.columns)
            if link.kind == "child" and relation.referenced == address:
                child = by_address[relation.table]
                counts = child_counts(con, child, list(relation.columns))
                entry = {"space": layout.spaces[relation.table], "foreign_key": foreign_key}
                entry["max_length"] = max_length(counts)
                child_time = time_column(child, set(relation.columns))
                if child_time:
                    entry["order_by"] = child_time
                spread = (
                    f"; up to {counts.most:,} rows per {name} row, {counts.mean:.1f} on average"
                    if counts
                    else ""
                )
                draft.children.append((entry, _coverage(relation) + spread))
            elif link.kind == "reference" and relation.table == address:
                entry = {"space": layout.spaces[relation.referenced], "foreign_key": foreign_key}
                draft.references.append((entry, _coverage(relation)))
        drafts.append(draft)
    return drafts


def _spec_table(table: Table) -> str:
    """`schema.table` as the spec's `table:` reads it: a part holding a dot or a quote is
    double-quoted (`main."orders.2024"`)."""

    def part(name: str) -> str:
        if "." in name or '"' in name:
            return '"' + name.replace('"', '""') + '"'
        return name

    return f"{part(table.schema)}.{part(table.name)}"


def _one_or_list(columns: tuple[str, ...]) -> str | list[str]:
    return columns[0] if len(columns) == 1 else list(columns)


def _coverage(relation: Relation) -> str:
    if relation.coverage is None:
        return "declared foreign key"
    return f"{relation.coverage:.0%} of sampled values found ({relation.how})"


def _settings(
    store: Warehouse,
    warehouse: str | Path,
    options: dict | None,
    output_schema: str,
    spec_folder: Path | None,
) -> list[tuple[str, str]]:
    location = _relative(store.path, spec_folder) if store.backend.is_file else str(warehouse)
    settings = [("warehouse", scalar(location))]
    if options:
        settings.append(("warehouse_options", flow(options)))
    settings += [("output_schema", output_schema), ("artifacts", "artifacts"), ("seed", "0")]
    return settings


def _relative(path: Path, spec_folder: Path | None) -> str:
    return os.path.relpath(path.resolve(), (spec_folder or Path.cwd()).resolve())


def _header(
    store: Warehouse,
    tables: list[Table],
    relations: list[Relation],
    layout: Layout,
    notes: list[str],
) -> list[str]:
    declared = sum(1 for r in relations if r.coverage is None)
    lines = [
        f"Written by `python -m pipeline init` from {store.name}: {len(tables)} table(s), "
        f"{len(relations)} relation(s) ({declared} declared, {len(relations) - declared} "
        "found by name and checked in the data).",
        "Read the comments, then run: python -m pipeline run --spec <this file>",
    ]
    left = layout.left_out + notes
    if left:
        lines += ["", "Left out:"] + [f"  - {line}" for line in left]
    return lines + [""]


def _nothing_to_read(
    spec: Spec, drafts: list[SpaceDraft], profiles: dict[str, list[ColumnProfile]]
) -> dict[str, str]:
    """Address -> why, for spaces that would have no input column, child set or reference."""
    empty = {}
    for draft in drafts:
        space = spec.spaces[draft.name]
        if space.children or space.references or any(p.is_input for p in profiles[draft.name]):
            continue
        reasons = [f"{p.column} ({p.reason})" for p in profiles[draft.name] if p.role == "input"]
        empty[draft.table] = (
            "no column the model can read"
            + (f": {', '.join(reasons)}" if reasons else "")
            + ", and no child or reference"
        )
    return empty


def _with_profiles(
    drafts: list[SpaceDraft],
    profiles: dict[str, list[ColumnProfile]],
    header: list[str],
    settings: list[tuple[str, str]],
) -> str:
    """The text again, with what profiling will leave out of each space (and why) as comments:
    `run` profiles the same way, so nothing here is a surprise there."""
    for draft in drafts:
        inputs = [p for p in profiles[draft.name] if p.role in ("input", "target")]
        kinds: dict[str, int] = {}
        for profile in inputs:
            if not profile.excluded:
                kinds[profile.detected_type] = kinds.get(profile.detected_type, 0) + 1
        summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        draft.notes.append(f"inputs detected: {summary or 'none'}")
        for profile in inputs:
            if profile.excluded:
                draft.notes.append(f"{profile.column}: left out at run time ({profile.reason})")
    return spec_text(header, settings, drafts)
