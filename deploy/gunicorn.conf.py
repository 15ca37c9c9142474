"""Gunicorn for modelserve: the same server as `modelserve serve --workers N`, under gunicorn's
supervisor (worker recycling, its signals, its process names), for those who run gunicorn.

    MODELSERVE_TARGETS="/app/models.py" gunicorn -c deploy/gunicorn.conf.py

Settings come from the same `MODELSERVE_*` environment as `modelserve serve`: bind address
(MODELSERVE_SERVER__HOST/PORT), workers (MODELSERVE_SERVER__WORKERS), graceful timeout, log
level, HTTP limits. What to serve comes from MODELSERVE_TARGETS (space-separated, as the
TARGET arguments of `serve`) and MODELSERVE_SERVE_REGISTRY=1 (as `--registry`). Each worker
builds its app through the same factory and the same protocol, loop and timeouts as `serve`;
tests/deploy/test_gunicorn.py checks that they agree and runs it. docs/deploy.md, "One server".
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings

# Before anything imports prometheus_client: it picks single- or multi-process mode once, at
# import, from this variable, and gunicorn forks its workers from this process. As `serve`
# does (observability/multiprocess.py): a directory the operator set is used and kept, else a
# fresh one per run, removed at exit (stale files would be summed into /metrics).
_METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_metrics_owned = not os.environ.get(_METRICS_ENV)
if _metrics_owned:
    os.environ[_METRICS_ENV] = tempfile.mkdtemp(prefix="modelserve-metrics-")
os.makedirs(os.environ[_METRICS_ENV], exist_ok=True)

with warnings.catch_warnings():
    # uvicorn.workers warns that it moved to the `uvicorn-worker` package; the lock has
    # uvicorn's own copy (the same class), and one dependency fewer.
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker

from modelserve.auth.signing import check_auth_settings  # noqa: E402
from modelserve.cli.factory import ServePlan, absolute_targets, load_specs, publish  # noqa: E402
from modelserve.cli.serve import FACTORY, http_protocol, log_config  # noqa: E402
from modelserve.config import Settings  # noqa: E402
from modelserve.errors import ModelserveError  # noqa: E402
from modelserve.http.app import LIFESPAN_DRAIN_S, prepare_schema_at  # noqa: E402
from modelserve.http.connections import raise_fd_limit  # noqa: E402

TARGETS = tuple(os.environ.get("MODELSERVE_TARGETS", "").split())
REGISTRY = os.environ.get("MODELSERVE_SERVE_REGISTRY", "").lower() in ("1", "true", "yes")
PLAN = ServePlan(targets=absolute_targets(TARGETS), overrides={}, registry=REGISTRY)
SETTINGS: Settings = PLAN.settings()
SERVER = SETTINGS.server

# -- what gunicorn reads

bind = [f"{SERVER.host}:{SERVER.port}"]
workers = SERVER.workers
# The factory `serve --workers N` gives uvicorn, called once per worker.
wsgi_app = f"{FACTORY}()"
# A worker must answer gunicorn's heartbeat within `timeout`; the event loop only runs
# requests (models run on their own threads or processes), so 60 s means a stuck process.
timeout = 60
# After SIGTERM: the server's own drain (graceful_timeout_s for requests in flight, then the
# lifespan's short engine drain) must finish before gunicorn's SIGKILL, with a margin.
graceful_timeout = int(SERVER.graceful_timeout_s + LIFESPAN_DRAIN_S + 5)
# = server: idle keep-alive connections close after http.keep_alive_timeout_s.
keepalive = max(1, int(SETTINGS.http.keep_alive_timeout_s))
# Recycle a worker after this many requests, staggered by the jitter so that workers do not
# restart together (each restart reloads its models: keep it rare). 0 turns it off.
max_requests = int(os.environ.get("MODELSERVE_GUNICORN_MAX_REQUESTS", "1000000"))
max_requests_jitter = max(1, max_requests // 10) if max_requests else 0
loglevel = SERVER.log_level
# uvicorn's access log stays off as under `serve`: modelserve writes its own, redacted.
accesslog = None
proc_name = "modelserve"
# No preloading: every worker imports the models itself, as under `serve` (fork after a model
# is loaded shares CUDA contexts and threads that do not survive it).
preload_app = False


class ModelserveWorker(UvicornWorker):
    """uvicorn under gunicorn with what `modelserve serve` passes to `uvicorn.run`."""

    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": http_protocol(SETTINGS),
        "lifespan": "on",
        "server_header": False,
        "proxy_headers": False,
        "access_log": False,
        "log_config": log_config(SETTINGS),
        "timeout_graceful_shutdown": SERVER.graceful_timeout_s,
        "timeout_keep_alive": SETTINGS.http.keep_alive_timeout_s,
    }


worker_class = ModelserveWorker


# -- hooks


def on_starting(server: object) -> None:
    """In the master, before any worker: what `serve` checks before it starts uvicorn, with
    its exit statuses (2: cannot work as given, 3: the database is not ready)."""
    if not TARGETS and not REGISTRY:
        _fail("set MODELSERVE_TARGETS (what to serve) or MODELSERVE_SERVE_REGISTRY=1", 2)
    try:
        # A production server with unsafe auth settings never listens; a broken target
        # fails once here instead of in every worker.
        check_auth_settings(SETTINGS)
        load_specs(PLAN.targets)
    except ModelserveError as exc:
        _fail(exc.message, 2)
    try:
        # SQLite is migrated here, once; a PostgreSQL schema that is behind stops the start.
        prepare_schema_at(SETTINGS)
    except ModelserveError as exc:
        _fail(exc.message, 3)
    raise_fd_limit()
    publish(PLAN)


def _fail(message: str, status: int) -> None:
    print(f"modelserve: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(status)


def child_exit(server: object, worker: object) -> None:
    """Drop a dead worker's live gauges at once (queue depth, readiness), as `serve` does."""
    from modelserve.observability import multiprocess

    pid = getattr(worker, "pid", None)
    if pid is not None:
        multiprocess.mark_exited(pid)


def on_exit(server: object) -> None:
    if _metrics_owned:
        shutil.rmtree(os.environ[_METRICS_ENV], ignore_errors=True)
