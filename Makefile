# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DVC_NO_ANALYTICS := 1
export UV_NO_PROGRESS := 1
# LightGBM's OpenMP threads spin-wait by default: on a busy 2-core box one training took 166 s instead of 7.6 s
export OMP_WAIT_POLICY := PASSIVE

# uv from PATH, else bootstrapped with pip into .tools/ (no curl installers: package registries only).
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
PYTHON ?= python3
SAMPLES := data/sample/alpaca_eval.parquet data/sample/mooncake_conversation.jsonl.gz \
           data/sample/azure_conv.csv.gz data/sample/azure_code.csv.gz

.PHONY: help install run repro test lint wheel-check bench bench-scale bench-startup data docs clean mlflow-ui prefect-server tune stack stack-down

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.tools/bin/uv:
	@echo "uv not found: installing it with pip into .tools/"
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml Makefile | $(UV)
	@# --compile-bytecode: where PYTHONDONTWRITEBYTECODE=1 is set nothing is cached at import, and every process
	@# compiled what it imports again (sklearn alone 6-7 s instead of ~2.6 s; make test paid it in every subprocess)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: .venv/.synced  ## create .venv from uv.lock (exact versions)

run: install  ## the Prefect retrain flow on the committed samples: ingest, train, benchmark, replay, gate, export
	$(UV) run beast retrain
	$(UV) run beast monitor report data/traces --out data/report
	@echo
	@cat data/prefect/summary.md
	@echo "Results:"
	@# one line per result that exists (the first run has no champion, so no gate report: it says so instead)
	@result() { if [ -e "$$2" ]; then printf '  %-11s %s\n' "$$1" "$$3"; \
	          else printf '  %-11s %s\n' "$$1" "$$2 (not produced this run$${4:+: $$4})"; fi; }; \
	result bundle    data/bundle                  "data/bundle/ + data/bundle.tar.gz   (what routers load: beast route --bundle data/bundle)"; \
	result dataset   data/traces                  "data/traces/      (Parquet, partitioned by date; quarantined rows in data/quarantine/)"; \
	result metrics   data/metrics/quality.json    "data/metrics/{quality,cost,cache}.json, plots in data/plots/<predictor>/"; \
	result benchmark data/prefect/bench/report.md "data/prefect/bench/report.md   (routing: AIQ, APGR, savings vs always-strongest)"; \
	result gate      data/prefect/gate/gate.md    "data/prefect/gate/gate.md      (offline replay of the challenger against the champion)" \
	                 "first run has no champion to compare with"; \
	result report    data/report/index.html       "data/report/index.html         (monitoring: traffic, errors, latency, cost, budgets, predicted vs actual, drift)"
	@echo "  MLflow      make mlflow-ui       -> http://127.0.0.1:5000 (runs, beast-* models + aliases, beast-gate)"
	@echo "  Prefect     make prefect-server  -> http://127.0.0.1:4200 (then PREFECT_API_URL=http://127.0.0.1:4200/api beast retrain)"

repro: install  ## the DVC pipeline (dvc repro): same stage functions, versioned metrics and plots
	$(UV) run dvc repro

prefect-server: install  ## a Prefect server on http://127.0.0.1:4200 (UI + API; `beast deploy` schedules need it)
	$(UV) run prefect server start --host 127.0.0.1 --port 4200

stack: install  ## PostgreSQL + MLflow server (:5000) + Prefect server (:4200) on localhost, state in .stack/ (params.yaml stack)
	$(UV) run beast stack up

stack-down: install  ## stop what `make stack` started (no process left behind)
	$(UV) run beast stack down

test: install  ## the whole test suite: lint, then unit + integration tests, then tests/system (each on 2 workers, whole files)
	$(MAKE) --no-print-directory lint
	$(UV) run pytest -q -n 2 --dist loadfile -m "not system" --durations=10
	UV=$(UV) $(UV) run pytest -q -n 2 --dist loadfile -m system --durations=10

lint: install  ## ruff (lint + format check) and the import contracts (lint-imports, rules in pyproject.toml)
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run lint-imports

wheel-check: install  ## build the wheel, install it into a fresh venv, run beast --help and beast monitor report from it
	UV=$(UV) .ci/wheel-check

bench: install  ## benchmarks: 1M-row ingest vs plain pyarrow; 100k-row features + training + tuning vs 10 min
	$(UV) run beast bench ingest --rows 1000000
	$(UV) run beast bench train --rows 100000 --trials 30

bench-scale: install  ## benchmark: 2M-row cost training one process vs Dask (time, peak memory, metrics); Optuna trials/min 1 vs 2 workers (needs make stack)
	$(UV) run beast bench scale --rows 2000000

bench-startup: install  ## benchmark: beast start-up per command (--help, --version, metrics, traces contract, route --help) vs python -c pass; goal < 1 s
	$(UV) run beast bench startup --every-help

tune: install  ## Optuna studies for the three predictors (resumable, data/optuna.db), default vs tuned verdict
	$(UV) run beast tune all

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000 (runs, metrics, plots, registered models + aliases; MLFLOW_TRACKING_URI if set)
	@uri="$${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}"; \
	case "$$uri" in http://*|https://*) echo "MLFLOW_TRACKING_URI=$$uri is a tracking server: its UI is already there"; exit 0;; esac; \
	echo "$(UV) run mlflow ui --backend-store-uri $$uri --host 127.0.0.1 --port 5000"; \
	$(UV) run mlflow ui --backend-store-uri "$$uri" --host 127.0.0.1 --port 5000

data: install  ## re-create data/sample from ../shared/data (needs the raw data)
	$(UV) run beast traces import prices --out data
	$(UV) run beast traces import alpaca-eval --out data/sample
	$(UV) run beast traces import mooncake --out data/sample
	$(UV) run beast traces import azure --out data/sample
	$(UV) run beast traces import routellm-mmlu --out data/sample
	$(UV) run beast traces import routellm-mt-bench --out data/sample

docs: install  ## regenerate docs/trace-contract.md from the code, the README's result tables from data/metrics
	$(UV) run beast traces contract > docs/trace-contract.md
	$(UV) run python -m evaluation.readme README.md

clean:  ## remove generated data (not the committed samples or metrics)
	rm -rf data/traces data/quarantine data/models data/plots data/optuna.db mlflow.db mlruns .pytest_cache
