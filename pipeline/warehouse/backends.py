"""Where the warehouse lives: a DuckDB file (the default), a DuckLake, or a PostgreSQL
database, all read and written through DuckDB.

`warehouse:` in the spec is a file path, or a DuckDB attach string:
`ducklake:postgres:dbname=lake host=...` (a DuckLake whose catalog is PostgreSQL; its data
are Parquet files under `warehouse_options.data_path`) or `postgres:dbname=shop host=...`
(a PostgreSQL database through DuckDB's postgres extension). `warehouse_options` go to
DuckDB's ATTACH as they are. The extensions come from their PyPI packages
(`duckdb-extension-<name>`, pinned with duckdb) and are installed from the wheel's file: no
download at run time.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.spec import ATTACH_STRING
from pipeline.warehouse.sql import literal, quote

FILE, DUCKLAKE, POSTGRES = "file", "ducklake", "postgres"
ATTACHED = "warehouse"
"""The name an attached warehouse has in DuckDB (`USE warehouse`): what
`current_database()` reads, and the dbt profile's `database`."""
EXTENSIONS = ("postgres", "ducklake")
"""DuckDB extensions an attached warehouse may need, each from `duckdb-extension-<name>`."""
_PREFIXES = {"ducklake:": DUCKLAKE, "postgres:": POSTGRES, "postgresql:": POSTGRES}
_OBJECT_STORES = ("s3://", "gs://", "gcs://", "az://", "azure://", "abfss://", "r2://", "http")


class WarehouseSettingError(PipelineError):
    """`warehouse:` or `warehouse_options` cannot be used: named in the message."""


@dataclass(frozen=True)
class Backend:
    """A warehouse location: its kind, the path or attach string, and ATTACH options."""

    kind: str
    location: str
    options: dict = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    @property
    def path(self) -> Path:
        """The DuckDB file (file backend only)."""
        assert self.is_file, "only a DuckDB file warehouse has a path"
        return Path(self.location)

    @property
    def fixed_arrays(self) -> bool:
        """Whether fixed-width arrays (FLOAT[64]) are stored as such; else as lists."""
        return self.is_file

    @property
    def maps(self) -> bool:
        """Whether MAP columns are stored as such; else as JSON objects."""
        return self.kind != POSTGRES

    @property
    def refresh_sql(self) -> str | None:
        """What a new connection runs to see schemas and tables other processes made since
        the instance attached (the postgres extension caches PostgreSQL's catalog; a lake's
        transactions read its latest snapshot anyway)."""
        return "select * from pg_clear_cache()" if self.kind == POSTGRES else None

    @property
    def extensions(self) -> list[str]:
        """DuckDB extensions ATTACH needs (in load order)."""
        if self.kind == POSTGRES:
            return ["postgres"]
        if self.kind == DUCKLAKE:
            catalog = self.location.removeprefix("ducklake:")
            return ["postgres", "ducklake"] if _kind_prefix(catalog) == POSTGRES else ["ducklake"]
        return []

    @property
    def display(self) -> str:
        """The location for messages, with any password hidden."""
        hidden = re.sub(r"(password\s*=\s*)(\S+)", r"\1***", self.location, flags=re.I)
        return re.sub(r"(://[^:/@]+:)([^@]+)@", r"\1***@", hidden)

    def attach_sql(self, read_only: bool) -> str:
        """ATTACH of this warehouse as `ATTACHED`, with its options."""
        options = {k: v for k, v in self.options.items() if v is not None}
        if read_only:
            options["read_only"] = True
        text = ", ".join(f"{k} {_option_value(v)}" for k, v in options.items())
        return f"attach {literal(self.location)} as {quote(ATTACHED)}" + (
            f" ({text})" if text else ""
        )

    def dbt_environment(self) -> dict[str, str]:
        """Environment variables that point `sql/profiles.yml` at this warehouse: its target
        (`dev`: a DuckDB file; `ducklake`, `postgres`: attached as `ATTACHED`) and location."""
        if self.is_file:
            return {"DBT_TARGET": "dev", "WAREHOUSE_PATH": self.location}
        environment = {"DBT_TARGET": self.kind, "WAREHOUSE_ATTACH": self.location}
        if self.kind == DUCKLAKE:
            environment["WAREHOUSE_DATA_PATH"] = str(self.options.get("data_path", ""))
        return environment

    def check_settings(self) -> None:
        """Settings that can be checked without a server: a clear error naming them."""
        data_path = self.options.get("data_path")
        local = data_path is not None and not str(data_path).startswith(_OBJECT_STORES)
        if self.kind == DUCKLAKE and local and not Path(str(data_path)).is_dir():
            raise WarehouseSettingError(
                f"warehouse_options.data_path: folder {data_path} does not exist -> "
                "create it (mkdir -p) or point data_path at the lake's data folder"
            )


def _kind_prefix(location: str) -> str | None:
    lowered = location.lower()
    return next((kind for prefix, kind in _PREFIXES.items() if lowered.startswith(prefix)), None)


def backend_of(location: str | Path, options: dict | None = None) -> Backend:
    """The backend of a spec's `warehouse:` (a file path or an attach string)."""
    options = dict(options or {})
    if isinstance(location, Path):
        kind = None
    else:
        kind = _kind_prefix(location)
        if kind is None and ATTACH_STRING.match(location):
            scheme = location.split(":", 1)[0]
            raise WarehouseSettingError(
                f"warehouse: '{scheme}:' is not a warehouse this project can use -> "
                "give a DuckDB file path, 'ducklake:postgres:dbname=... host=...' or "
                "'postgres:dbname=... host=...'"
            )
    if kind is None:
        if options:
            raise WarehouseSettingError(
                f"warehouse_options ({', '.join(options)}) apply to an attached warehouse "
                "(ducklake: or postgres:), not to a DuckDB file -> remove them"
            )
        return Backend(FILE, str(location))
    return Backend(kind, str(location), {str(k).lower(): v for k, v in options.items()})


def _option_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return literal(str(value))


def extension_file(name: str, duckdb_version: str) -> Path | None:
    """The extension's file inside its PyPI package `duckdb-extension-<name>`, if installed."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = folder / "extensions" / f"v{duckdb_version}" / f"{name}.duckdb_extension"
    return found if found.exists() else None


CONFLICT_RETRIES = 8
"""Times a write that conflicted with another writer's is run again (attached warehouses)."""


def is_conflict(message: str) -> bool:
    """Whether an error (its message) says another writer's commit made this one fail: worth
    running the transaction again."""
    text = message.lower()
    return any(
        sign in text
        for sign in ("conflict", "could not serialize", "failed to commit ducklake transaction")
    )


def stored_select(source: str, types: list[tuple[str, str]], backend: Backend) -> str:
    """`select` of `source` with its columns in types the backend stores: fixed-width arrays
    as lists (DuckLake and PostgreSQL have no FLOAT[64]), maps as JSON objects (PostgreSQL has
    no MAP; `x::json ->> 'key'` reads either)."""
    replaced = []
    for column, dtype in types:
        fixed = re.fullmatch(r"(.+)\[\d+\]", dtype)
        if fixed and not backend.fixed_arrays:
            replaced.append(f"{quote(column)}::{fixed.group(1)}[] as {quote(column)}")
        elif dtype.startswith("MAP(") and not backend.maps:
            replaced.append(f"to_json({quote(column)}) as {quote(column)}")
    replace = f" replace ({', '.join(replaced)})" if replaced else ""
    return f"select *{replace} from {quote(source)}"
