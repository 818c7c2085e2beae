"""What a dbt project gets from the spec: the `ml` source (every table the pipeline writes,
with descriptions and the Dagster asset that writes it), `ml_spaces()` (each space's key and
how many neighbours it keeps) and the embedding macros (`nearest`, `similar_to`,
`embedding_distance`), so that a user's own models can `source('ml', ...)` and use them."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import yaml

from pipeline.locations import predictions_name
from pipeline.spaces.neighbour_table import neighbour_column, table_name
from pipeline.spec import Spec

log = logging.getLogger(__name__)

SOURCES_FILE = Path("models") / "ml" / "_ml_sources.yml"
SPACES_MACRO_FILE = Path("macros") / "ml_spaces.sql"
EMBEDDING_MACROS_FILE = Path("macros") / "ml_embeddings.sql"
EMBEDDING_MACROS = Path(__file__).with_name("embedding_macros.sql")
"""The macros' source, written into the project as it is."""
ASSET_PREFIX = "ml"
"""First part of the Dagster asset keys of the tables (`assets.factory.PREFIX`)."""
GENERATED = (
    "Generated from {spec} by `python -m pipeline dbt-sources` (and by every `run`): "
    "edits here are overwritten; change spaces.yaml instead."
)

SHARED_TABLES = {
    "column_profile": (
        "One row per column of each space: detected type, role, null share, distinct count, "
        "and whether (and why) it is left out of the model.",
        ["space", "column", "detected_type", "role", "null_fraction", "excluded", "reason"],
    ),
    "join_report": (
        "One row per relation (child or reference) of each space: coverage, orphans, null "
        "keys, key types, declared and observed cardinality, distribution shift, status.",
        ["space", "parent", "child", "kind", "foreign_key", "coverage", "status", "message"],
    ),
    "quality_results": (
        "Great Expectations results per space and expectation: status, unexpected count and "
        "share, on which rows they were evaluated.",
        ["space", "expectation", "column", "status", "success", "unexpected_count"],
    ),
    "training_runs": (
        "One row per training run of a space or predictor: versions, losses, metrics, "
        "hyperparameters, failures detected, corrective actions, warnings.",
        ["run_id", "kind", "space", "target", "version", "started_at", "finished_at"],
    ),
    "mutual_information": (
        "Bits of information each column of a space shares with the rest of its row.",
        ["space", "column", "bits", "space_version"],
    ),
}


def sources_text(spec: Spec, spec_name: str = "spaces.yaml") -> str:
    """The `ml` source of a dbt project: every table the pipeline writes for this spec."""
    tables = []
    for name, space in spec.spaces.items():
        keys = space.key_columns
        described = ", ".join(keys)
        tables.append(
            _table(
                f"{name}_embeddings",
                f"One L2-normalised embedding per row of {space.table} (space `{name}`), "
                f"keyed by {described}.",
                [
                    *[(k, f"Key of {space.table}.") for k in keys],
                    ("embedding", "FLOAT array, L2-normalised: cosine similarity = dot product."),
                    ("embedding_3d", "3-d projection for plots."),
                    ("space_version", "The model that wrote the row."),
                    ("embedded_at", "When the row was last embedded (kept while it is unchanged)."),
                ],
                {"space": name, "key": keys},
            )
        )
        kept = spec.neighbours(name)
        if kept:
            key = keys[0]
            tables.append(
                _table(
                    table_name(name),
                    f"The {kept} most similar rows of every row of space `{name}` (cosine "
                    "similarity of their embeddings, from an index of the embeddings).",
                    [
                        (key, f"Key of {space.table}."),
                        (neighbour_column(key), "Key of the similar row."),
                        ("rank", "1 for the most similar row."),
                        ("similarity", "Cosine similarity of the two embeddings."),
                        ("space_version", "The model whose embeddings were compared."),
                    ],
                    {"space": name, "key": keys, "neighbours": kept},
                )
            )
        for target in space.targets:
            tables.append(
                _table(
                    predictions_name(name, target),
                    f"Predictions of {space.table}.{target} for every row (space `{name}`), "
                    "including rows whose target is NULL.",
                    [
                        *[(k, f"Key of {space.table}.") for k in keys],
                        ("prediction", f"Predicted {target}, in its own values and type."),
                        ("probability", "Calibrated probability of the predicted class."),
                        ("probabilities", "Calibrated probability per class (MAP, or JSON)."),
                        ("interval_low", "Regression: lower end of the prediction interval."),
                        ("interval_high", "Regression: upper end of the prediction interval."),
                        ("confidence", "How sure the predictor is, 0 to 1."),
                        ("ood_sigma", "Distance from the training rows, in standard deviations."),
                        ("split", "train (labelled, scored out of fold) or unlabelled."),
                        ("warnings", "Why a prediction may not be trusted."),
                        ("feature_importance", "Per input, its share of this prediction."),
                        ("predictor_version", "The predictor that wrote the row."),
                        ("predicted_at", "When the row was last scored."),
                    ],
                    {"space": name, "key": keys, "target": target},
                )
            )
    for name, (description, columns) in SHARED_TABLES.items():
        tables.append(_table(name, description, [(c, None) for c in columns], None))
    source = {
        "name": "ml",
        "description": f"Tables the pipeline writes back ({spec_name}).",
        "schema": spec.output_schema,
        "tables": tables,
    }
    header = "# " + GENERATED.format(spec=spec_name) + "\n"
    return header + yaml.safe_dump({"version": 2, "sources": [source]}, sort_keys=False, width=100)


