"""`create_app`: the FastAPI application of one server process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from modelserve.cache import PredictionCache
from modelserve.config import Settings
from modelserve.db import migrate
from modelserve.db.engine import Database
from modelserve.http.connections import grace_left
from modelserve.http.docs_pages import build_docs_router
from modelserve.http.errors import install_error_handlers
from modelserve.http.middleware import RequestContextMiddleware
from modelserve.http.openai import OpenAIEndpoint, match_openai
from modelserve.http.openai_docs import build_openai_router
from modelserve.http.predict import Match, PredictEndpoint, Responder, match
from modelserve.http.predict_docs import build_model_docs_router
from modelserve.http.registry_routes import UPLOADS_PATH
from modelserve.http.routes import build_router
from modelserve.http.streaming import StreamEndpoint, stream_media
from modelserve.http.v2 import InferMatch, V2Endpoint, build_v2_router
from modelserve.http.v2 import match as match_v2
from modelserve.observability import tracing
from modelserve.runtime.heap import HeapFreezer
from modelserve.runtime.manager import (
    REPLICA_STOP_S,
    BatchTraceFactory,
    ModelRuntime,
    ObserverFactory,
    ReplicaFactory,
    default_replica_factory,
)
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec
from modelserve.types import ASGIApp, PredictGuard, Receive, RequestObserver, Scope, Send

if TYPE_CHECKING:
    from modelserve.observability.predlog import PredictionLog

logger = logging.getLogger("modelserve")

LIFESPAN_DRAIN_S = 2.0
REPLICA_STOP_FLOOR_S = 0.5

Hook = Callable[[FastAPI], Awaitable[None]]


class ModelserveApp(FastAPI):
    """FastAPI with the predict fast path in front of Starlette's routing and middleware."""

    predict_endpoint: PredictEndpoint
    # The Open Inference Protocol V2's infer route, dispatched before FastAPI too.
    v2_endpoint: V2Endpoint
    stream_endpoint: StreamEndpoint
    openai_endpoint: OpenAIEndpoint
    # Wrappers that must see predict requests too (CORS), around `dispatch`; None: none.
    entry: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.entry or self.dispatch)(scope, receive, send)

    def wants_now(self, scope: Scope) -> Match | InferMatch | None:
        """The predict route modelserve's HTTP protocol may hold this request for until its
        body is complete and then hand to `serve_now` (a one-input predict, nothing wrapping
        the fast path, tracing off); None for the ASGI path."""
        if self.entry is not None or tracing.enabled or scope["method"] != "POST":
            return None
        found = match(scope["path"])
        if found is None:
            return match_v2(scope["path"])  # a V2 infer request, whatever its rows
        if found[2] or stream_media(scope["headers"], scope["query_string"]):
            return None
        return found

    def serve_now(
        self, scope: Scope, route: Match | InferMatch, body: bytes, respond: Responder
    ) -> bool:
        """Serve a request on the route `wants_now` gave, without an ASGI task (see
        `PredictEndpoint.serve_now`); False when it needs the ASGI path after all."""
        if isinstance(route, InferMatch):
            return self.v2_endpoint.serve_now(route.name, route.version, scope, body, respond)
        name, version, _ = route
        return self.predict_endpoint.serve_now(name, version, scope, body, respond)

    async def dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The predict fast path, or FastAPI for everything else."""
        if scope["type"] == "http" and scope["method"] == "POST":
            found = match(scope["path"])
            if found is not None:
                name, version, is_batch = found
                media = None if is_batch else stream_media(scope["headers"], scope["query_string"])
                if media is not None:
                    await self.stream_endpoint(scope, receive, send, name, version, media)
                    return
                await self.predict_endpoint(scope, receive, send, *found)
                return
            v2 = match_v2(scope["path"])
            if v2 is not None:
                await self.v2_endpoint(scope, receive, send, *v2)
                return
        if scope["type"] == "http":
            kind = match_openai(scope["method"], scope["path"])
            if kind is not None:
                await self.openai_endpoint(scope, receive, send, kind)
                return
        await super().__call__(scope, receive, send)


def build_app(
    settings: Settings | None = None,
    services: Iterable[type[Service[Any, Any]] | ServiceSpec] = (),
    *,
    replica_factory: ReplicaFactory = default_replica_factory,
    observer_factory: ObserverFactory | None = None,
    guard: PredictGuard | None = None,
    observers: Sequence[RequestObserver] = (),
    database: Database | None = None,
    on_startup: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    prediction_log: PredictionLog | None = None,
    batch_trace_factory: BatchTraceFactory | None = None,
    prediction_cache: PredictionCache | None = None,
) -> ModelserveApp:
    """The serving core: models, predict fast path, catalogue and health routes; no auth,
    registry or observability (`create_app` adds those). For embedding and tests.

    On start (ASGI lifespan) the database is migrated (SQLite, or when `auto_migrate`) or
    checked to be at the schema this release needs (PostgreSQL: refuses to start otherwise),
    the `on_startup` hooks run, and models load in the background: `/livez` answers at once,
    `/readyz` turns 200 when they are ready. `guard` authenticates predict requests and
    `observers` see every predict response (see `modelserve.types`). `prediction_cache` is
    the cache of the Services that declare a `cache_policy` (built from `settings.cache`,
    without metrics, when None).
    """
    settings = settings or Settings()
    specs: Sequence[ServiceSpec] = [
        s if isinstance(s, ServiceSpec) else ServiceSpec.from_class(s) for s in services
    ]
    runtime = ModelRuntime(
        specs,
        device=settings.device,
        replica_factory=replica_factory,
        observer_factory=observer_factory,
        shadow_buffer=settings.registry.shadow_buffer,
        batch_trace_factory=batch_trace_factory,
        heap=HeapFreezer(enabled=settings.server.gc_freeze),
    )
    if database is None:
        database = Database(
            settings.resolved_database_url(),
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(prepare_schema, settings, database)
        for hook in on_startup:
            await hook(app)
        runtime.start()
        try:
            yield
        finally:
            # Hooks first, newest first: e.g. the registry deployer must stop before the
            # runtime, or a reconcile in flight could load a version into a stopping runtime.
            for hook in reversed(on_shutdown):
                try:
                    await hook(app)
                except Exception:
                    logger.exception("shutdown hook failed")
            # The server already waited up to the graceful timeout for in-flight requests before
            # the lifespan ends: the drain and the replicas' stop get only what is left of it
            # (a waiting drain of its own took the exit from graceful + 0.3 s to graceful + 2.3 s),
            # and at least REPLICA_STOP_FLOOR_S so that idle replicas still run their teardown.
            left = grace_left(settings.server.graceful_timeout_s)
            drain_s = min(left, LIFESPAN_DRAIN_S)
            logger.info("draining in-flight requests for at most %.1f s", drain_s)
            stop_s = max(REPLICA_STOP_FLOOR_S, min(left - drain_s, REPLICA_STOP_S))
            await runtime.stop(drain_s, stop_s)
            await cache.close()
            await database.dispose()
            logger.info("stopped")

    docs = settings.http.docs_enabled
    app = ModelserveApp(
        title="modelserve",
        version=_version(),
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their assets from a CDN: ours (added below) do not.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # FastAPI's own OpenTelemetry spans, metrics and exception logs would duplicate ours
        # (observability/): a second server span per request, in a trace of its own, with the
        # raw path, and exception messages sent to a log provider past our redaction step.
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.runtime = runtime
    app.state.settings = settings
    app.state.database = database
    cache = prediction_cache if prediction_cache is not None else PredictionCache(settings.cache)
    endpoint = PredictEndpoint(
        runtime,
        max_body_bytes=settings.http.max_body_bytes,
        max_batch_inputs=settings.http.max_batch_inputs,
        max_headers=settings.http.max_headers,
        guard=guard,
        observers=observers,
        prediction_log=prediction_log,
        cache=cache,
    )
    app.predict_endpoint = endpoint
    app.state.predict_endpoint = endpoint
    app.stream_endpoint = StreamEndpoint(
        endpoint.pipeline,
        heartbeat_s=settings.http.stream_heartbeat_s,
        graceful_timeout_s=settings.server.graceful_timeout_s,
    )
    app.openai_endpoint = OpenAIEndpoint(endpoint.pipeline, app.stream_endpoint, guard)
    app.include_router(build_openai_router(app.openai_endpoint))
    install_error_handlers(app)
    app.include_router(build_router(ready_when_any=settings.ready_when_any))
    app.include_router(build_model_docs_router(runtime, endpoint))
    app.v2_endpoint = V2Endpoint(endpoint)
    app.include_router(
        build_v2_router(runtime, endpoint, app.v2_endpoint, server_version=app.version)
    )
    if docs:
        app.include_router(build_docs_router(title=app.title, openapi_url="/openapi.json"))
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.http.max_body_bytes,
        max_headers=settings.http.max_headers,
        # Artifact uploads stream to disk under their own, larger cap.
        body_limits={UPLOADS_PATH: settings.registry.max_upload_bytes},
    )
    return app


def prepare_schema_at(settings: Settings) -> None:
    """`prepare_schema` for the settings' database, without an engine (CLI, before workers)."""
    url = settings.resolved_database_url()
    auto = settings.database.auto_migrate
    if auto is None:
        auto = url.startswith("sqlite")
    if auto:
        migrate.upgrade(url)
    else:
        migrate.check_at_head(url)


def prepare_schema(settings: Settings, database: Database) -> None:
    """Migrate to head when allowed (SQLite by default), else insist the schema is at head."""
    url = database.url
    auto = settings.database.auto_migrate
    if auto is None:
        auto = database.backend == "sqlite"
    if auto:
        migrate.upgrade(url)
    else:
        migrate.check_at_head(url)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelserve")
    except PackageNotFoundError:
        return "0.0.0"
