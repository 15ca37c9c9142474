"""How much of a served model a job may take: `ModelShare`, one per model version and process.

Three rules, checked before each job row goes into the model's batching engine:

1. **The batch share.** At most `permits` (= `batch_share * max_batch_size`) job rows are in the
   engine at once, over every chunk running in this process: every batch has room for requests.
2. **Requests first.** While items that are not the job's own wait in the engine's queue,
   the row waits (up to `YIELD_MAX_S`): those requests go into the next batch ahead of it.
3. **Pacing.** The share also bounds the job's *time* while requests are served: after each
   window of `permits` rows, if the model answered other items meanwhile (requests), the job
   rests so that it ran for at most `batch_share` of the wall time. With no other traffic it
   runs flat out. On one event loop, rows and requests share the process's CPU, so a share of
   the batch slots alone would not keep a busy job from slowing a model that answers in
   microseconds.
4. **Alone, whole batches.** While the model answers nothing but the job (the last window saw
   no other item and none waits), the job may have up to `burst` rows in flight (two full
   batches: one running, the next one queued) instead of `permits`. With only `permits`
   rows, a job alone ran batches of `batch_share * max_batch_size` with the engine idle
   between them, waiting for the next rows: 1,339 rows/s instead of 1,908 on a 4 ms +
   0.4 ms-per-item model (docs/performance.md, "Batch jobs"). The first window that sees a
   request brings the limit back to `permits`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from modelserve.errors import DeadlineExceededError, OverloadedError, ServiceUnavailableError
from modelserve.jobs.gateway import ItemSink

# How long a job row waits for queued requests to go first before it is submitted anyway.
YIELD_STEP_S = 0.002
YIELD_MAX_S = 0.5
# A row that ended with one of these never reached the model.
NOT_RUN = (OverloadedError, ServiceUnavailableError, DeadlineExceededError)
# The longest rest pacing imposes at once (a slow window must not stall a job for long).
MAX_REST_S = 1.0


class ModelShare:
    """Job rows one process may have in one model version's engine (see the module docstring).

    `items_seen` counts every item the version answered (requests and job rows); None turns
    pacing off.
    """

    def __init__(
        self,
        permits: int,
        *,
        share: float = 1.0,
        items_seen: Callable[[], int] | None = None,
        burst: int | None = None,
    ) -> None:
        self.permits = permits
        self.share = share
        # Rows in flight while the job is alone (rule 4); needs `items_seen` to tell.
        self.burst = max(permits, burst or permits) if items_seen is not None else permits
        self.in_flight = 0
        self.answered = 0
        # Times a row waited for queued requests, and windows after which the job rested.
        self.held_back = 0
        self.rested = 0
        self._slots = asyncio.Semaphore(self.burst)
        self._freed = asyncio.Event()
        # Whether the last window of rows saw no other item (the job alone). Until a window
        # closes nothing is known: a job starting on an idle model starts at full speed.
        self._alone = True
        self._items_seen = items_seen
        self._window: tuple[float, int, int] | None = None  # (start, seen, answered)
        self._taken_in_window = 0
        self._resume_at = 0.0

    async def take(self, sink: ItemSink) -> None:
        """Wait for a free slot, for queued requests and for any rest; then take the slot."""
        await self._slots.acquire()
        try:
            await self._within_share(sink)
            await self._pace()
            waited = 0.0
            if sink.queue_depth > self.in_flight:
                self.held_back += 1
            while sink.queue_depth > self.in_flight and waited < YIELD_MAX_S:
                await asyncio.sleep(YIELD_STEP_S)
                waited += YIELD_STEP_S
        except BaseException:
            self._slots.release()
            raise
        self.in_flight += 1

    def done(self, future: asyncio.Future[Any]) -> None:
        """Done callback of a row's future: `give`, counting it answered unless the engine
        shed it or it ran out of time (the model never ran it). Reading the exception also
        marks it seen: a chunk stopped early never awaits the rest of its rows."""
        shed = not future.cancelled() and isinstance(future.exception(), NOT_RUN)
        self.give(answered=not future.cancelled() and not shed)

    def give(self, *, answered: bool = True) -> None:
        """A row is done with the engine (`answered`: the model ran it); its slot is free."""
        self.in_flight -= 1
        if answered:
            self.answered += 1
        self._slots.release()
        self._freed.set()

    async def _within_share(self, sink: ItemSink) -> None:
        """Past `permits` rows in flight, wait for one to finish unless the job is alone."""
        while self.in_flight >= self.permits and not (
            self._alone and sink.queue_depth <= self.in_flight
        ):
            self._freed.clear()
            await self._freed.wait()

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        if self._resume_at > loop.time():
            await asyncio.sleep(self._resume_at - loop.time())
        if self._items_seen is None:
            return
        now = loop.time()
        if self._window is None:
            self._window = (now, self._items_seen(), self.answered)
            self._taken_in_window = 0
        self._taken_in_window += 1
        if self._taken_in_window <= self.permits:
            return
        started, seen, answered = self._window
        others = (self._items_seen() - seen) - (self.answered - answered)
        self._window = (now, self._items_seen(), self.answered)
        self._taken_in_window = 1
        self._alone = others <= 0
        if others > 0 and self.share < 1.0:
            rest = min(MAX_REST_S, (now - started) * (1 - self.share) / self.share)
            self.rested += 1
            self._resume_at = now + rest
            await asyncio.sleep(rest)
