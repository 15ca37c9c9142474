"""`modelserve serve`: load the targets, build the settings once, and run uvicorn.

One process (the default) builds the app here. `--workers N` runs N server processes on one
port under uvicorn's supervisor, which restarts a worker that dies; `--reload` restarts the
server when a target's folder changes. Both start fresh processes that build their app through
`modelserve.cli.factory:build_app`.
"""

from __future__ import annotations

import enum
import inspect
import logging
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any, NoReturn

import typer
import uvicorn
from uvicorn.supervisors import Multiprocess

from modelserve.auth.signing import check_auth_settings
from modelserve.cli.factory import (
    ServePlan,
    absolute_targets,
    load_specs,
    publish,
    server_app,
)
from modelserve.config import Settings
from modelserve.errors import ModelserveError
from modelserve.http.app import prepare_schema_at
from modelserve.http.connections import raise_fd_limit
from modelserve.http.protocol import protocol_class
from modelserve.observability import multiprocess
from modelserve.observability.logging import resolve_format, uvicorn_log_config
from modelserve.service.spec import ServiceSpec

logger = logging.getLogger("modelserve")

FACTORY = "modelserve.cli.factory:build_app"
# Exit status for a command line that cannot work as given (click uses 2 for usage errors too).
EXIT_USAGE = 2
# What uvicorn exits with when the app fails to start; kept for start failures caught earlier.
EXIT_STARTUP = 3


class LogLevel(enum.StrEnum):
    """Levels accepted by `--log-level`."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


TargetsArg = Annotated[
    list[str] | None,
    typer.Argument(
        metavar="TARGET",
        help="Services to serve: path/file.py, path/file.py:Class, pkg.module or pkg.module:Class.",
        show_default=False,
    ),
]
RegistryOpt = Annotated[
    bool,
    typer.Option(
        "--registry",
        help="Also serve the model registry: every model's `production` alias (and its canary"
        " and shadow), following changes while running.",
    ),
]
HostOpt = Annotated[
    str | None,
    typer.Option(help="Interface to bind. (default 127.0.0.1; env MODELSERVE_SERVER__HOST)"),
]
PortOpt = Annotated[
    int | None, typer.Option(help="Port to bind. (default 8000; env MODELSERVE_SERVER__PORT)")
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Server processes sharing the port, each with its own model replicas."
        " (default 1; env MODELSERVE_SERVER__WORKERS)"
    ),
]
ReloadOpt = Annotated[
    bool, typer.Option("--reload", help="Restart when a file in a target's folder changes (dev).")
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        help="Device passed to setup() of services that do not pin one."
        " (default cpu; env MODELSERVE_DEVICE)"
    ),
]
GracefulOpt = Annotated[
    float | None,
    typer.Option(
        "--graceful-timeout",
        help="Seconds in-flight requests may take to finish after SIGTERM/SIGINT."
        " (default 30; env MODELSERVE_SERVER__GRACEFUL_TIMEOUT_S)",
    ),
]
LogLevelOpt = Annotated[
    LogLevel | None,
    typer.Option(
        case_sensitive=False, help="Log level. (default info; env MODELSERVE_SERVER__LOG_LEVEL)"
    ),
]
MaxBodyOpt = Annotated[
    int | None,
    typer.Option(
        "--max-body-bytes",
        help="Largest request body accepted; larger ones get 413."
        " (default 4194304; env MODELSERVE_HTTP__MAX_BODY_BYTES)",
    ),
]


def serve(
    targets: TargetsArg = None,
    registry: RegistryOpt = False,
    host: HostOpt = None,
    port: PortOpt = None,
    workers: WorkersOpt = None,
    reload: ReloadOpt = False,
    device: DeviceOpt = None,
    graceful_timeout: GracefulOpt = None,
    log_level: LogLevelOpt = None,
    max_body_bytes: MaxBodyOpt = None,
) -> None:
    """Serve the Service classes found in TARGET(s) over HTTP until SIGTERM or Ctrl+C."""
    targets = targets or []
    if not targets and not registry:
        fail("give at least one TARGET to serve, or --registry")
    server = {
        "host": host,
        "port": port,
        "workers": workers,
        "graceful_timeout_s": graceful_timeout,
        "log_level": log_level.value if log_level is not None else None,
    }
    overrides: dict[str, Any] = {"server": {k: v for k, v in server.items() if v is not None}}
    if max_body_bytes is not None:
        overrides["http"] = {"max_body_bytes": max_body_bytes}
    if device is not None:
        overrides["device"] = device
    plan = ServePlan(targets=absolute_targets(targets), overrides=overrides, registry=registry)

    try:
        settings = plan.settings()
        # Before binding a port: a production server with unsafe auth settings never listens.
        check_auth_settings(settings)
    except ModelserveError as exc:
        fail(exc.message)
    if reload and settings.server.workers > 1:
        fail("--reload runs one server process; drop --workers or --reload")
    try:
        # Loaded here even when worker processes load them again: a broken target must stop
        # the command with one clear line, not crash N workers one after another.
        specs = load_specs(targets)
    except ModelserveError as exc:
        fail(exc.message)
    except Exception as exc:  # user code failing in a way the loader does not wrap
        fail(f"cannot load {' '.join(targets)}: {exc!r}")

    # Before uvicorn starts, in every mode: a schema that is behind would otherwise fail in
    # the app's lifespan, which uvicorn reports as a multi-screen traceback. Here it is one
    # line saying what to run, with uvicorn's status for a failed start (3). It is also the
    # one migration with --workers: N workers migrating one SQLite file at once race on the
    # DDL, and uvicorn stops the whole server when one worker fails to start.
    try:
        prepare_schema_at(settings)
    except ModelserveError as exc:
        fail(exc.message, status=EXIT_STARTUP)

    # Before any worker starts (they inherit it): the connection cap (http.max_connections),
    # not the soft descriptor limit, must be what refuses a flood of connections.
    raise_fd_limit()
    _exit_cleanly_on_sigterm()
    if reload:
        publish(plan)
        _run(FACTORY, settings, reload=True, reload_dirs=watch_dirs(specs))
    elif settings.server.workers > 1:
        publish(plan)
        # Workers write their metrics to one shared directory so /metrics sums them (R22).
        metrics_dir = multiprocess.prepare(settings.server.workers)
        try:
            _run(FACTORY, settings, workers=settings.server.workers)
        finally:
            if metrics_dir is not None:
                metrics_dir.cleanup()
    else:
        try:
            app = server_app(settings, specs, registry=registry)
        except ModelserveError as exc:
            fail(exc.message)
        _run(app, settings)


def fail(message: str, *, status: int = EXIT_USAGE) -> NoReturn:
    """Print one line on stderr and exit with `status`: 2 (the command cannot work as given)
    by default, EXIT_STARTUP when the server's environment (its database) is not ready."""
    one_line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    typer.secho(f"modelserve: error: {one_line}", err=True, fg=typer.colors.RED)
    raise typer.Exit(status)


