"""`Space`: a trained embedding space for one table: codecs + model + training record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipeline.encoders import codec_from_state, stale_text_codecs
from pipeline.encoders.base import Codec
from pipeline.encoders.text_vectors import MODEL_NAME
from pipeline.errors import DataError, PipelineError
from pipeline.spaces.child_features import ChildStatistics
from pipeline.spaces.hierarchy import link_name, read_versions
from pipeline.spaces.inputs import SpaceInputs
from pipeline.spaces.model import SpaceModel, gather, token_specs
from pipeline.spaces.projection import fit_projection
from pipeline.spaces.reads import read_space_inputs, sample_rows
from pipeline.spaces.training import TrainingResult, train_space
from pipeline.spaces.training_plan import space_budget
from pipeline.spaces.upkeep import fingerprint, profile_summary
from pipeline.spec import Spec
from pipeline.store import model_store
from pipeline.store.artifacts import json_bytes, load_json, load_weights, short_hash, weights_bytes
from pipeline.understanding.profiling import ColumnProfile
from pipeline.warehouse.connection import Connection, Warehouse, table_columns
from pipeline.warehouse.sql import qualified, quote

EMBED_BATCH = 1024
TRAINING_ROWS = 100_000
"""Rows a space trains on at most: a larger table trains on a sample (memory stays bounded:
about 7 KB a row with a child set and child statistics, 1.9 GB peak for 150k TPC-H orders; a
space's training budget sees fewer rows than that anyway)."""
PROJECTION_ROWS = 4096
"""Rows whose embeddings fit the 3-d projection."""


@dataclass
class TrainingData:
    """What a space trains on, read from the warehouse before training starts."""

    inputs: SpaceInputs
    read_versions: dict[str, str]
    table_columns: list[str]
    fingerprint: str
    budget_s: float | None = None
    """The space's share of the run's training time (`training_plan.space_budget`)."""
    trained_on: dict = field(default_factory=dict)


@dataclass
class Space:
    """One table's embedding space."""

    name: str
    model: SpaceModel
    codecs: dict[str, Codec]
    version: str = ""
    training: TrainingResult | None = None
    table_columns: list[str] = field(default_factory=list)
    """Every column of the table when the space was trained (to report schema drift)."""
    statistics: ChildStatistics | None = None
    """The child statistics plan and normalisation (None when the table has no children)."""
    read_versions: dict[str, str] = field(default_factory=dict)
    """Version of every child and referenced space whose embeddings it was trained on."""
    data_fingerprint: str = ""
    """Hash of the column profile the codecs were fitted on (rows, types, nulls, distinct)."""
    spec_digest: str = ""
    """`Spec.space_digest` when it was trained: `run` retrains a space whose spec changed."""
    trained_on: dict = field(default_factory=dict)
    """The rows and each input column's type and null share at training
    (`upkeep.profile_summary`): `run` retrains a space whose inputs drifted from it."""
    folder: Path | None = None
    """The model set it was saved to or loaded from."""
    projection: np.ndarray | None = None
    """[4, dim]: the mean embedding, then the three principal axes of the training rows'
    embeddings; `embedding_3d` is a row's embedding projected on them (PCA, fitted once)."""

    @classmethod
    def read_training_data(
        cls,
        warehouse: Warehouse,
        con: Connection,
        spec: Spec,
        name: str,
        profiles: list[ColumnProfile],
    ) -> TrainingData:
        """Everything training reads from the warehouse, read at once so the connection can
        be closed while the model trains: every row, or a sample of `TRAINING_ROWS` of a
        larger table (the same rows for the same data and seed)."""
        read = read_versions(warehouse, con, spec, name)
        as_of = embed_children_as_of(warehouse, con, spec, name)
        rows = {
            space: con.execute(f"select count(*) from {qualified(s.table)}").fetchone()[0]
            for space, s in spec.spaces.items()
        }
        sample = None
        if rows[name] > TRAINING_ROWS:
            sample = sample_rows(con, spec, name, TRAINING_ROWS, spec.seed)
        inputs = read_space_inputs(
            warehouse, con, spec, name, profiles=profiles, child_embeddings=as_of, only=sample
        )
        if not token_specs(inputs):
            excluded = ", ".join(f"{p.column} ({p.reason})" for p in profiles if p.excluded)
            raise DataError(
                f"space {name}: no usable input column, child set or reference "
                f"(excluded: {excluded or 'none'}) -> add columns, children or references, "
                f"or override a type under spaces.{name}.columns"
            )
        if inputs.n_rows < 2:
            raise DataError(
                f"space {name}: {spec.spaces[name].table} has {inputs.n_rows} row(s);"
                " at least 2 are needed to train"
            )
        roots = {space for space in spec.spaces if not spec.parents_of(space)}
        return TrainingData(
            inputs,
            read,
            list(table_columns(con, spec.spaces[name].table)),
            fingerprint(profiles, rows[name]),
            space_budget(rows, roots, name),
            profile_summary(profiles, rows[name]),
        )

    @classmethod
    def train(cls, spec: Spec, name: str, data: TrainingData, progress: bool = True) -> Space:
        """Fit the model on the rows read (codecs are fitted on reading)."""
        inputs = data.inputs
        model, result = train_space(
            inputs, spec.training, spec.seed, progress=progress, budget_s=data.budget_s
        )
        space = cls(
            name,
            model,
            {c.name: c.codec for c in inputs.columns},
            training=result,
            table_columns=data.table_columns,
            statistics=inputs.statistics,
            read_versions=data.read_versions,
            data_fingerprint=data.fingerprint,
            spec_digest=spec.space_digest(name),
            trained_on=data.trained_on,
        )
        sample = np.random.default_rng(spec.seed).permutation(inputs.n_rows)[:PROJECTION_ROWS]
        space.projection = fit_projection(space.embed(inputs, rows=np.sort(sample)))
        return space

    def read_inputs(
        self,
        warehouse: Warehouse,
        con: Connection,
        spec: Spec,
        only: str | None = None,
        tokens: bool = True,
    ) -> SpaceInputs:
        """Current rows of the table (or those whose key is in the table `only`) through the
        saved codecs (no refitting). Refuses when a child or referenced space was retrained
        since this one was trained on its embeddings. `tokens=False`: only what a model
        beside the stored embedding reads (see `read_space_inputs`)."""
        self.check_read_versions(read_versions(warehouse, con, spec, self.name))
        inputs = read_space_inputs(
            warehouse,
            con,
            spec,
            self.name,
            codecs=self.codecs,
            statistics=self.statistics,
            child_embeddings=embed_children_as_of(warehouse, con, spec, self.name)
            if tokens
            else None,
            only=only,
            tokens=tokens,
        )
        if self.table_columns:
            current = table_columns(con, spec.spaces[self.name].table)
            inputs.new_columns = [c for c in current if c not in self.table_columns]
        if not tokens:
            return inputs
        expected = [t.name for t in self.model.tokens]
        found = [t.name for t in token_specs(inputs)]
        if found != expected:
            raise PipelineError(
                f"space {self.name}: the model was trained on tokens {expected} but the spec "
                f"now gives {found} -> retrain the space (python -m pipeline train)"
            )
        return inputs

    @torch.no_grad()
    def embed(
        self,
        inputs: SpaceInputs,
        hidden_token: int | None = None,
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """Embeddings [n, dim] of all rows (or `rows`); `hidden_token` masks one token."""
        self.model.eval()
        selected = torch.arange(inputs.n_rows) if rows is None else torch.as_tensor(rows)
        out = []
        for start in range(0, len(selected), EMBED_BATCH):
            batch_rows = selected[start : start + EMBED_BATCH]
            content, present, flat = self.model.encode_tokens(gather(inputs, batch_rows))
            hidden = None
            if hidden_token is not None:
                hidden = torch.zeros_like(present)
                hidden[:, hidden_token] = True
            out.append(self.model.embed_tokens(content, present, hidden, flat).numpy())
        dim = self.model.config["embedding_dim"]
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    def embeddings_table(self, inputs: SpaceInputs, embeddings: np.ndarray) -> pa.Table:
        """`ml.<space>_embeddings` rows: key, embedding, embedding_3d, version, time."""
        dim = embeddings.shape[1]
        if self.projection is None:  # a space saved before projections were fitted
            self.projection = fit_projection(embeddings)
        three = (embeddings - self.projection[0]) @ self.projection[1:].T
        three /= np.maximum(np.linalg.norm(three, axis=1, keepdims=True), 1e-12)
        n = len(embeddings)
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        columns = {name: inputs.keys.column(name) for name in inputs.keys.column_names}
        columns.update(
            embedding=pa.FixedSizeListArray.from_arrays(
                pa.array(embeddings.astype(np.float32).reshape(-1), pa.float32()), dim
            ),
            embedding_3d=pa.FixedSizeListArray.from_arrays(
                pa.array(three.astype(np.float32).reshape(-1), pa.float32()), 3
            ),
            space_version=pa.array([self.version] * n, pa.string()),
            embedded_at=pa.array([now] * n, pa.timestamp("us")),
        )
        return pa.table(columns)

    def check_read_versions(self, found: dict[str, str]) -> None:
        stale = {
            space: (version, found.get(space))
            for space, version in self.read_versions.items()
            if found.get(space) != version
        }
        if stale:
            changes = "; ".join(
                f"{space}: trained on version {old}, its embeddings are now version {new}"
                for space, (old, new) in stale.items()
            )
            raise PipelineError(
                f"space {self.name} is stale: it pools embeddings of other spaces that changed "
                f"since it was trained ({changes}) -> retrain it: python -m pipeline train "
                f"--space {self.name} (python -m pipeline run retrains every space in order)"
            )

    def save(self, folder: Path, keep: int = model_store.KEEP_VERSIONS) -> str:
        """Write weights, codecs and record as one model set (made current atomically); sets
        and returns the version (weights hash)."""
        weights = weights_bytes(self.model)
        self.version = short_hash(weights)
        description = {
            "name": self.name,
            "version": self.version,
            "model": self.model.description(),
            "codecs": {name: codec.state() for name, codec in self.codecs.items()},
            "training": self.training.summary() if self.training else None,
            "table_columns": self.table_columns,
            "statistics": self.statistics.state() if self.statistics else None,
            "read_versions": self.read_versions,
            "data_fingerprint": self.data_fingerprint,
            "spec_digest": self.spec_digest,
            "trained_on": self.trained_on,
            "projection": None if self.projection is None else self.projection.tolist(),
        }
        files = {"space.safetensors": weights, "space.json": json_bytes(description)}
        if self.training:
            files["timeline.json"] = json_bytes({"timeline": self.training.timeline})
        self.folder = model_store.write_set(folder, files, self.version, keep)
        return self.version

    @classmethod
    def load(cls, folder: Path) -> Space:
        """The current model set in `folder`, checked whole against its manifest."""
        path = model_store.current_set(folder, f"space {folder.name}")
        description = load_json(path / "space.json")
        model = SpaceModel.from_description(description["model"])
        load_weights(model, path / "space.safetensors")
        model.eval()
        if short_hash((path / "space.safetensors").read_bytes()) != description["version"]:
            raise PipelineError(
                f"space {folder.name}: the weights in {path} are not version "
                f"{description['version']} -> retrain the space"
            )
        stale = stale_text_codecs(description["codecs"])
        if stale:
            used = ", ".join(f"{column} ({model})" for column, model in stale.items())
            raise PipelineError(
                f"space {folder.name}: its text was embedded with another text encoder than "
                f"this version's {MODEL_NAME}: {used} -> retrain it: python -m pipeline train "
                f"--space {folder.name} (python -m pipeline run retrains every space in order)"
            )
        codecs = {name: codec_from_state(s) for name, s in description["codecs"].items()}
        return cls(
            description["name"],
            model,
            codecs,
            version=description["version"],
            table_columns=description.get("table_columns", []),
            statistics=(
                ChildStatistics.from_state(description["statistics"])
                if description.get("statistics")
                else None
            ),
            read_versions=description.get("read_versions", {}),
            data_fingerprint=description.get("data_fingerprint", ""),
            spec_digest=description.get("spec_digest", ""),
            trained_on=description.get("trained_on", {}),
            folder=path,
            projection=(
                np.asarray(description["projection"], np.float64)
                if description.get("projection") is not None
                else None
            ),
        )


AS_OF_COLUMN = "__as_of"


def _pools_timed_rows(spec: Spec, name: str) -> bool:
    """Whether a space's rows pool time-stamped children, at any depth."""
    return any(
        spec.spaces[c.space].time_column or _pools_timed_rows(spec, c.space)
        for c in spec.spaces[name].children
    )


def embed_children_as_of(
    warehouse: Warehouse, con: Connection, spec: Spec, name: str
) -> dict[str, str]:
    """`as_of` at every depth. A child row's stored embedding pools all of its own children,
    including those dated after its parent's `as_of`; so for a space with `as_of`, each child
    space that pools time-stamped rows is embedded again, with its saved model, for the child
    rows of this space only, each with its own children cut at its parent row's `as_of` (and
    so on down). Returns {`link_name(link)`: temp table of (child key, embedding)}."""
    space = spec.spaces[name]
    if not space.as_of:
        return {}
    tables = {}
    for link in space.children:
        if not _pools_timed_rows(spec, link.space):
            continue
        child = spec.spaces[link.space]
        on = " and ".join(
            f"c.{quote(f)} = p.{quote(k)}"
            for f, k in zip(link.foreign_key_columns, space.key_columns, strict=True)
        )
        cut = (
            f" where c.{quote(child.time_column)} < p.{quote(space.as_of)}"
            if child.time_column
            else ""
        )
        suffix = f"{name}_{link.space}_{'_'.join(link.foreign_key_columns)}"
        view = f"__as_of_rows_{suffix}"
        con.execute(
            f"create or replace temp view {quote(view)} as select c.*, "
            f"p.{quote(space.as_of)} as {AS_OF_COLUMN} from {qualified(child.table)} c "
            f"join {qualified(space.table)} p on {on}{cut}"
        )
        as_of_spec = spec.model_copy(
            update={
                "spaces": {
                    **spec.spaces,
                    link.space: child.model_copy(
                        update={"table": quote(view), "as_of": AS_OF_COLUMN}
                    ),
                }
            }
        )
        model = Space.load(Path(spec.artifacts) / link.space)
        stored = read_versions(warehouse, con, spec, name).get(link.space)
        if stored != model.version:
            raise PipelineError(
                f"space {name}: ml.{link.space}_embeddings holds version {stored} of space "
                f"{link.space}, whose current model is {model.version} -> embed it first: "
                f"python -m pipeline embed --space {link.space}"
            )
        model.check_read_versions(read_versions(warehouse, con, as_of_spec, link.space))
        below = embed_children_as_of(warehouse, con, as_of_spec, link.space)
        inputs = read_space_inputs(
            warehouse,
            con,
            as_of_spec,
            link.space,
            codecs=model.codecs,
            statistics=model.statistics,
            child_embeddings=below,
        )
        table = inputs.keys.append_column(
            "embedding",
            pa.FixedSizeListArray.from_arrays(
                pa.array(model.embed(inputs).reshape(-1), pa.float32()),
                model.model.config["embedding_dim"],
            ),
        )
        name_of_table = f"__as_of_embeddings_{suffix}"
        con.register("__as_of_incoming", table)
        con.execute(
            f"create or replace temp table {quote(name_of_table)} as select * from __as_of_incoming"
        )
        con.unregister("__as_of_incoming")
        tables[link_name(link)] = quote(name_of_table)
    return tables
