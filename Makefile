# failcast: every target bootstraps .venv from nothing but python3.11 and pip, once.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export FAILCAST_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(FAILCAST_HOME)/dagster

.PHONY: demo test lint ui mlflow-ui bench clean-data

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)  ## generate the demo estate (if missing) and run the whole pipeline on it
	$(BIN)/failcast demo

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

ui: $(STAMP)  ## Dagster UI on http://127.0.0.1:3000
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(FAILCAST_HOME)/mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP)  ## benchmarks (minutes; writes under $(FAILCAST_HOME)/bench)
	$(BIN)/python -m benchmarks.run

clean-data:  ## remove generated data (demo estate, warehouse, MLflow store, published files)
	rm -rf data/demo data/warehouse.duckdb data/mlflow.db data/mlartifacts data/published data/dagster data/bench data/backtest
