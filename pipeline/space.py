"""`Space`: a trained embedding space for one table: codecs + model + training record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import torch

from pipeline.artifacts import load_json, load_weights, save_json, save_weights
from pipeline.child_stats import ChildStatistics
from pipeline.encoders import codec_from_state
from pipeline.encoders.base import Codec
from pipeline.errors import DataError, PipelineError
from pipeline.inputs import SpaceInputs, read_space_inputs
from pipeline.model import SpaceModel, gather, token_specs
from pipeline.profiling import ColumnProfile
from pipeline.spec import Spec
from pipeline.training import TrainingResult, train_space
from pipeline.warehouse import Warehouse, table_columns

EMBED_BATCH = 1024


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

    @classmethod
    def train(
        cls,
        warehouse: Warehouse,
        con: duckdb.DuckDBPyConnection,
        spec: Spec,
        name: str,
        profiles: list[ColumnProfile],
        progress: bool = True,
    ) -> Space:
        """Fit codecs and train the model on every row of the space's table."""
        inputs = read_space_inputs(warehouse, con, spec, name, profiles=profiles)
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
        model, result = train_space(inputs, spec.training, spec.seed, progress=progress)
        codecs = {c.name: c.codec for c in inputs.columns}
        columns = list(table_columns(con, spec.spaces[name].table))
        return cls(
            name,
            model,
            codecs,
            training=result,
            table_columns=columns,
            statistics=inputs.statistics,
        )

    def read_inputs(
        self, warehouse: Warehouse, con: duckdb.DuckDBPyConnection, spec: Spec
    ) -> SpaceInputs:
        """Current rows of the table through the saved codecs (no refitting)."""
        inputs = read_space_inputs(
            warehouse, con, spec, self.name, codecs=self.codecs, statistics=self.statistics
        )
        if self.table_columns:
            current = table_columns(con, spec.spaces[self.name].table)
            inputs.new_columns = [c for c in current if c not in self.table_columns]
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
            content, present = self.model.encode_tokens(gather(inputs, batch_rows))
            hidden = None
            if hidden_token is not None:
                hidden = torch.zeros_like(present)
                hidden[:, hidden_token] = True
            out.append(self.model.embed_tokens(content, present, hidden).numpy())
        dim = self.model.config["embedding_dim"]
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)

    def embeddings_table(self, inputs: SpaceInputs, embeddings: np.ndarray) -> pa.Table:
        """`ml.<space>_embeddings` rows: key, embedding, embedding_3d, version, time."""
        dim = embeddings.shape[1]
        three = embeddings[:, :3] / np.maximum(
            np.linalg.norm(embeddings[:, :3], axis=1, keepdims=True), 1e-12
        )
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

    def save(self, folder: Path) -> str:
        """Write weights and description; sets and returns the version (weights hash)."""
        folder.mkdir(parents=True, exist_ok=True)
        self.version = save_weights(self.model, folder / "space.safetensors")
        save_json(
            {
                "name": self.name,
                "version": self.version,
                "model": self.model.description(),
                "codecs": {name: codec.state() for name, codec in self.codecs.items()},
                "training": self.training.summary() if self.training else None,
                "table_columns": self.table_columns,
                "statistics": self.statistics.state() if self.statistics else None,
            },
            folder / "space.json",
        )
        if self.training:
            save_json({"timeline": self.training.timeline}, folder / "timeline.json")
        return self.version

    @classmethod
    def load(cls, folder: Path) -> Space:
        if not (folder / "space.json").exists():
            raise PipelineError(f"no trained space in {folder} -> run python -m pipeline train")
        description = load_json(folder / "space.json")
        model = SpaceModel.from_description(description["model"])
        load_weights(model, folder / "space.safetensors")
        model.eval()
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
        )
