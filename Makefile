# Two commands: `make demo` runs the whole pipeline on the demo warehouse, `make test` runs
# the tests. Both create .venv first (torch 2.13.0 CPU build before everything else).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SCALE ?= 1

export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export SPACES_SPEC ?= $(CURDIR)/spaces.yaml
export WAREHOUSE_PATH ?= $(CURDIR)/warehouse.duckdb

.PHONY: setup demo test test-slow dev clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml || true
	$(BIN)/python -c "from pipeline.warehouse.connection import install_extensions as i; i()"
	cd sql && ../$(BIN)/dbt parse --quiet --project-dir . --profiles-dir .

demo: setup
	$(BIN)/python -m pipeline demo --warehouse $(WAREHOUSE_PATH) --scale $(SCALE)
	$(BIN)/dagster asset materialize -m assets.definitions --select '*'

test: setup
	$(BIN)/ruff check pipeline assets tests
	$(BIN)/pytest

test-slow: setup
	$(BIN)/pytest -m slow

dev: setup
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf artifacts warehouse.duckdb warehouse.duckdb.wal sql/target sql/logs
