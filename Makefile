# Closed Loop: `make run` starts the whole pipeline, `make test` runs every test.
.DEFAULT_GOAL := help
.PHONY: help install tools run test lint typecheck bench bench-quick chaos

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP) ## Create .venv (if missing) and install the project with its dev tools

# Reinstalled only when the dependencies change (or the venv is new).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

tools: ## Install wrk (benchmarks) and chromium (dashboard browser tests) from Debian if missing
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } \
		|| { echo "could not install wrk (apt-get install wrk, as root)"; exit 1; }
	@test -x /usr/bin/chromium || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "could not install chromium (apt-get install chromium, as root)"; exit 1; }

run: install ## Start ingest, worker and API on embedded defaults (closedloop up)
	$(BIN)/closedloop up $(ARGS)

# Two pytest processes, each with its own broker and database; a test file stays on one of them.
# (Three finish sooner but starve the tests that time workers and brokers: see README.)
test: install tools ## Run the whole test suite (needs wrk and chromium: make tools)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $(ARGS)

lint: install ## Check style and formatting with ruff
	$(BIN)/ruff check services tests bench chaos
	$(BIN)/ruff format --check services tests bench chaos

typecheck: install ## Type-check services/ with mypy
	$(BIN)/mypy

bench: install tools ## Run the benchmarks (pass options in ARGS="...")
	$(BIN)/python -m bench $(ARGS)

bench-quick: install tools ## Run a short benchmark (smoke size)
	$(BIN)/python -m bench --quick $(ARGS)

chaos: install tools ## Run the reliability suite (faults and load; ARGS="--quick" or "--only soak")
	$(BIN)/python -m chaos $(ARGS)
