"""`modelserve worker`: a Celery worker that runs batch-job chunks (docs/jobs.md, "Celery").

It loads the same models as `modelserve serve` (the same TARGETs, or with `--registry` the
registry's production versions) in each of its `--concurrency` processes, consumes chunk
messages from RabbitMQ (`MODELSERVE_JOBS__BROKER_URL`) and runs each through the same
`ChunkProcessor` as a server's embedded runner. The servers then only enqueue
(`MODELSERVE_JOBS__RUNNER=celery`). Celery is imported only when this command runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from modelserve.cli.factory import ServePlan, absolute_targets, load_specs
from modelserve.cli.serve import EXIT_STARTUP, DeviceOpt, LogLevel, LogLevelOpt, fail
from modelserve.errors import ModelserveError
from modelserve.http.app import prepare_schema_at
from modelserve.http.job_worker import JobWorkerHost
from modelserve.observability import multiprocess
from modelserve.observability.stack import configure_process, serve_metrics_port

DEFAULT_CONCURRENCY = 2


def worker(
    targets: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="TARGET",
            help="Services whose jobs to run, as for `serve`: path/file.py[:Class] or"
            " pkg.module[:Class].",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry", help="Also load what the registry's `production` aliases point at."
        ),
    ] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Worker processes, each with its own copy of the models, one chunk at a time.",
        ),
    ] = DEFAULT_CONCURRENCY,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated queues to consume. (default: MODELSERVE_JOBS__CELERY_QUEUE,"
            " modelserve.jobs)"
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Serve the summed Prometheus metrics of the pool's processes on this port"
            " (/metrics). (default: MODELSERVE_OBSERVABILITY__METRICS_PORT; none: not served)",
            show_default=False,
        ),
    ] = None,
    device: DeviceOpt = None,
    log_level: LogLevelOpt = None,
) -> None:
    """Run batch-job chunks from RabbitMQ (Celery) until SIGTERM (finishes its chunks) or
    SIGQUIT; the servers only enqueue (MODELSERVE_JOBS__RUNNER=celery)."""
    targets = targets or []
    if not targets and not registry:
        fail("give at least one TARGET whose jobs to run, or --registry")
    # A worker runs chunks as Celery delivers them: no embedded runner, relay or scheduler.
    overrides: dict[str, Any] = {"jobs": {"runner": "celery", "embedded": False}}
    if device is not None:
        overrides["device"] = device
    if log_level is not None:
        overrides["server"] = {"log_level": log_level.value}
    if metrics_port is not None:
        overrides["observability"] = {"metrics_port": metrics_port}
    plan = ServePlan(targets=absolute_targets(targets), overrides=overrides, registry=registry)
    try:
        settings = plan.settings()
        specs = load_specs(plan.targets)
    except ModelserveError as exc:
        fail(exc.message)
    except Exception as exc:  # user code failing in a way the loader does not wrap
        fail(f"cannot load {' '.join(targets)}: {exc!r}")
    try:
        prepare_schema_at(settings)
    except ModelserveError as exc:
        fail(exc.message, status=EXIT_STARTUP)
    try:
        from modelserve.jobs.celery_app import build_celery, install_worker, run_worker
    except ImportError:
        fail("`modelserve worker` needs Celery: pip install 'modelserve[celery]'")
    configure_process(settings)
    chosen = [q.strip() for q in (queues or settings.jobs.celery_queue).split(",") if q.strip()]
    if not chosen:
        fail("--queues names no queue")
    app = build_celery(settings.jobs)
    host = JobWorkerHost(settings, specs, registry=registry)
    install_worker(
        app,
        handler=host.handle,
        on_start=host.start,
        on_stop=host.stop,
        on_unpublished=host.unpublished,
    )
    level = log_level or LogLevel(settings.server.log_level)
    # The pool's processes write their metrics to one directory; this process serves the sum
    # (a worker has no HTTP port of its own to scrape).
    metrics_dir = multiprocess.prepare_forked()
    try:
        metrics_server = serve_metrics_port(settings)
    except OSError as exc:
        metrics_dir.cleanup()
        fail(f"cannot serve metrics on port {settings.observability.metrics_port}: {exc}")
    try:
        run_worker(app, concurrency=concurrency, queues=chosen, loglevel=level.value)
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        metrics_dir.cleanup()
