"""The YAML spec (spaces.yaml): pydantic models, loading, and the structural checks.

Checks that need the data (keys unique, columns exist, key types) live in `validation`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipeline.encoders import JUNK_TYPES, type_names
from pipeline.errors import SpecError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """What the user says about one column; everything left out is auto-detected."""

    type: str | None = None
    """One of `pipeline.encoders.type_names()` or `id`; checked in `check_structure`."""
    target: bool = False
    active: bool = True
    model: Literal["auto", "gbdt", "gbdt_aggregates", "gbdt_blend", "mlp", "fine_tune"] = "auto"
    """For a target: which predictor to keep; `auto` cross-fits every candidate and keeps the
    best out-of-fold score. `gbdt`: LightGBM on the columns, the child statistics and the
    embedding's principal axes; `gbdt_aggregates`: the same without the embedding;
    `gbdt_blend`: the mean of those two; `mlp`: a network on the embedding; `fine_tune`: the
    space's own model trained on the target."""
    fine_tune: bool | None = None
    """Whether `auto` tries fine-tuning the space on the target: unset, only when the MLP on
    the frozen embedding came within 1% of the best candidate and the cost model says it
    takes under 40 s; true, always; false, never."""


class ChildSpec(_Strict):
    """A 1:N child table aggregated into its parent with attention pooling."""

    space: str
    foreign_key: str | list[str]
    max_length: int = Field(default=64, ge=1, le=4096)
    order_by: str | None = None
    cardinality: Literal["1:N", "1:1"] = "1:N"
    """Declared rows per parent; a declared 1:1 that turns out 1:N stops training."""

    @property
    def foreign_key_columns(self) -> list[str]:
        return [self.foreign_key] if isinstance(self.foreign_key, str) else list(self.foreign_key)


class ReferenceSpec(_Strict):
    """An N:1 reference: the referenced row's embedding becomes a column of this space."""

    space: str
    foreign_key: str | list[str]
    cardinality: Literal["N:1", "1:1"] = "N:1"
    """Declared rows of this space per referenced row; a declared 1:1 that is N:1 is an error."""

    @property
    def foreign_key_columns(self) -> list[str]:
        return [self.foreign_key] if isinstance(self.foreign_key, str) else list(self.foreign_key)


class TrainingSpec(_Strict):
    """Optional overrides of the zero-configuration choices (all derived from the data if unset)."""

    d_model: int | None = Field(default=None, ge=8, le=1024)
    embedding_dim: int | None = Field(default=None, ge=4, le=1024)
    steps: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=4)
    learning_rate: float | None = Field(default=None, gt=0)
    predictor_epochs: int | None = Field(default=None, ge=1)
    accept_unhealthy: bool = False
    """Keep a space whose training still collapses or diverges after the corrective retry
    (by default it is not saved and its step fails with the diagnosis)."""
    time_budget_s: float | None = Field(default=None, gt=0)
    """Seconds a space's training should take on the reference machine (2 cores), turned into
    a step count by a cost model, so runs stay reproducible; unset: 15 s + 0.3 s per 1,000
    rows, at most 30 s."""


