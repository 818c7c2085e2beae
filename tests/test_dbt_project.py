"""dbt follows the spec: the `ml` source, `ml_spaces()` and the embedding macros written from
spaces.yaml (the repository's sql/ holds the demo's, checked here against the generator), the
Dagster asset keys of the sources, and the macros' errors naming the space and the fix. The
macros' results are checked by `dbt build` (sql/tests/embedding_macros_agree.sql) wherever the
demo marts are built (tests/test_assets.py), and on a user's own project in
tests/test_quick_start.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from assets.factory import embeddings_key, neighbours_key, predictions_key
from pipeline.cli import main
from pipeline.dbt_project.sources import (
    EMBEDDING_MACROS,
    EMBEDDING_MACROS_FILE,
    SOURCES_FILE,
    SPACES_MACRO_FILE,
    sources_text,
    spaces_macro_text,
    write_dbt_sources,
)
from pipeline.spec import load_spec, parse_spec
from tests.conftest import REPO, two_spaces_with

DBT = str(Path(sys.executable).parent / "dbt")


def test_the_repository_dbt_project_follows_the_demo_spec(tmp_path):
    spec = load_spec(REPO / "spaces.yaml")
    assert spec.dbt_project == REPO / "sql"  # found beside the spec
    sql = REPO / "sql"
    assert (sql / SOURCES_FILE).read_text() == sources_text(spec)
    assert (sql / SPACES_MACRO_FILE).read_text() == spaces_macro_text(spec)
    copy = tmp_path / "sql"
    shutil.copytree(sql, copy, ignore=shutil.ignore_patterns("target", "logs"))
    assert write_dbt_sources(spec, copy) == []  # nothing to rewrite
    assert (sql / EMBEDDING_MACROS_FILE).read_text() == EMBEDDING_MACROS.read_text()


def test_sources_list_every_table_with_its_dagster_asset(tmp_path):
    spec = load_spec(REPO / "spaces.yaml")
    source = yaml.safe_load(sources_text(spec))["sources"][0]
    assert source["name"] == "ml" and source["schema"] == spec.output_schema
    tables = {t["name"]: t for t in source["tables"]}
    for name in spec.spaces:
        assert tables[f"{name}_embeddings"]["meta"]["dagster"]["asset_key"] == (
            embeddings_key(name).path
        )
        assert tables[f"{name}_embeddings"]["meta"]["key"] == spec.spaces[name].key_columns
    assert tables["customers_neighbours"]["meta"]["dagster"]["asset_key"] == (
        neighbours_key("customers").path
    )
    assert "orders_neighbours" not in tables  # orders keep none
    predictions = tables["customers__churned_predictions"]
    assert (
        predictions["meta"]["dagster"]["asset_key"] == predictions_key("customers", "churned").path
    )
    assert {"prediction", "probabilities", "ood_sigma"} <= {
        c["name"] for c in predictions["columns"]
    }
    assert {"column_profile", "join_report", "quality_results", "training_runs"} <= set(tables)
    assert all(t.get("description") for t in tables.values())
    # a spec's own output schema and spaces reach the source
    data = two_spaces_with(lambda d: d.update(output_schema="analytics"))
    other = yaml.safe_load(sources_text(parse_spec(data)))["sources"][0]
    assert other["schema"] == "analytics"
    assert {t["name"] for t in other["tables"]} >= {"customers_embeddings", "orders_embeddings"}


def _project(tmp_path: Path, model: str) -> Path:
    """A dbt project of its own (not the repository's) with one model, its spec's files
    written in by the `dbt-sources` command."""
    project = tmp_path / "my_dbt"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text(
        "name: my_dbt\nversion: '1.0'\nconfig-version: 2\nprofile: my_dbt\n"
    )
    (project / "profiles.yml").write_text(
        "my_dbt:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {tmp_path / 'w.duckdb'}\n"
    )
    (project / "models" / "similar.sql").write_text(model)

    def ours(data: dict) -> None:
        data["dbt_project"] = str(project)
        data["spaces"]["customers"]["neighbours"] = 3

    (tmp_path / "spaces.yaml").write_text(yaml.safe_dump(two_spaces_with(ours)))
    main(["dbt-sources", "--spec", str(tmp_path / "spaces.yaml")])
    return project


def _parse(project: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DBT, "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_macros_say_what_to_change_in_the_spec(tmp_path):
    project = _project(tmp_path, "select * from {{ similar_to('customers', 5) }}")
    assert (project / SOURCES_FILE).exists() and (project / EMBEDDING_MACROS_FILE).exists()
    failed = _parse(project)
    assert failed.returncode != 0
    assert "space 'customers' keeps 3 neighbours per row -> set neighbours: 5" in failed.stdout

    (project / "models" / "similar.sql").write_text("select * from {{ nearest('clients', 1) }}")
    failed = _parse(project)
    assert failed.returncode != 0
    assert "unknown space 'clients' (spaces.yaml has customers, orders)" in failed.stdout
    # a k the space keeps compiles: the demo mart's similar_to('customers', 5) in every build
