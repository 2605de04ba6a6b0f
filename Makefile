# dexwatch: `make run` installs everything and runs the detector on the local stack;
# `make test` runs the whole test suite (what CI runs).
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
UV       := $(BIN)/uv
DURATION ?=
PYTEST_ARGS ?=

.PHONY: install tools run test lint bench down clean

install: $(VENV)/.installed node_modules/.installed .debian-packages

# Debian packages are checked on every install; the script installs only what is missing.
.debian-packages:
	@bash infra/install-debian-packages.sh
.PHONY: .debian-packages

$(VENV)/.installed: requirements.lock pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(BIN)/pip install -q uv==0.13.8
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

# The deployment checks' tools, each in its own virtualenv (their pins conflict with the lock):
# checkov scans infra/terraform; the BigQuery emulator runs the tables, views and queries.
# The emulator loads DuckDB's spatial extension, installed here from its wheel (no download),
# into the emulator's own HOME.
CHECKOV_VENV := .venv-checkov
BQ_VENV      := .venv-bq

tools: $(CHECKOV_VENV)/.installed $(BQ_VENV)/.installed

$(CHECKOV_VENV)/.installed: infra/tools/checkov.txt $(VENV)/.installed
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(UV) pip install -q --python $(CHECKOV_VENV)/bin/python -r infra/tools/checkov.txt
	@touch $@

$(BQ_VENV)/.installed: infra/tools/bqemulator.txt $(VENV)/.installed
	@test -x $(BQ_VENV)/bin/python || $(PYTHON) -m venv $(BQ_VENV)
	$(UV) pip install -q --python $(BQ_VENV)/bin/python -r infra/tools/bqemulator.txt
	@mkdir -p $(BQ_VENV)/home
	HOME=$(abspath $(BQ_VENV))/home $(BQ_VENV)/bin/python -c "import duckdb, glob, os, duckdb_extension_spatial as s; \
	  p = glob.glob(os.path.join(os.path.dirname(s.__file__), 'extensions', 'v*', 'spatial.duckdb_extension'))[0]; \
	  duckdb.connect().execute(f\"INSTALL '{p}'\")"
	@touch $@

run: install
	$(BIN)/dexwatch run $(if $(DURATION),--duration $(DURATION))

test: install tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# The benchmarks' own packages (the `bench` extra: isotree compiles from source) go in only here.
$(VENV)/.bench-installed: requirements-bench.lock $(VENV)/.installed
	$(UV) pip install -q --compile-bytecode --python $(BIN)/python -r requirements-bench.lock
	@touch $@

bench: install $(VENV)/.bench-installed
	$(BIN)/python bench/decode.py
	$(BIN)/python bench/replay.py
	$(BIN)/python bench/memory.py
	$(BIN)/python bench/publisher_scale.py
	$(BIN)/python bench/latency.py
	$(BIN)/python bench/live.py
	$(BIN)/python bench/nab.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/backfill.py
	$(BIN)/python bench/bad_input.py
	$(BIN)/python bench/slack.py
	$(BIN)/python bench/first_run.py
	$(BIN)/python bench/multi_chain.py
	$(BIN)/python bench/live.py --chains 2 --rates 2500,3000,3500 --minutes 2

down:
	$(BIN)/dexwatch local down

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	$(UV) pip compile -q pyproject.toml --extra dev --extra serving --python-version 3.11 -o requirements.lock
	$(UV) pip compile -q pyproject.toml --extra dev --extra serving --extra bench --python-version 3.11 \
	  -c requirements.lock -o requirements-bench.lock

clean: down
	rm -rf .dexwatch