class SpaceSpec(_Strict):
    """One table and how it is embedded."""

    table: str
    key: str | list[str]
    columns: dict[str, ColumnSpec] = Field(default_factory=dict)
    children: list[ChildSpec] = Field(default_factory=list)
    references: list[ReferenceSpec] = Field(default_factory=list)
    as_of: str | None = None
    time_column: str | None = None
    neighbours: int | None = Field(default=None, ge=0, le=100)
    """How many nearest rows `ml.<space>_neighbours` keeps per row: unset, 10 for a space
    that no other space pools or references and whose key is one column (the entities
    people search) and none for the rest (pooled tables, and events or facts keyed by
    several columns: a similar line item is rarely asked for and costs a search per row);
    0, no neighbours table."""

    @field_validator("columns", mode="before")
    @classmethod
    def _empty_column_entries(cls, value: object) -> object:
        if isinstance(value, dict):
            return {name: ({} if spec is None else spec) for name, spec in value.items()}
        return value

    @property
    def key_columns(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    def column(self, name: str) -> ColumnSpec:
        return self.columns.get(name, ColumnSpec())

    @property
    def targets(self) -> list[str]:
        return [name for name, col in self.columns.items() if col.target]


class Spec(_Strict):
    """The whole spec. Relative paths are resolved against the spec file's folder."""

    warehouse: Path | str
    """A DuckDB file (a Path), or a DuckDB attach string such as `ducklake:postgres:...` or
    `postgres:...` (kept as written; see `pipeline.warehouse.backends`)."""
    warehouse_options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Options of an attached warehouse's ATTACH (e.g. DuckLake's `data_path`)."""
    output_schema: str = "ml"
    artifacts: Path = Path("artifacts")
    seed: int = 0
    min_join_coverage: float = Field(default=0.0, ge=0.0, le=1.0)
    """Child-side coverage below which a join stops training; by default only a join that no
    child row satisfies stops it (filtered parent views are common), lower coverage warns."""
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    partitions: int = Field(default=1, ge=1, le=1024)
    """Slices of every space's rows (by a hash of the key) that Dagster embeds and scores as
    partitions, side by side; 1: unpartitioned."""
    dbt_project: Path | None = None
    """The dbt project whose `ml` source and embedding macros follow this spec (written by
    `python -m pipeline dbt-sources` and every `run`); unset: a `sql` folder with a
    dbt_project.yml beside the spec file, if there is one."""
    keep_versions: int = Field(default=3, ge=1)
    """Model sets kept per space and predictor (the current one included), for roll-back."""
    spaces: dict[str, SpaceSpec]

    @field_validator("warehouse", mode="before")
    @classmethod
    def _path_or_attach(cls, value: object) -> object:
        if isinstance(value, str) and not ATTACH_STRING.match(value):
            return Path(value)
        return value

    @property
    def warehouse_is_file(self) -> bool:
        return isinstance(self.warehouse, Path)

    def training_order(self) -> list[str]:
        """Spaces bottom-up: every child and referenced space before the space that reads it."""
        order: list[str] = []
        done: set[str] = set()

        def visit(name: str) -> None:
            if name in done:
                return
            for dependency in self.dependencies(name):
                visit(dependency)
            done.add(name)
            order.append(name)

        for name in self.spaces:
            visit(name)
        return order

    def dependencies(self, name: str) -> list[str]:
        space = self.spaces[name]
        return [c.space for c in space.children] + [r.space for r in space.references]

    def parents_of(self, name: str) -> list[str]:
        return [p for p in self.spaces if name in self.dependencies(p)]

    def space_digest(self, name: str) -> str:
        """A hash of what shapes the space's model in the spec: its section (without
        `neighbours` and the targets' predictor settings), the training settings and the seed.
        A space whose saved digest differs is retrained by `run`."""
        section = self.spaces[name].model_dump(mode="json", exclude={"neighbours"})
        for column in section["columns"].values():
            column.pop("model"), column.pop("fine_tune")
        training = self.training.model_dump(mode="json", exclude={"predictor_epochs"})
        return _digest({"space": section, "training": training, "seed": self.seed})

    def target_digest(self, name: str, target: str) -> str:
        """A hash of the spec settings a predictor is trained with (see `space_digest`)."""
        column = self.spaces[name].column(target).model_dump(mode="json")
        epochs = self.training.predictor_epochs
        return _digest({"column": column, "epochs": epochs, "seed": self.seed})

    def neighbours(self, name: str) -> int:
        """Rows kept per row in `ml.<name>_neighbours` (0: no table)."""
        chosen = self.spaces[name].neighbours
        if chosen is not None:
            return chosen
        if self.parents_of(name) or len(self.spaces[name].key_columns) > 1:
            return 0
        return DEFAULT_NEIGHBOURS


DEFAULT_NEIGHBOURS = 10
ATTACH_STRING = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:(?![\\/])")
"""A `scheme:` prefix (not a Windows drive letter): the warehouse is an attach string."""


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


REMOVED_KEYS = {
    "p_mask": "delete it: masking is the complementary halves of every row, not a per-column rate",
    "p_prune": "delete it: columns are never pruned at random; `active: false` removes one",
    "embed": "delete it: rows are embedded per space (ml.<space>_embeddings), not per column",
}
"""Column keys accepted once and never read; a spec that still has them is told what to do."""


def _yaml_place(loc: tuple) -> str:
    place = ""
    for part in loc:
        place += f"[{part}]" if isinstance(part, int) else (f".{part}" if place else str(part))
    return place or "(top level)"


def parse_spec(data: dict, base_dir: Path | None = None) -> Spec:
    """Validate a spec given as a dict; raise SpecError naming the YAML place on any problem."""
    if not isinstance(data, dict):
        raise SpecError("(top level)", "the spec must be a mapping", "start from spaces.yaml")
    try:
        spec = Spec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        problem = first["msg"]
        fix = "see the spec section of the README"
        if first["type"] == "extra_forbidden":
            key = first["loc"][-1]
            problem = f"unknown key '{key}'"
            if key in REMOVED_KEYS:
                problem, fix = f"'{key}' is no longer a spec key", REMOVED_KEYS[key]
        raise SpecError(_yaml_place(first["loc"]), problem, fix) from None
    if base_dir is not None:
        updates = {}
        if spec.warehouse_is_file and not spec.warehouse.is_absolute():
            updates["warehouse"] = (base_dir / spec.warehouse).resolve()
        if not spec.artifacts.is_absolute():
            updates["artifacts"] = (base_dir / spec.artifacts).resolve()
        if spec.dbt_project is not None and not spec.dbt_project.is_absolute():
            updates["dbt_project"] = (base_dir / spec.dbt_project).resolve()
        elif spec.dbt_project is None and (base_dir / "sql" / "dbt_project.yml").exists():
            updates["dbt_project"] = (base_dir / "sql").resolve()
        spec = spec.model_copy(update=updates)
    check_structure(spec)
    return spec


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spaces.yaml file."""
    path = Path(path)
    if not path.exists():
        raise SpecError(str(path), "file not found", "pass --spec with the path to spaces.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(str(path), f"not valid YAML ({error})", "fix the YAML syntax") from None
    return parse_spec(data, base_dir=path.parent.resolve())


def check_structure(spec: Spec) -> None:
    """Checks that need no data: names exist, roles are consistent, no cycles."""
    if not spec.spaces:
        raise SpecError("spaces", "no space is defined", "name at least one table under spaces:")
    if not spec.output_schema.isidentifier():
        raise SpecError(
            "output_schema", f"'{spec.output_schema}' is not a plain identifier", "use e.g. ml"
        )
    for name, space in spec.spaces.items():
        place = f"spaces.{name}"
        if not name.isidentifier():
            raise SpecError(place, "a space name must be a plain identifier (letters, digits, _)")
        for i, child in enumerate(space.children):
            if child.space not in spec.spaces:
                raise SpecError(
                    f"{place}.children[{i}].space",
                    f"unknown space '{child.space}'",
                    f"define it under spaces: (known: {', '.join(spec.spaces)})",
                )
        for i, ref in enumerate(space.references):
            if ref.space not in spec.spaces:
                raise SpecError(
                    f"{place}.references[{i}].space",
                    f"unknown space '{ref.space}'",
                    f"define it under spaces: (known: {', '.join(spec.spaces)})",
                )
            n_parent_key = len(spec.spaces[ref.space].key_columns)
            if len(ref.foreign_key_columns) != n_parent_key:
                raise SpecError(
                    f"{place}.references[{i}].foreign_key",
                    f"{len(ref.foreign_key_columns)} column(s) for a key of {n_parent_key}",
                    "name one foreign key column per key column of the referenced space",
                )
        for i, child in enumerate(space.children):
            if len(child.foreign_key_columns) != len(space.key_columns):
                raise SpecError(
                    f"{place}.children[{i}].foreign_key",
                    f"{len(child.foreign_key_columns)} column(s) for a key of "
                    f"{len(space.key_columns)}",
                    "name one foreign key column per key column of this space",
                )
        if space.as_of:
            for i, child in enumerate(space.children):
                if not spec.spaces[child.space].time_column:
                    raise SpecError(
                        f"{place}.children[{i}]",
                        f"as_of is set but child space '{child.space}' has no time_column",
                        f"add time_column to spaces.{child.space} so rows after as_of are left out",
                    )
        for column, col in space.columns.items():
            known_types = (*type_names(), *JUNK_TYPES)
            if col.type is not None and col.type not in known_types:
                raise SpecError(
                    f"{place}.columns.{column}.type",
                    f"unknown type '{col.type}'",
                    f"use one of {', '.join(known_types)}, or leave it out to detect it",
                )
            if column in space.key_columns and (col.target or col.type):
                raise SpecError(
                    f"{place}.columns.{column}", "the key cannot be a target or typed input"
                )
            if col.target and not col.active:
                raise SpecError(
                    f"{place}.columns.{column}",
                    "a target cannot be inactive",
                    "drop 'active: false' or 'target: true'",
                )
            if col.fine_tune is not None and not col.target:
                raise SpecError(
                    f"{place}.columns.{column}.fine_tune",
                    "fine_tune is for target columns",
                    "add 'target: true' or drop fine_tune",
                )
            if col.fine_tune is False and col.model == "fine_tune":
                raise SpecError(
                    f"{place}.columns.{column}",
                    "model: fine_tune with fine_tune: false",
                    "drop one of the two",
                )
            if col.fine_tune and col.model not in ("auto", "fine_tune"):
                raise SpecError(
                    f"{place}.columns.{column}",
                    f"fine_tune: true with model: {col.model} (only {col.model} is tried)",
                    "drop fine_tune, or set model: auto to try both",
                )
    _check_cycles(spec)


def _check_cycles(spec: Spec) -> None:
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name) :] + [name]
            raise SpecError(
                f"spaces.{path[-1]}",
                f"children/references form a cycle: {' -> '.join(cycle)}",
                "a table cannot be its own ancestor; remove one of these links",
            )
        state[name] = "visiting"
        for dependency in spec.dependencies(name):
            visit(dependency, path + [name])
        state[name] = "done"

    for name in spec.spaces:
        visit(name, [])
