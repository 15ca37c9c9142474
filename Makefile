# One entry point for humans and CI. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8000

LOCK := requirements/lock.txt
# pip-tools for `make lock`, pinned so the lock's own maker does not drift either.
PIP_TOOLS := pip-tools==7.7.0
LOCK_FLAGS := --generate-hashes --allow-unsafe --extra examples --extra dev \
	--build-deps-for editable --no-emit-find-links --no-emit-index-url --strip-extras

.PHONY: run test faults test-latest lock lint format typecheck bench bench-smoke clean

# Installs exactly the lock (every file's hash checked), then the project itself with no
# dependency resolution at all: a release elsewhere cannot change what a fresh clone gets.
# docs/development.md says why pip-tools and how to change a dependency.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

install: $(STAMP)

# Dev mode (the default MODELSERVE_MODE) with the admin console on at /console (docs/console.md).
run: $(STAMP)
	HF_HUB_OFFLINE=1 MODELSERVE_CONSOLE__ENABLED=true $(BIN)/modelserve serve examples/iris.py examples/embeddings.py examples/digits.py --registry --port $(PORT)

test: $(STAMP) lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# The fault suite at full size (docs/reliability.md): real servers under the R/V/S scenarios,
# one table at the end. `make test` runs the same scenarios at CI size.
faults: $(STAMP)
	MODELSERVE_FAULTS=full HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -p no:cacheprovider tests/faults

# The newest versions pyproject.toml allows, in a venv of their own: drift shows here first.
# MODELSERVE_TEST_LATEST tells tests/test_lock.py that this venv is not the lock's.
test-latest:
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install -q -U pip
	.venv-latest/bin/pip install -q -U --upgrade-strategy eager -e '.[examples,dev]'
	.venv-latest/bin/pip list --format=freeze > .venv-latest/versions.txt
	HF_HUB_OFFLINE=1 MODELSERVE_TEST_LATEST=1 .venv-latest/bin/python -m pytest

# Re-resolve requirements/lock.txt from pyproject.toml (the newest versions it allows).
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q $(PIP_TOOLS)
	.venv-lock/bin/pip-compile -q $(LOCK_FLAGS) -o $(LOCK) pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench
	$(BIN)/ruff format --check src tests examples bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests examples bench
	$(BIN)/ruff check --fix src tests examples bench

# The full side-by-side benchmark (bench/README.md). Peers install into bench/.peers on demand;
# wrk comes from Debian when missing, else the pure-Python driver runs. BENCH_ARGS passes flags.
BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -c $(LOCK) -e '.[examples,dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) \
		|| echo "wrk could not be installed: the pure-Python load driver will run"
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.run $(BENCH_ARGS)

# Seconds long, for CI: never installs anything beyond the project venv; wrk when present.
bench-smoke: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.run --smoke $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-latest .venv-lock .mypy_cache .ruff_cache .pytest_cache