def watch_dirs(specs: list[ServiceSpec]) -> list[str]:
    """Folders holding the services' source files, for `--reload`."""
    dirs: list[str] = []
    for spec in specs:
        try:
            folder = str(Path(inspect.getfile(spec.cls)).resolve().parent)
        except (TypeError, OSError):  # a class without a source file: nothing to watch
            continue
        if folder not in dirs:
            dirs.append(folder)
    return dirs or [str(Path.cwd())]


def log_config(settings: Settings) -> dict[str, Any]:
    """uvicorn's logging setup: its records and ours through the one structured, redacted
    pipeline (JSON in prod mode). uvicorn applies it in every process it starts, supervisor
    and workers alike; without it uvicorn's own formatter took over the `modelserve` loggers
    and printed them as plain text, past the redaction step."""
    level = settings.observability.log_level or settings.server.log_level
    return uvicorn_log_config(
        fmt=resolve_format(settings.observability, settings.mode), level=level
    )


def http_protocol(settings: Settings) -> Any:
    """uvicorn's `http` setting: modelserve's protocol, always (it holds the header limits,
    read timeouts and connection cap; `server.fast_protocol` only switches its predict fast
    path), or plain httptools when the installed uvicorn differs from the one it builds on."""
    protocol = protocol_class()
    if protocol is not None:
        return protocol
    logger.warning(
        "plain httptools protocol: no header size limit, header/body read timeouts or"
        " connection cap (docs/reliability.md)"
    )
    return "httptools"


def _run(app: Any, settings: Settings, **mode: Any) -> None:
    options = _uvicorn_options(app, settings)
    if mode.get("workers", 1) > 1:
        _run_workers(app, options, workers=mode["workers"])
        return
    uvicorn.run(app, **options, **mode)


def _run_workers(app: str, options: dict[str, Any], *, workers: int) -> None:
    """uvicorn's multi-process supervisor, closing its listening socket on SIGTERM/SIGINT.

    uvicorn's own supervisor keeps the socket until every worker has exited: the workers stop
    accepting, but the kernel still completes new handshakes into the backlog, and those
    connections wait out the whole graceful timeout before they are reset (a POST a load
    balancer sent on one is lost). Closed at once, a new connection is refused and a load
    balancer moves on, as with one process or Gunicorn.
    """
    config = uvicorn.Config(app, workers=workers, **options)
    sock = config.bind_socket()
    DrainingSupervisor(config, sockets=[sock]).run()


class DrainingSupervisor(Multiprocess):
    """uvicorn's Multiprocess that stops listening as soon as it is told to stop."""

    def handle_term(self) -> None:
        self._stop_listening()
        super().handle_term()

    def handle_int(self) -> None:
        self._stop_listening()
        super().handle_int()

    def _stop_listening(self) -> None:
        for sock in self.sockets:
            sock.close()


def _uvicorn_options(app: Any, settings: Settings) -> dict[str, Any]:
    server = settings.server
    return {
        "factory": isinstance(app, str),
        "host": server.host,
        "port": server.port,
        "http": http_protocol(settings),
        "loop": "uvloop",
        "lifespan": "on",
        "server_header": False,
        # X-Forwarded-* rewriting is for deployments behind a trusted proxy; off by default it
        # can neither be spoofed by clients nor cost a middleware hop on every request.
        "proxy_headers": False,
        # Off until structured access logs land (a later issue): uvicorn's own access log
        # would print client addresses and full paths outside our redaction step.
        "access_log": False,
        "log_level": server.log_level,
        "log_config": log_config(settings),
        # uvicorn annotates this as int but only hands it to asyncio.wait_for: a float works
        # and keeps sub-second timeouts exact.
        "timeout_graceful_shutdown": server.graceful_timeout_s,
        # Read by plain httptools only; modelserve's protocol sweeps idle connections itself
        # with the same setting.
        "timeout_keep_alive": settings.http.keep_alive_timeout_s,
    }


def _exit_cleanly_on_sigterm() -> None:
    # uvicorn drains on SIGTERM, then restores the previous handler and raises the signal
    # again. With the default handler the process would then die "killed by SIGTERM" (143)
    # after a clean shutdown; supervisors and tests expect status 0. Before uvicorn takes over,
    # the same handler simply ends the command.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)