def _table(name: str, description: str, columns: list, meta: dict | None) -> dict:
    table: dict = {"name": name, "description": description}
    if meta is not None:
        meta = {k: list(v) if isinstance(v, list) else v for k, v in meta.items()}  # no anchors
        table["meta"] = {"dagster": {"asset_key": [ASSET_PREFIX, name]}, **meta}
    table["columns"] = [
        {"name": c} if text is None else {"name": c, "description": text} for c, text in columns
    ]
    return table


def spaces_macro_text(spec: Spec, spec_name: str = "spaces.yaml") -> str:
    """`ml_spaces()`: per space its key columns and how many neighbours it keeps, for the
    embedding macros (`macros/ml_embeddings.sql`), which cannot read the spec."""
    spaces = {
        name: {"key": space.key_columns, "neighbours": spec.neighbours(name)}
        for name, space in spec.spaces.items()
    }
    return (
        "{#- " + GENERATED.format(spec=spec_name) + " -#}\n"
        "{% macro ml_spaces() %}\n"
        f"    {{{{ return({json.dumps(spaces, sort_keys=True)}) }}}}\n"
        "{% endmacro %}\n"
    )


def write_dbt_sources(spec: Spec, project: Path, spec_name: str = "spaces.yaml") -> list[Path]:
    """Write the `ml` source, `ml_spaces()` and the embedding macros into the dbt project at
    `project` (under its first model and macro paths); a file is rewritten only when its text
    changes (dbt's partial parsing keeps its cache). Returns the files written."""
    config_file = project / "dbt_project.yml"
    if not config_file.exists():
        raise FileNotFoundError(f"{project} has no dbt_project.yml: not a dbt project")
    config = yaml.safe_load(config_file.read_text()) or {}
    models = Path((config.get("model-paths") or ["models"])[0])
    macros = Path((config.get("macro-paths") or ["macros"])[0])
    written = []
    for relative, text in (
        (models / SOURCES_FILE.relative_to("models"), sources_text(spec, spec_name)),
        (macros / SPACES_MACRO_FILE.name, spaces_macro_text(spec, spec_name)),
        (macros / EMBEDDING_MACROS_FILE.name, EMBEDDING_MACROS.read_text()),
    ):
        path = project / relative
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(text)
        os.replace(partial, path)
        written.append(path)
    if written:
        log.info("dbt project %s: %s written from the spec", project, ", ".join(map(str, written)))
    return written
