"""`EmbeddedRunner`: the server process runs job chunks itself, next to its HTTP traffic.

A loop leases up to `concurrency` chunks at a time, only of jobs whose model version is ready
in this process, and processes each in its own task; it looks again when a chunk ends, when a
job is submitted here (`SqlJobQueue.wakeup`), or every `poll_interval_s` (jobs submitted to
another process, leases that expired). How much of a model a job may take is the processor's
business (`batch_share`). `burst()` runs until nothing is leasable, for tests and scripts.

Stopping gives every unfinished chunk back at once (its attempt not counted), so a restarted
or another server continues it without waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from modelserve.config import JobsConfig
from modelserve.errors import DatabaseUnavailableError
from modelserve.jobs.gateway import ModelGateway
from modelserve.jobs.processing import ChunkProcessor
from modelserve.jobs.work import JobQueue

logger = logging.getLogger("modelserve.jobs")

DEPTH_SAMPLE_S = 5.0


class EmbeddedRunner:
    """Leases and runs chunks in this process until stopped."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        processor: ChunkProcessor,
        gateway: ModelGateway,
        config: JobsConfig,
        wakeup: asyncio.Event | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._queue = queue
        self._processor = processor
        self._gateway = gateway
        self._config = config
        self._wakeup = wakeup or asyncio.Event()
        self._on_depth = on_depth
        self._active: set[asyncio.Task[str]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._sampled_at = 0.0

    @property
    def active(self) -> int:
        """Chunks running in this process now."""
        return len(self._active)

    def start(self) -> None:
        """Begin leasing in the background (call on the serving event loop)."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(
                self._run_forever(), name="modelserve-jobs"
            )

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop leasing; let running chunks finish for up to `timeout_s`, then give them back."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._active:
            _, late = await asyncio.wait(self._active, timeout=timeout_s)
            for task in late:
                task.cancel()  # the processor releases its lease on cancellation
            if late:
                await asyncio.gather(*late, return_exceptions=True)

    async def burst(self) -> int:
        """Lease and run chunks until none is leasable and none runs; how many ran."""
        ran = 0
        while True:
            started = await self._fill()
            ran += started
            if not self._active:
                return ran
            await asyncio.wait(self._active, return_when=asyncio.FIRST_COMPLETED)

    async def _fill(self) -> int:
        """Lease as many chunks as there are free slots and start them."""
        free = self._config.concurrency - len(self._active)
        if free <= 0:
            return 0
        servable = self._gateway.servable()
        if not servable:
            return 0
        leases = await self._queue.lease(servable=servable, limit=free)
        for lease in leases:
            task = asyncio.get_running_loop().create_task(self._processor.process(lease))
            self._active.add(task)
            task.add_done_callback(self._finished)
        return len(leases)

    def _finished(self, task: asyncio.Task[str]) -> None:
        self._active.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a job chunk task failed", exc_info=task.exception())
        self._wakeup.set()

    async def _run_forever(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self._fill()
                await self._sample_depth()
            except DatabaseUnavailableError:
                logger.warning("jobs: the database is unavailable; leasing again shortly")
            except Exception:
                logger.exception("jobs: leasing failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._config.poll_interval_s)

    async def _sample_depth(self) -> None:
        if self._on_depth is None or time.monotonic() - self._sampled_at < DEPTH_SAMPLE_S:
            return
        self._sampled_at = time.monotonic()
        self._on_depth(await self._queue.depth())
