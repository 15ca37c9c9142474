"""`OutboxRelay`: with Celery workers, the server publishes one broker message per chunk, and
never loses a job to a broker that is down.

Submit writes the job and its chunks (`queued`, `pending`) in one transaction and only then
wakes the relay; the relay reads the waiting chunks that have no message yet
(`job_chunks.published_at IS NULL`), publishes them, and only after the broker took them
marks them published. So the database is the outbox: a broker that is down at submit leaves
the chunks unmarked, and the relay publishes them on a later sweep (every
`outbox_interval_s`), from this server or any other replica, once the broker is back. A
server killed between publishing and marking publishes those chunks again: a chunk's second
message finds it leased or done and does nothing (the lease is the exactly-once, not the
broker). Workers keep the invariant going: a worker that cannot send a chunk's next message
(`jobs/delivery.py`) unmarks it, and the relay sends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from modelserve.config import JobsConfig
from modelserve.errors import DatabaseUnavailableError
from modelserve.jobs.periodic import Periodic
from modelserve.jobs.sql_queue import SqlJobQueue
from modelserve.jobs.work import ChunkPublisher, ChunkTask, Dispatch

logger = logging.getLogger("modelserve.jobs")

# Chunks read, published and marked per step: a 100,000-chunk job goes out in steps, so
# neither one query nor one publish holds everything.
BATCH = 500
# How often the queue depth metric is sampled (as the embedded runner does).
DEPTH_SAMPLE_S = 5.0


class OutboxRelay:
    """Publishes chunks that have no broker message, from a server process, until stopped."""

    def __init__(
        self,
        *,
        queue: SqlJobQueue,
        publisher: ChunkPublisher,
        config: JobsConfig,
        wakeup: asyncio.Event | None = None,
        batch: int = BATCH,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._queue = queue
        self._publisher = publisher
        self._config = config
        self._batch = batch
        self._loop = Periodic(
            "modelserve-jobs-outbox",
            self._pass,
            config.outbox_interval_s,
            wakeup=wakeup or asyncio.Event(),
        )
        self._on_depth = on_depth
        self._sampled_at = 0.0
        # Whether the broker refused the last sweep: an outage is logged when it starts and
        # when it ends, not every few seconds.
        self.failing = False

    def start(self) -> None:
        """Sweep now and then every `outbox_interval_s`, or when woken (a submit here)."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop sweeping (a publish in flight finishes in its thread; it is marked next time)."""
        await self._loop.stop()

    async def sweep(self) -> int:
        """Publish every waiting chunk that has no message; how many were published. Raises
        what the broker raised (nothing after the failed step is marked)."""
        sent = 0
        while True:
            chunks = await self._queue.unpublished(self._batch)
            if not chunks:
                return sent
            dispatches = [
                Dispatch(ChunkTask(c.job_id, c.index), self._config.queue_for(c.model))
                for c in chunks
            ]
            await asyncio.to_thread(self._publisher.publish, dispatches)
            await self._queue.mark_published([d.task for d in dispatches], published=True)
            sent += len(dispatches)
            if len(chunks) < self._batch:
                return sent

    async def _pass(self) -> None:
        """One sweep, logging a broker outage when it starts and when it ends."""
        try:
            sent = await self.sweep()
        except DatabaseUnavailableError:
            logger.warning("jobs outbox: the database is unavailable; trying again shortly")
        except Exception as exc:
            if not self.failing:
                logger.warning(
                    "jobs outbox: the broker refused chunks (%s); they stay queued and are"
                    " published when it is back",
                    _describe(exc),
                )
            self.failing = True
        else:
            if self.failing:
                logger.info("jobs outbox: the broker is back; %d chunks published", sent)
            self.failing = False
        with contextlib.suppress(Exception):  # a metric must never stop the relay
            await self._sample_depth()

    async def _sample_depth(self) -> None:
        if self._on_depth is None or time.monotonic() - self._sampled_at < DEPTH_SAMPLE_S:
            return
        self._sampled_at = time.monotonic()
        self._on_depth(await self._queue.depth())


def _describe(exc: BaseException) -> str:
    # Broker errors carry the URL in some versions' messages: the type is enough for a log.
    return type(exc).__name__
