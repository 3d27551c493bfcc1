# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export UV_NO_PROGRESS := 1

# uv from PATH, else bootstrapped with pip into .tools/ (no curl installers: package registries only).
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTHON ?= python3
SAMPLES := data/sample/alpaca_eval.parquet data/sample/mooncake_conversation.jsonl.gz \
           data/sample/azure_conv.csv.gz data/sample/azure_code.csv.gz

.PHONY: help install run test bench data docs clean mlflow-ui tune

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.tools/bin/uv:
	@echo "uv not found: installing it with pip into .tools/"
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock (exact versions)

run: install  ## ingest the committed samples, train + register the predictors, say where results are
	$(UV) run dvc repro
	@echo
	@$(UV) run beast metrics
	@echo
	@echo "Results:"
	@echo "  dataset     data/traces/      (Parquet, partitioned by date; read with traces.store.read_traces)"
	@echo "  quarantine  data/quarantine/  (one JSONL per ingest: each rejected row with its reason)"
	@echo "  metrics     data/metrics/{ingest,quality,cost,cache}.json   (dvc metrics show)"
	@echo "  models      data/models/<predictor>/   (LightGBM text boosters + side JSON)"
	@echo "  plots       data/plots/<predictor>/    (calibration, importance)"
	@echo "  MLflow      mlflow.db + mlruns/        (make mlflow-ui: runs, registered beast-* models, aliases)"

test: install  ## run the test suite
	$(UV) run pytest -q

bench: install  ## benchmarks: 1M-row ingest vs plain pyarrow; 100k-row features + training + tuning vs 10 min
	$(UV) run beast bench-ingest --rows 1000000
	$(UV) run beast bench-train --rows 100000 --trials 30

tune: install  ## Optuna studies for the three predictors (resumable, data/optuna.db), default vs tuned verdict
	$(UV) run beast tune all

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000 (runs, metrics, plots, registered models + aliases)
	$(UV) run mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

data: install  ## re-create data/sample from ../shared/data (needs the raw data)
	$(UV) run beast import prices --out data
	$(UV) run beast import alpaca-eval --out data/sample
	$(UV) run beast import mooncake --out data/sample
	$(UV) run beast import azure --out data/sample

docs: install  ## regenerate docs/trace-contract.md from the code
	$(UV) run beast contract > docs/trace-contract.md

clean:  ## remove generated data (not the committed samples or metrics)
	rm -rf data/traces data/quarantine data/models data/plots data/optuna.db mlflow.db mlruns .pytest_cache
