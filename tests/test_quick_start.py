"""The README's quick start, as a new user runs it on a warehouse of their own: `init` writes
the spec (nothing hand-written), `run` trains and writes back and puts the `ml` source and
the embedding macros into the user's dbt project, and `dbt build` of that project (a model
reading the predictions through `source` and the similar rows through `similar_to`, a test
through `nearest`) passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipeline.spec import load_spec
from tests.test_init import _conventions

pytestmark = pytest.mark.slow
PYTHON = sys.executable
DBT = str(Path(sys.executable).parent / "dbt")

MODEL = """
select
    p."customerID",
    p.prediction as churned_prediction,
    s."similar_customerID",
    s.rank,
    s.similarity
from {{ source('ml', 'customer__churned_predictions') }} as p
inner join {{ similar_to('customer', 3) }} as s on p."customerID" = s."customerID"
"""

NEAREST_TEST = """
-- the first row's nearest customers by the macro are the model's similar customers
select 1
from (select min("customerID") as id from {{ ref('lookalikes') }}) as first_row
where (
    select list("customerID" order by rank) from {{ nearest('customer', 'first_row.id', 3) }}
) is distinct from (
    select list("similar_customerID" order by rank) from {{ ref('lookalikes') }}
    where "customerID" = first_row.id
)
"""


def _user_dbt_project(folder: Path, warehouse: Path) -> Path:
    project = folder / "my_dbt"
    (project / "models").mkdir(parents=True)
    (project / "tests").mkdir()
    (project / "dbt_project.yml").write_text(
        "name: my_dbt\nversion: '1.0'\nconfig-version: 2\nprofile: my_dbt\n"
        "models:\n  my_dbt:\n    +materialized: table\n"
    )
    (project / "profiles.yml").write_text(
        "my_dbt:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        f"      path: {warehouse}\n"
    )
    (project / "models" / "lookalikes.sql").write_text(MODEL)
    (project / "tests" / "nearest_is_similar_to.sql").write_text(NEAREST_TEST)
    return project


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_quick_start_init_run_dbt_build(tmp_path):
    warehouse = tmp_path / "shop.duckdb"
    _conventions(warehouse)
    project = _user_dbt_project(tmp_path, warehouse)
    _run(
        PYTHON, "-m", "pipeline", "init", "--warehouse", "shop.duckdb",
        "--target", "Customer.churned", "--dbt-project", "my_dbt", "--out", "spaces.yaml",
        cwd=tmp_path,
    )  # fmt: skip
    spec = load_spec(tmp_path / "spaces.yaml")
    assert spec.dbt_project == project
    _run(PYTHON, "-m", "pipeline", "run", "--spec", "spaces.yaml", cwd=tmp_path)
    assert (project / "models" / "ml" / "_ml_sources.yml").exists()
    built = _run(DBT, "build", "--project-dir", str(project), "--profiles-dir", str(project),
                 cwd=tmp_path)  # fmt: skip
    assert "PASS nearest_is_similar_to" in built.stdout  # the test ran, and passed
    with duckdb.connect(str(warehouse), read_only=True) as con:
        customers = con.execute('select count(*) from main."Customer"').fetchone()[0]
        rows, distinct = con.execute(
            'select count(*), count(distinct "customerID") from main.lookalikes'
        ).fetchone()
    assert (rows, distinct) == (3 * customers, customers)
