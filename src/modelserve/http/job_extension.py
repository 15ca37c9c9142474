"""`JobsExtension`: the jobs' part of an app (routes of jobs, uploads and schedules; on
startup the services, and the background loops this process runs).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from modelserve.config import JobsConfig, Settings
from modelserve.errors import ConfigError
from modelserve.http.errors import status_and_code
from modelserve.http.job_routes import build_jobs_router, build_uploads_router
from modelserve.http.predict import PredictEndpoint
from modelserve.http.schedule_routes import build_schedules_router
from modelserve.jobs.delivery import ChunkDelivery
from modelserve.jobs.gateway import Dump, Parse, RuntimeGateway
from modelserve.jobs.outbox import OutboxRelay
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.retention import RetentionSweeper
from modelserve.jobs.runner import EmbeddedRunner
from modelserve.jobs.scheduler import JobScheduler
from modelserve.jobs.schedules import JobSchedules
from modelserve.jobs.service import Jobs
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.uploads import JobUploads
from modelserve.jobs.work import ChunkPublisher
from modelserve.registry.artifacts import ArtifactStore, default_store
from modelserve.runtime.manager import DeployedService

# Running chunks get this long to finish when the server stops; the rest are given back.
STOP_TIMEOUT_S = 2.0


def _codec(endpoint: PredictEndpoint) -> Any:
    def codec(deployed: DeployedService) -> tuple[Parse, Dump]:
        wire = endpoint.codec(deployed)
        return wire.parse_one, lambda output: wire.dump(output)[0]

    return codec


class JobsExtension:
    """The jobs' part of an app: routes, and on startup the service and embedded runner.

        jobs = JobsExtension(settings)
        app = create_app(..., on_startup=[jobs.startup], on_shutdown=[jobs.shutdown])
        jobs.install(app)

    Needs `app.state.database`, `runtime` and `predict_endpoint`; uses `auth` (audit lines)
    and `observability` (metrics) when the app has them.

    What runs in the background depends on the process. A server with the embedded runner
    (`jobs.runner=embedded`, `jobs.embedded`) runs chunks; a server with `jobs.runner=celery`
    runs the outbox relay that publishes them instead; every server runs the scheduler
    (`jobs.scheduler`). A `worker` process (`modelserve worker`) runs none of these: Celery
    hands it chunks one by one (`app.state.job_delivery`).
    """

    def __init__(
        self, settings: Settings, *, store: ArtifactStore | None = None, worker: bool = False
    ) -> None:
        self.settings = settings
        self._store = store
        self.worker = worker
        self.runner: EmbeddedRunner | None = None
        self.relay: OutboxRelay | None = None
        self.scheduler: JobScheduler | None = None
        self.sweeper: RetentionSweeper | None = None
        self.processor: ChunkProcessor | None = None

    def install(self, app: FastAPI) -> None:
        """Add the `/v1/uploads`, `/v1/jobs` and `/v1/schedules` routes."""
        app.include_router(build_uploads_router())
        app.include_router(build_jobs_router())
        app.include_router(build_schedules_router())

    async def startup(self, app: FastAPI) -> None:
        """Build the jobs service and, unless `jobs.embedded` is off, start the runner."""
        settings = self.settings
        config = settings.jobs
        store = self._store or default_store(settings.registry.artifact_dir, settings.data_dir)
        gateway = RuntimeGateway(
            app.state.runtime,
            codec=_codec(app.state.predict_endpoint),
            error_code=lambda exc: status_and_code(exc)[1],
            serve_alias=settings.registry.serve_alias,
        )
        queue = SqlJobQueue(app.state.database, lease_s=config.lease_s)
        auth = getattr(app.state, "auth", None)
        observability = getattr(app.state, "observability", None)
        metrics = getattr(observability, "metrics", None)
        uploads = JobUploads(
            app.state.database, store, config, part_limit=settings.http.max_body_bytes
        )
        app.state.jobs = Jobs(
            app.state.database,
            uploads,
            gateway,
            queue,
            config,
            audit=auth.audit if auth is not None else None,
        )
        self.processor = ChunkProcessor(
            queue=queue,
            store=store,
            gateway=gateway,
            config=config,
            observer=metrics.jobs if metrics is not None else None,
        )
        app.state.job_processor = self.processor
        app.state.job_delivery = ChunkDelivery(
            processor=self.processor, queue=queue, gateway=gateway, config=config
        )
        if self.worker:
            pass  # Celery hands this process its chunks
        elif config.runner == "celery":
            self.relay = OutboxRelay(
                queue=queue,
                publisher=celery_publisher(config),
                config=config,
                wakeup=queue.wakeup,
                on_depth=metrics.jobs.set_queue_depth if metrics is not None else None,
            )
            self.relay.start()
        elif config.embedded:
            self.runner = EmbeddedRunner(
                queue=queue,
                processor=self.processor,
                gateway=gateway,
                config=config,
                wakeup=queue.wakeup,
                on_depth=metrics.jobs.set_queue_depth if metrics is not None else None,
            )
            self.runner.start()
        app.state.job_runner = self.runner
        app.state.job_relay = self.relay
        app.state.job_schedules = JobSchedules(
            app.state.database, uploads, gateway, audit=app.state.jobs.audit
        )
        self.scheduler = JobScheduler(
            database=app.state.database, jobs=app.state.jobs, config=config
        )
        app.state.job_scheduler = self.scheduler
        self.sweeper = RetentionSweeper(database=app.state.database, store=store, config=config)
        app.state.job_sweeper = self.sweeper
        if config.scheduler and not self.worker:
            self.scheduler.start()
            if config.retention:
                self.sweeper.start()

    async def shutdown(self, app: FastAPI) -> None:
        """Stop the loops; the runner's running chunks finish or are given back at once."""
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        if self.sweeper is not None:
            await self.sweeper.stop()
            self.sweeper = None
        if self.relay is not None:
            await self.relay.stop()
            self.relay = None
        if self.runner is not None:
            await self.runner.stop(STOP_TIMEOUT_S)
            self.runner = None


def celery_publisher(config: JobsConfig) -> ChunkPublisher:
    """Celery's publisher, imported only now: the embedded runner needs no Celery installed."""
    try:
        from modelserve.jobs.celery_app import CeleryPublisher, build_celery
    except ImportError as exc:
        raise ConfigError(
            "jobs.runner=celery needs Celery: pip install 'modelserve[celery]'"
        ) from exc
    return CeleryPublisher(build_celery(config))
