# failcast: every target bootstraps .venv from nothing but python3.11 and pip, once, with the
# exact versions of uv.lock (pip installs uv, uv installs the lock; `make lock` updates it).
PYTHON ?= python3.11
UV_VERSION := 0.13.9
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)
# uv never fetches an interpreter of its own here, trusts the system's certificate store (as
# pip does; a site's TLS proxy is trusted there), and copies from its cache (which may sit on
# another file system) without a warning.
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := true
export UV_LINK_MODE := copy
export FAILCAST_HOME ?= $(CURDIR)/data
export DAGSTER_HOME ?= $(FAILCAST_HOME)/dagster

.PHONY: demo test lint lock ui mlflow-ui bench bench-quality clean-data

$(UV_STAMP):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	touch $(UV_STAMP)

$(STAMP): pyproject.toml uv.lock | $(UV_STAMP)
	@# --locked: a pyproject.toml changed without `make lock` stops here instead of drifting.
	@# --compile-bytecode: uv leaves no .pyc behind, and where PYTHONDONTWRITEBYTECODE is set
	@# every process compiled its imports again (10 s of a firm-scale retrain job, and of
	@# each CLI, daemon and server process the tests start); 16 s once, here.
	$(BIN)/uv sync --locked --extra dev --inexact --compile-bytecode --quiet
	touch $(STAMP)

demo: $(STAMP)  ## generate the demo estate (if missing) and run the whole pipeline on it
	$(BIN)/failcast demo

test: $(STAMP)  ## run the test suite
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check .

lock: | $(UV_STAMP)  ## re-resolve uv.lock after a change to the dependencies in pyproject.toml
	$(BIN)/uv lock

ui: $(STAMP)  ## Dagster UI on http://127.0.0.1:3000
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || $(BIN)/python -c "from pipelines.runner import DAGSTER_YAML; print(DAGSTER_YAML, end='')" > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow-ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(FAILCAST_HOME)/mlflow.db --host 127.0.0.1 --port 5000

bench: $(STAMP)  ## benchmarks (minutes; writes under $(FAILCAST_HOME)/bench)
	$(BIN)/python -m benchmarks.run

# Not part of `bench`: the LANL backtest alone replays 88 weekly retrainings (about an hour on
# 2 busy cores). ESTATES="short-history site-24-7" runs some; LABEL names the column.
bench-quality: $(STAMP)  ## forecast quality: the deployed policy's backtest on every quality estate (ESTATES=, LABEL=; LEAVE_OUT=FAMILY: an ablation)
	$(BIN)/python -m benchmarks.quality $(if $(ESTATES),--estates $(ESTATES)) $(if $(LEAVE_OUT),--leave-out "$(LEAVE_OUT)") $(if $(LABEL),--label "$(LABEL)") --out $(FAILCAST_HOME)/bench/quality.md

clean-data:  ## remove generated data (demo estate, warehouse and lake, MLflow store, published files)
	rm -rf data/demo data/warehouse.duckdb data/lake data/mlflow.db data/mlartifacts data/published data/dagster data/bench data/backtest data/training data/training_sets
