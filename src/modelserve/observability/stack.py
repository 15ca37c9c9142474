"""`Observability`: the metrics, logs, prediction log and their lifecycle for one server process.

Two levels, because some of it is per process and some per app:

* `configure_process(settings)`, once per server process before it serves: structured logging,
  known secrets for redaction, tracing from `OTEL_*`, Sentry. `shutdown_process()` at exit.
* `Observability(settings)`, once per app: the Prometheus metrics and the observers feeding
  them (`observer_factory` for `ModelRuntime`, `request_observers()` for the fast path and the
  access middleware), the prediction log, the live-gauge sampler, and `/metrics` exposition
  (on the public port, or on `metrics_port`). `start(...)` and `stop()` run in the lifespan.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import time
import weakref
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client import start_wsgi_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from modelserve.observability import multiprocess, sentry, tracing
from modelserve.observability.access_log import AccessLogObserver
from modelserve.observability.logging import configure_logging, resolve_format
from modelserve.observability.metrics import Metrics, MetricsRequestObserver
from modelserve.observability.predlog import PredictionLog
from modelserve.observability.redaction import register_secret
from modelserve.observability.sampler import LiveSampler

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from modelserve.config import Settings
    from modelserve.db.engine import Database
    from modelserve.runtime.manager import ModelRuntime, ObserverFactory
    from modelserve.types import RequestObserver

logger = logging.getLogger("modelserve.observability")

REFRESH_TIMEOUT_S = 1.0
# Access lines are written and pending counts pushed this often (access_log.MAX_DELAY_S).
TICK_S = 0.25

_exit_hook = False


def release() -> str:
    """The installed modelserve version."""
    try:
        return version("modelserve")
    except PackageNotFoundError:
        return "0.0.0"


def register_settings_secrets(settings: Settings) -> None:
    """Teach the redactor every secret the settings hold, so none can leak verbatim."""
    for value in _secret_values(settings):
        register_secret(value)


def _secret_values(settings: Settings) -> Iterator[str]:
    from urllib.parse import urlsplit

    auth = settings.auth
    for name in ("jwt_secret", "jwt_private_key"):
        secret = getattr(auth, name, None)
        if secret is not None:
            yield secret.get_secret_value()
    for url in (settings.database_url, settings.redis_url, settings.cache.redis_url):
        if url is not None:
            with contextlib.suppress(ValueError):
                password = urlsplit(url.get_secret_value()).password
                if password:
                    yield password
    dsn = sentry.dsn_from(settings.observability)
    if dsn:
        yield dsn


def configure_process(settings: Settings) -> None:
    """Per-process setup before serving: logs, redaction secrets, tracing, Sentry."""
    config = settings.observability
    level = config.log_level or settings.server.log_level
    configure_logging(fmt=resolve_format(config, settings.mode), level=level)
    register_settings_secrets(settings)
    if tracing.configure_tracing():
        logger.info("tracing on: spans export as the OTEL_* variables say")
    sentry.init_sentry(
        sentry.dsn_from(config),
        environment=config.sentry_environment or settings.mode,
        release=release(),
    )
    global _exit_hook
    if not _exit_hook:
        # Every server process (each --workers worker too) flushes its spans and Sentry events
        # on the way out, whichever way uvicorn ends.
        _exit_hook = True
        atexit.register(shutdown_process)


def shutdown_process() -> None:
    """Flush spans and Sentry events before the process exits."""
    tracing.shutdown_tracing()
    sentry.close_sentry()


class _ScrapeView(Collector):
    """What the internal metrics port serves (from its own thread): fresh values, then all."""

    def __init__(self, observability: Observability, loop: asyncio.AbstractEventLoop) -> None:
        self._observability = observability
        self._loop = loop

    def collect(self) -> Iterator[Metric]:
        observability = self._observability
        # Pending counts belong to the event loop's thread: refresh there, wait briefly.
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def refresh() -> None:
            try:
                observability.refresh()
            finally:
                done.set_result(None)

        with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
            self._loop.call_soon_threadsafe(refresh)
            done.result(timeout=REFRESH_TIMEOUT_S)
        metrics = observability.metrics
        assert metrics is not None
        yield from multiprocess.scrape_registry(metrics.registry).collect()


class Observability:
    """Metrics, access log, prediction log and live sampling of one app."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        config = settings.observability
        self.config = config
        self.metrics: Metrics | None = metrics
        if self.metrics is None and config.metrics_enabled:
            self.metrics = Metrics()
        self.sampler = LiveSampler(self.metrics) if self.metrics is not None else None
        self.predlog = (
            PredictionLog(config, metrics=self.metrics) if config.predlog_enabled else None
        )
        if self.metrics is not None:
            self.metrics.build_info.labels(release()).set(1)
        self._server: WSGIServer | None = None
        self._observers: list[RequestObserver] | None = None
        self._access: AccessLogObserver | None = None
        self._ticker: asyncio.Task[None] | None = None

    # -- what the app wires ------------------------------------------------------------------

    @property
    def observer_factory(self) -> ObserverFactory | None:
        """`ModelRuntime(observer_factory=...)`: per-version engine metrics (None when off)."""
        return self.metrics.engine_observer if self.metrics is not None else None

    def request_observers(self) -> list[RequestObserver]:
        """Observers for `create_app(observers=...)` and the access middleware (built once)."""
        if self._observers is None:
            observers: list[RequestObserver] = []
            if self.metrics is not None:
                observers.append(MetricsRequestObserver(self.metrics))
            if self.config.access_log:
                self._access = AccessLogObserver()
                observers.append(self._access)
            self._observers = observers
        return self._observers

    @property
    def public_metrics(self) -> bool:
        """True when /metrics is served on the public port (no internal port configured)."""
        return self.metrics is not None and self.config.metrics_port is None

    # -- exposition ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Push pending counts and refresh live gauges (on the event loop)."""
        if self.sampler is not None:
            try:
                self.sampler.refresh()
            except Exception:  # a scrape still answers with what there is
                logger.exception("refreshing metrics failed")

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The /metrics body and content type (Prometheus text, or OpenMetrics on request).

        Call on the event loop: it first flushes this process's pending counts.
        """
        if self.metrics is None:
            raise RuntimeError("metrics are disabled")
        self.refresh()
        return multiprocess.render(multiprocess.scrape_registry(self.metrics.registry), accept)

    # -- lifecycle ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Periodic work on the event loop: push pending counts, write buffered access lines."""
        if self.metrics is not None:
            # Under several workers another process may answer the next scrape: what this one
            # counted must be in its file by then.
            self.metrics.flush()
        if self._access is not None:
            self._access.flush()

    async def _tick_forever(self) -> None:
        next_sample = 0.0
        while True:
            try:
                self.tick()
                now = time.monotonic()
                if self.sampler is not None:
                    if now >= next_sample:
                        self.sampler.sample()
                        next_sample = now + self.config.sample_interval_s
                    else:
                        # A model becoming ready must show in other workers' scrapes soon.
                        self.sampler.sample_models()
            except Exception:  # telemetry must never take the server down
                logger.exception("observability tick failed")
            await asyncio.sleep(TICK_S)

    async def start(self, *, runtime: ModelRuntime | None, database: Database | None) -> None:
        """Start the ticker, the prediction log writer and, if configured, the metrics port."""
        if self.sampler is not None and runtime is not None:
            self.sampler.attach(runtime)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(
                self._tick_forever(), name="modelserve-observability"
            )
            # Requests answered after `stop` (the runtime drains after the shutdown hooks) are
            # still counted: a last flush when the process exits, the loop long gone.
            atexit.register(_flush_at_exit, weakref.ref(self))
        if self.predlog is not None and database is not None:
            self.predlog.start(database)
        port = self.config.metrics_port
        # Under several workers the CLI's supervisor serves the port (serve_metrics_port).
        if self.metrics is not None and port is not None and not multiprocess.active():
            view = _ScrapeView(self, asyncio.get_running_loop())
            self._server, _ = start_wsgi_server(port, addr=self.config.metrics_host, registry=view)

    async def stop(self) -> None:
        """Stop background work, write the queued prediction log, drop this worker's gauges."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        self.refresh()
        self.tick()
        if self.predlog is not None:
            await self.predlog.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        multiprocess.mark_exited()


def _flush_at_exit(ref: weakref.ref[Observability]) -> None:
    observability = ref()
    if observability is not None and observability.metrics is not None:
        with contextlib.suppress(Exception):
            observability.metrics.flush()


def serve_metrics_port(settings: Settings) -> WSGIServer | None:
    """In a `--workers N` supervisor: serve the summed metrics of all workers on metrics_port.

    Call after `multiprocess.prepare(...)`; None when no port is configured or metrics are off.
    """
    config = settings.observability
    path = multiprocess.directory()
    if not config.metrics_enabled or config.metrics_port is None or path is None:
        return None
    server, _ = start_wsgi_server(
        config.metrics_port,
        addr=config.metrics_host,
        registry=multiprocess.aggregate_registry(path),
    )
    return server
