"""`JobWorkerHost`: the app of one `modelserve worker` process, run without an HTTP server.

A Celery worker process builds the same app `modelserve serve` builds (`create_app`, with
`jobs_worker=True`): the same models or registry versions, the same request codec and
batching engines, the same database and artifact store. Its lifespan runs on an event loop in
a thread of its own, so Celery's synchronous task calls `handle(task)`, which runs
`ChunkDelivery.handle` on that loop and waits for it: a chunk's rows go through the engine
exactly as in a server, and the task returns once the chunk was checkpointed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from modelserve.config import Settings
from modelserve.errors import ConfigError
from modelserve.http.assembly import create_app
from modelserve.jobs.delivery import ChunkDelivery
from modelserve.jobs.work import ChunkTask, Dispatch
from modelserve.service.spec import ServiceSpec
from modelserve.types import ServiceStatus

logger = logging.getLogger("modelserve.jobs")

STARTUP_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 30.0
T = TypeVar("T")


class JobWorkerHost:
    """The worker process's app, started on a background event loop."""

    def __init__(
        self, settings: Settings, specs: Sequence[ServiceSpec], *, registry: bool = False
    ) -> None:
        self.settings = settings
        self.specs = list(specs)
        self.registry = registry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._delivery: ChunkDelivery | None = None

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
        """Build the app and run its startup; return once every model settled (loaded, or
        failed to load). Raises what the startup raised."""
        started: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name="modelserve-job-worker", daemon=True
        )
        self._thread.start()
        started.result(timeout=timeout_s)

    def handle(self, task: ChunkTask) -> Dispatch | None:
        """Run one chunk message to its end (`ChunkDelivery.handle`), from Celery's thread."""
        return self._call(self._delivery_().handle(task))

    def unpublished(self, task: ChunkTask) -> None:
        """The chunk's next message was not sent: the server's outbox will send it."""
        self._call(self._delivery_().unpublished(task))

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Run the app's shutdown (engines drained, database closed) and end the thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _delivery_(self) -> ChunkDelivery:
        if self._delivery is None:
            raise ConfigError("the job worker's app is not started")
        return self._delivery

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _main(self, started: Future[None]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                logger.exception("the job worker's app stopped with an error")
        finally:
            loop.close()

    async def _serve(self, started: Future[None]) -> None:
        self._stop = asyncio.Event()
        app = create_app(self.settings, self.specs, serve_registry=self.registry, jobs_worker=True)
        async with app.router.lifespan_context(app):
            await _settled(app.state.runtime)
            self._delivery = app.state.job_delivery
            started.set_result(None)
            await self._stop.wait()


async def _settled(runtime: Any, poll_s: float = 0.05) -> None:
    """Until no model is loading (a worker that takes chunks before its model is ready
    would only send them back)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while any(d.status is ServiceStatus.LOADING for d in runtime):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(poll_s)
