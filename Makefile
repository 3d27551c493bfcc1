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

.PHONY: help install run test bench data docs clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.tools/bin/uv:
	@echo "uv not found: installing it with pip into .tools/"
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock (exact versions)

run: install  ## ingest the committed samples end to end and say where the results are
	$(UV) run dvc repro
	@echo
	@$(UV) run dvc metrics show
	@echo
	@echo "Results:"
	@echo "  dataset     data/traces/      (Parquet, partitioned by date; read with traces.store.read_traces)"
	@echo "  quarantine  data/quarantine/  (one JSONL per ingest: each rejected row with its reason)"
	@echo "  report      data/metrics/ingest.json"

test: install  ## run the test suite
	$(UV) run pytest -q

bench: install  ## ingest benchmark: 1M synthetic rows vs plain pyarrow read + write
	$(UV) run beast bench-ingest --rows 1000000

data: install  ## re-create data/sample from ../shared/data (needs the raw data)
	$(UV) run beast import prices --out data
	$(UV) run beast import alpaca-eval --out data/sample
	$(UV) run beast import mooncake --out data/sample
	$(UV) run beast import azure --out data/sample

docs: install  ## regenerate docs/trace-contract.md from the code
	$(UV) run beast contract > docs/trace-contract.md

clean:  ## remove generated data (not the committed samples)
	rm -rf data/traces data/quarantine data/metrics .pytest_cache
