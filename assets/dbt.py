"""The dbt project as Dagster assets: staging models upstream of the spaces, marts downstream.

Two `@dbt_assets` definitions keep the graph `dbt staging -> spaces -> dbt marts` free of
op-level cycles. dbt always runs as a subprocess, so this process never holds the DuckDB file.
"""

import os
import shutil
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from assets.resources import SpacesResource
from pipeline import runner
from pipeline.warehouse.connection import Warehouse

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
STAGING_GROUP = "dbt_staging"
MARTS_GROUP = "dbt_marts"


def dbt_project() -> DbtProject:
    return DbtProject(project_dir=SQL_DIR, profiles_dir=SQL_DIR)


def dbt_executable() -> str:
    """The venv's dbt (not on PATH unless the venv is activated), else whatever PATH has."""
    candidates = [
        Path(sys.executable).parent / "dbt",
        Path(sys.prefix) / "bin" / "dbt",
        SQL_DIR.parent / ".venv" / "bin" / "dbt",
    ]
    found = next((c for c in candidates if c.exists()), None)
    return str(found) if found else (shutil.which("dbt") or "dbt")


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(
        project_dir=str(SQL_DIR), profiles_dir=str(SQL_DIR), dbt_executable=dbt_executable()
    )


class SpacesDbtTranslator(DagsterDbtTranslator):
    """Groups dbt models by their folder under models/: `dbt_staging`, `dbt_marts`."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"


def _manifest(project: DbtProject) -> Path:
    # No prepare_if_dev(): under `dagster dev` it runs a bare `dbt` from PATH, which is not
    # there unless the venv is activated. `make setup` runs `dbt parse` instead.
    if not project.manifest_path.exists():
        raise FileNotFoundError(
            f"dbt manifest {project.manifest_path} not found -> run "
            f"`dbt parse --project-dir {SQL_DIR} --profiles-dir {SQL_DIR}` first (make setup)"
        )
    return project.manifest_path


def _dbt_build(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, spaces: SpacesResource
) -> Iterator[Any]:
    """`dbt build` (models + tests) of the selected models against the spec's warehouse, the
    project's `ml` source and macros brought to the spec first when it is this project."""
    spec = spaces.load_spec()
    if spec.dbt_project is not None and spec.dbt_project.resolve() == SQL_DIR:
        runner.update_dbt_project(spec)
    warehouse = Warehouse.of(spec)
    warehouse.check()  # a wrong setting fails here, named; installs an attached one's extensions
    os.environ.update(warehouse.backend.dbt_environment())
    yield from dbt.cli(["build"], context=context).stream()


def build_dbt_assets(pool: str | None = "duckdb") -> list[dg.AssetsDefinition]:
    """The staging and marts dbt assets (reads the manifest, never the warehouse); `pool`:
    their concurrency pool (a DuckDB file's one writer), None for an attached warehouse."""
    project = dbt_project()
    manifest = _manifest(project)
    common = dict(
        manifest=manifest,
        project=project,
        dagster_dbt_translator=SpacesDbtTranslator(),
        pool=pool,
    )

    @dbt_assets(select="path:models/staging", name=STAGING_GROUP, **common)
    def dbt_staging(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, spaces: SpacesResource
    ) -> Iterator[Any]:
        yield from _dbt_build(context, dbt, spaces)

    @dbt_assets(select="path:models/marts", name=MARTS_GROUP, **common)
    def dbt_marts(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, spaces: SpacesResource
    ) -> Iterator[Any]:
        yield from _dbt_build(context, dbt, spaces)

    return [dbt_staging, dbt_marts]
