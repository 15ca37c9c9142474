"""`create_app`: the whole product in one ASGI app, assembled from settings.

The serving core (`http/app.py::build_app`) plus, as the settings say: authentication, API keys
and rate limits (`modelserve.auth`, on by default), the model registry's API and, with
`serve_registry`, the deployer that serves what its aliases point at (`modelserve.registry`),
batch jobs and their embedded runner (`modelserve.jobs`),
metrics, access logs, tracing spans and the prediction log (`modelserve.observability`),
docs/metrics exposure and CORS.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI

from modelserve.auth.signing import check_auth_settings
from modelserve.auth.system import AuthSystem
from modelserve.batcher.engine import BatchTrace
from modelserve.cache import PredictionCache
from modelserve.config import Settings
from modelserve.db.engine import Database
from modelserve.http.access import AccessMiddleware
from modelserve.http.app import Hook, ModelserveApp, build_app
from modelserve.http.auth_routes import build_auth_router
from modelserve.http.cache_routes import build_cache_router
from modelserve.http.exposure import ExposureMiddleware, cors_middleware
from modelserve.http.job_extension import JobsExtension
from modelserve.http.observability_routes import build_observability_router
from modelserve.http.registry_routes import RegistryExtension
from modelserve.observability import tracing
from modelserve.observability.stack import Observability
from modelserve.registry.artifacts import ArtifactStore
from modelserve.runtime.manager import ReplicaFactory, default_replica_factory
from modelserve.service.base import Service
from modelserve.service.spec import ServiceSpec
from modelserve.types import RequestObserver


def create_app(
    settings: Settings | None = None,
    services: Iterable[type[Service[Any, Any]] | ServiceSpec] = (),
    *,
    serve_registry: bool = False,
    artifact_store: ArtifactStore | None = None,
    replica_factory: ReplicaFactory = default_replica_factory,
    observers: Sequence[RequestObserver] = (),
    jobs_worker: bool = False,
) -> ModelserveApp:
    """Build the app serving `services` (Service classes or ServiceSpecs), with everything on.

    `jobs_worker` builds it for `modelserve worker`: the same models and job processing, but
    no job loop of its own (no embedded runner, outbox relay or scheduler): Celery feeds it.

    Raises ConfigError when the settings are unsafe for production (e.g. `mode="prod"`
    without a real JWT secret), before anything is started.
    """
    settings = settings or Settings()
    check_auth_settings(settings)
    database = Database(
        settings.resolved_database_url(),
        echo=settings.database.echo,
        pool_size=settings.database.pool_size,
    )
    auth = AuthSystem(settings, database) if settings.auth.enabled else None
    observability = Observability(settings)
    request_observers = [*observability.request_observers(), *observers]
    registry = RegistryExtension(settings, serve=serve_registry, store=artifact_store)
    on_startup: list[Hook] = []
    on_shutdown: list[Hook] = []

    async def start_observability(app: FastAPI) -> None:
        await observability.start(runtime=app.state.runtime, database=app.state.database)

    async def stop_observability(app: FastAPI) -> None:
        await observability.stop()

    # First in, last out: metrics and the prediction log outlive everything they watch.
    on_startup.append(start_observability)
    on_shutdown.append(stop_observability)
    if auth is not None:

        async def start_auth(app: FastAPI) -> None:
            await auth.start()

        async def stop_auth(app: FastAPI) -> None:
            await auth.close()

        on_startup.append(start_auth)
        on_shutdown.append(stop_auth)
    # After auth: the registry's first reconcile may need users that auth's bootstrap made.
    on_startup.append(registry.startup)
    on_shutdown.append(registry.shutdown)
    # Last in, first out: the job runner stops before the models it feeds.
    jobs = JobsExtension(settings, store=artifact_store, worker=jobs_worker)
    on_startup.append(jobs.startup)
    on_shutdown.append(jobs.shutdown)

    app = build_app(
        settings,
        services,
        replica_factory=replica_factory,
        guard=auth.guard if auth is not None else None,
        observers=request_observers,
        database=database,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        observer_factory=observability.observer_factory,
        prediction_log=observability.predlog,
        batch_trace_factory=_batch_tracer,
        prediction_cache=PredictionCache(
            settings.cache,
            observer=observability.metrics.cache if observability.metrics is not None else None,
        ),
    )
    app.state.auth = auth
    app.state.observability = observability
    app.include_router(build_observability_router(observability))
    app.include_router(build_auth_router())
    app.include_router(build_cache_router(app.predict_endpoint.pipeline.cache))
    registry.install(app)
    jobs.install(app)
    app.add_middleware(
        ExposureMiddleware,
        docs=settings.auth.docs_exposure,
        metrics=settings.auth.metrics_exposure,
        authenticate=auth.guard.authenticate if auth is not None else None,
    )
    # Outermost, so the access log and metrics see the final status of every FastAPI route,
    # exposure refusals included (the predict fast path reports to the same observers itself).
    app.add_middleware(AccessMiddleware, observers=request_observers)
    dispatch = app.dispatch  # one bound method: each attribute read makes a new one
    wrapped = cors_middleware(dispatch, settings.auth)
    if wrapped is not dispatch:
        app.entry = wrapped
    return app


def _batch_tracer(spec: ServiceSpec) -> BatchTrace:
    return tracing.batch_tracer(spec.name, spec.version)
