"""`BatchEngine`: a bounded queue per service that groups requests into model-sized batches.

Flow: `submit` appends to the queue (full -> OverloadedError at once) and awaits a future with a
deadline timer; one collator task per engine waits for an idle executor, closes a batch by the
rules in `collator`, and hands it to the executor; the executor's thread reports back through
`loop.call_soon_threadsafe`, and `_finish` resolves the futures. The event loop never runs model
code, except for executors that offer `run_now` (isolation="inline", microsecond models): those
run the batch right in `_dispatch`, and nothing here blocks otherwise.

Failure isolation: when `predict` raises for a batch of several items (other clients' requests,
maybe), the batch is run again split in halves on the same executor, and each failing half is
split again, so that only the items that make `predict` raise fail and the others get their real
outputs (`_Isolation`). A batch of n items costs at most 2*ceil(log2(n)) extra calls while
bisecting; a group still failing when that budget is spent runs item by item (the leaves), so at
most n more. Services whose `predict` is not safe to repeat set `isolate_failures = False`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from modelserve.batcher.collator import (
    Pending,
    WaitGate,
    close_at,
    drop_dead_head,
    take_batch,
)
from modelserve.batcher.observer import EngineObserver, ExpiredWhere, NullObserver
from modelserve.errors import (
    DeadlineExceededError,
    ItemRejectedError,
    OutputMismatchError,
    OverloadedError,
    PredictionError,
    ServiceUnavailableError,
)
from modelserve.service.base import ItemError
from modelserve.service.batching import BatchingConfig
from modelserve.types import BatchExecutor

logger = logging.getLogger("modelserve.batcher")

# Converts one raw output of predict into the service's Output type, or raises ValueError.
OutputCheck = Callable[[Any], Any]
# Called once per finished batch with each item's trace (or None) and the batch's run time;
# only when at least one item is traced.
BatchTrace = Callable[[Sequence[object | None], float], None]

MIN_RETRY_AFTER_S = 1.0
MAX_RETRY_AFTER_S = 60.0


def bisection_budget(size: int) -> int:
    """Extra `predict` calls a failed batch of `size` may spend bisecting: 2*ceil(log2(size)),
    what it takes to find one poisoned item (two halves per level)."""
    return 2 * math.ceil(math.log2(size)) if size > 1 else 0


class _Isolation:
    """A failed batch being re-run in parts on the executor that ran it (held until done).

    `groups` is a stack of parts still to run; `budget` counts the bisection calls left; parts
    split once it is spent are single items (the leaves) and cost nothing from it.
    """

    __slots__ = ("budget", "executor", "groups")

    def __init__(self, executor: BatchExecutor, live: list[Pending]) -> None:
        self.executor = executor
        self.budget = bisection_budget(len(live))
        self.groups: list[tuple[list[Pending], bool]] = []
        self.split(live)

    def split(self, group: list[Pending]) -> None:
        """Queue the parts of a failed group: halves while the budget lasts, else singles."""
        if len(group) > 1 and self.budget >= 2:
            half = (len(group) + 1) // 2
            # Pushed second half first: the first half runs first (a stack).
            self.groups.append((group[half:], True))
            self.groups.append((group[:half], True))
        else:
            self.groups.extend(([p], False) for p in reversed(group))


class BatchEngine:
    """Queue, collate and dispatch one service's requests to its executors."""

    def __init__(
        self,
        *,
        name: str,
        config: BatchingConfig,
        executors: Sequence[BatchExecutor],
        check_output: OutputCheck | None = None,
        observer: EngineObserver | None = None,
        trace_batch: BatchTrace | None = None,
        isolate_failures: bool = True,
    ) -> None:
        if not executors:
            raise ValueError("BatchEngine needs at least one executor")
        self.name = name
        self.config = config
        self._executors = list(executors)
        self._idle: deque[BatchExecutor] = deque(self._executors)
        # Executors that run a batch synchronously on the loop (isolation="inline").
        self._run_now: dict[BatchExecutor, Callable[[list[Any]], list[Any]]] = {
            executor: run_now
            for executor in self._executors
            if (run_now := getattr(executor, "run_now", None)) is not None
        }
        self._check_output = check_output
        self._isolate_failures = isolate_failures
        self._observer: EngineObserver = observer or NullObserver()
        # Optional hook (observers written before it existed lack it): counts isolation re-runs.
        self._on_rerun: Callable[[], None] | None = getattr(self._observer, "on_rerun", None)
        self._trace_batch = trace_batch
        self._queue: deque[Pending] = deque()
        self._max_wait_s = config.max_wait_ms / 1000.0
        # True when a lone item never waits for company (see collator.close_at).
        self._closes_at_once = self._max_wait_s <= 0 or config.max_batch_size == 1
        # Skips a lone item's wait while no window gains company (a trickle of requests).
        self._gate = WaitGate()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._collator: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._deadlines: deque[Pending] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._running = 0
        self._accepting = False
        # Seconds of model time per item, smoothed; drives the Retry-After estimate.
        self._item_cost_s = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start collating; call from the event loop that will submit."""
        if self._collator is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._collator = self._loop.create_task(
            self._collate(), name=f"modelserve-collate-{self.name}"
        )

    async def drain(self, timeout_s: float) -> bool:
        """Stop accepting, wait up to `timeout_s` for queued and running work; True if drained."""
        self._accepting = False
        if self._queue or self._running:
            waiter = self._drained = asyncio.get_running_loop().create_future()
            self._notify()  # let the collator drop callers that already gave up
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout_s)
        drained = not self._queue and not self._running
        await self.close()
        return drained

    async def close(self) -> None:
        """Stop the collator and fail whatever is still queued."""
        self._accepting = False
        if self._collator is not None:
            self._collator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collator
            self._collator = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(
                    ServiceUnavailableError(f"model {self.name!r} is shutting down")
                )

    @property
    def queue_depth(self) -> int:
        """Items waiting for a batch (including ones whose caller already gave up)."""
        return len(self._queue)

    @property
    def running_batches(self) -> int:
        """Batches handed to executors and not yet answered."""
        return self._running

    @property
    def accepting(self) -> bool:
        """True while submit accepts new items."""
        return self._accepting

    # -- submit ----------------------------------------------------------------------------

    async def submit(self, item: Any, trace: object | None = None) -> Any:
        """Queue one item and return its output; raises ModelserveError on shed, timeout, error."""
        return await self.enqueue(item, trace)

    def enqueue(self, item: Any, trace: object | None = None) -> asyncio.Future[Any]:
        """`submit` without the coroutine: queue one item and return the future of its output.

        Sheds (OverloadedError) and refusals are raised here. With an inline executor the
        future of a lone request is already done when this returns, so the caller can read it
        without suspending. The predict fast path uses this: each coroutine level between a
        request and its future costs a frame on the way down and again on resumption.
        """
        loop = self._admit(1)
        now = loop.time()
        pending = Pending(item, loop.create_future(), now, now + self.config.timeout_s)
        pending.trace = trace
        queue = self._queue
        queue.append(pending)
        self._track(pending)
        if self._idle and len(queue) == 1 and self._closes_at_once:
            # Nothing to wait for and a replica is free: dispatch here rather than waking the
            # collator task, which saves a loop iteration per request at low concurrency.
            self._dispatch(self._idle.popleft(), take_batch(queue, 1, now))
        else:
            self._notify()
        return pending.future

    async def submit_many(self, items: Sequence[Any], trace: object | None = None) -> list[Any]:
        """Queue several items that share one deadline; return outputs or ItemRejectedError each.

        Errors that concern the whole request (shed, deadline, model failure) are raised.
        """
        if not items:
            return []
        loop = self._admit(len(items))
        now = loop.time()
        deadline = now + self.config.timeout_s
        batch = [Pending(item, loop.create_future(), now, deadline, trace=trace) for item in items]
        self._queue.extend(batch)
        for pending in batch:
            self._track(pending)
        self._notify()
        results = await asyncio.gather(*(p.future for p in batch), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, ItemRejectedError):
                raise result
        return results

    def _admit(self, count: int) -> asyncio.AbstractEventLoop:
        if not self._accepting or self._loop is None:
            raise ServiceUnavailableError(f"model {self.name!r} is not accepting requests")
        if len(self._queue) + count > self.config.max_queue:
            if count > self.config.max_queue:
                # Would never fit: retrying cannot help, so this is not an overload.
                raise OverloadedError(
                    f"request has {count} inputs but model {self.name!r} queues at most"
                    f" {self.config.max_queue}",
                    retry_after_s=MAX_RETRY_AFTER_S,
                )
            self._safe(self._observer.on_shed, count)
            raise OverloadedError(
                f"model {self.name!r} is at capacity ({self.config.max_queue} queued); retry later",
                retry_after_s=self._retry_after(),
            )
        return self._loop

    def _retry_after(self) -> float:
        backlog_s = len(self._queue) * self._item_cost_s / max(1, len(self._executors))
        return min(MAX_RETRY_AFTER_S, max(MIN_RETRY_AFTER_S, math.ceil(backlog_s)))

    def _expire(self, pending: Pending) -> None:
        if pending.future.done():
            return
        running = pending.taken_at is not None
        where: ExpiredWhere = "running" if running else "queue"
        self._safe(self._observer.on_expired, where)
        pending.future.set_exception(
            DeadlineExceededError(
                f"model {self.name!r} did not answer within {self.config.timeout_s:g}s"
                f" ({'while running' if running else 'while queued'})"
            )
        )

    # Deadlines: every item of an engine has the same timeout, so arrival order is deadline
    # order. One timer, armed for the oldest live item, replaces a timer per request; finished
    # items are pruned from the head as batches complete, so the deque stays as short as the
    # backlog.

    def _track(self, pending: Pending) -> None:
        self._deadlines.append(pending)
        if self._sweeper is None:
            assert self._loop is not None
            self._sweeper = self._loop.call_at(pending.deadline, self._sweep)

    def _prune_deadlines(self) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0].future.done():
            deadlines.popleft()

    def _sweep(self) -> None:
        loop = self._loop
        assert loop is not None
        self._sweeper = None
        now = loop.time()
        deadlines = self._deadlines
        while deadlines:
            head = deadlines[0]
            if head.future.done():
                deadlines.popleft()
            elif head.deadline <= now:
                deadlines.popleft()
                self._expire(head)
            else:
                self._sweeper = loop.call_at(head.deadline, self._sweep)
                break

    def _notify(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    # -- collate ---------------------------------------------------------------------------

    async def _wait(self, until: float | None = None) -> None:
        """Sleep until notified (new item, idle executor) or until loop time `until`."""
        assert self._loop is not None
        wakeup = self._wakeup = self._loop.create_future()
        timer = None if until is None else self._loop.call_at(until, _resolve, wakeup)
        try:
            await wakeup
        finally:
            self._wakeup = None
            if timer is not None:
                timer.cancel()

    async def _collate(self) -> None:
        assert self._loop is not None
        loop = self._loop
        queue = self._queue
        max_batch = self.config.max_batch_size
        gate = self._gate
        while True:
            drop_dead_head(queue)
            if not queue and not self._running and self._drained is not None:
                _resolve(self._drained)
            if not queue or not self._idle:
                await self._wait()
                continue
            closes = close_at(
                queued=len(queue),
                max_batch=max_batch,
                first_arrival=queue[0].arrived,
                max_wait_s=self._max_wait_s,
            )
            waited = False
            if closes is not None and loop.time() < closes:
                if len(queue) == 1 and not gate.should_wait():
                    closes = None  # a trickle: nobody has joined a lone item's window lately
                else:
                    await self._wait(closes)
                    waited = True
                    if len(queue) < max_batch and loop.time() < closes:
                        continue  # woken early by an item that did not fill the batch
            batch = take_batch(queue, max_batch, loop.time())
            if batch:
                gate.record(len(batch), waited)
                self._dispatch(self._idle.popleft(), batch)

    def _dispatch(self, executor: BatchExecutor, batch: list[Pending]) -> None:
        loop = self._loop
        assert loop is not None
        self._running += 1
        started = loop.time()
        run_now = self._run_now.get(executor) if self._run_now else None
        if run_now is not None:
            # Inline: answered before `submit` awaits, so a lone request never suspends. The
            # executor stays taken until the loop's next pass, so requests arriving in the
            # same pass queue up and run as one batch (from the collator) instead of one by one.
            try:
                result: list[Any] | BaseException = run_now([p.item for p in batch])
            except Exception as exc:
                result = exc
            self._finish(executor, batch, result, started, release_later=True)
            return

        def done(result: list[Any] | BaseException) -> None:
            # Called once from the executor's thread.
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._finish, executor, batch, result, started)

        try:
            executor.run_batch([p.item for p in batch], done)
        except Exception as exc:  # an executor that cannot even take the batch
            self._finish(executor, batch, exc, started)

    def _finish(
        self,
        executor: BatchExecutor,
        batch: list[Pending],
        result: list[Any] | BaseException,
        started: float,
        *,
        release_later: bool = False,
        part: bool = False,
    ) -> None:
        """Account for a batch that ran and answer its items; `part` for a re-run part of a
        failed batch (`_part_done`), whose executor and accounting the isolation keeps."""
        if not part:
            loop = self._loop
            assert loop is not None
            isolating = (
                isinstance(result, BaseException)
                and len(batch) > 1
                and self._isolate_failures
                and not isinstance(result, ServiceUnavailableError | DeadlineExceededError)
            )
            if not isolating:
                self._running -= 1
                if release_later:
                    loop.call_soon(self._release, executor)
                else:
                    self._release(executor)
            now = loop.time()
            run_s = now - started
            self._item_cost_s = 0.8 * self._item_cost_s + 0.2 * (run_s / len(batch))
            self._safe(self._observer.on_batch, len(batch), started - batch[0].arrived, run_s)
            if self._trace_batch is not None and any(p.trace is not None for p in batch):
                self._safe(self._trace_batch, [p.trace for p in batch], run_s)
            if isolating and isinstance(result, BaseException):  # (the second test narrows)
                self._isolate(executor, batch, result)
                return
        if isinstance(result, BaseException):
            self._fail_all(batch, result)
            return
        if not isinstance(result, list) or len(result) != len(batch):
            got = len(result) if isinstance(result, list) else type(result).__name__
            self._fail_all(
                batch,
                OutputMismatchError(
                    f"model {self.name!r}: predict returned {got} outputs for {len(batch)}"
                    " inputs; it must return a list with one output (or ItemError) per input"
                ),
            )
            return
        check = self._check_output
        for pending, output in zip(batch, result, strict=True):
            future = pending.future
            if future.done():
                continue  # caller gave up; its work is already counted as abandoned
            if isinstance(output, ItemError):
                future.set_exception(
                    ItemRejectedError(output.message, code=output.code, details=output.details)
                )
                continue
            if check is not None:
                try:
                    output = check(output)
                except ValueError as exc:
                    self._safe(self._observer.on_error, "OutputMismatchError")
                    logger.error("model %r returned an invalid output: %s", self.name, exc)
                    future.set_exception(
                        OutputMismatchError(f"model {self.name!r} returned an invalid output")
                    )
                    continue
            future.set_result(output)
        self._prune_deadlines()

    # -- failure isolation (see the module docstring) ----------------------------------------

    def _isolate(self, executor: BatchExecutor, batch: list[Pending], error: BaseException) -> None:
        """Re-run a failed batch in parts on `executor`, which stays taken until done."""
        logger.warning(
            "model %r raised %s for a batch of %d; re-running it in parts to find the failing"
            " items",
            self.name,
            type(error).__name__,
            len(batch),
        )
        live = [p for p in batch if not p.future.done()]
        self._run_parts(_Isolation(executor, live))

    def _run_parts(self, state: _Isolation) -> None:
        """Run the next part of `state` (several in a row for an inline executor)."""
        executor = state.executor
        run_now = self._run_now.get(executor) if self._run_now else None
        loop = self._loop
        assert loop is not None
        while state.groups:
            group, counted = state.groups.pop()
            group = [p for p in group if not p.future.done()]
            if not group:
                continue  # every caller of this part gave up: nothing to learn from it
            if counted:
                state.budget -= 1
            if self._on_rerun is not None:
                self._safe(self._on_rerun)
            items = [p.item for p in group]
            if run_now is not None:
                try:
                    result: list[Any] | BaseException = run_now(items)
                except Exception as exc:
                    result = exc
                self._part_done(state, group, result, schedule=False)
                continue

            def done(result: list[Any] | BaseException, group: list[Pending] = group) -> None:
                # Called once from the executor's thread.
                with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                    loop.call_soon_threadsafe(self._part_done, state, group, result)

            try:
                executor.run_batch(items, done)
            except Exception as exc:
                self._part_done(state, group, exc, schedule=False)
                continue
            return  # resumed from `_part_done`
        self._running -= 1
        if run_now is not None:
            loop.call_soon(self._release, executor)
        else:
            self._release(executor)
        self._prune_deadlines()

    def _part_done(
        self,
        state: _Isolation,
        group: list[Pending],
        result: list[Any] | BaseException,
        *,
        schedule: bool = True,
    ) -> None:
        if not isinstance(result, BaseException) or len(group) == 1:
            # Outputs, or the poisoned item's own error (as if it had run unbatched).
            self._finish(state.executor, group, result, 0.0, part=True)
        else:
            state.split(group)
        if schedule:
            self._run_parts(state)

    def _release(self, executor: BatchExecutor) -> None:
        self._idle.append(executor)
        # The collator only needs a free executor when something is queued (or a drain waits
        # for the last batch); otherwise the next `submit` wakes it. Not waking it here saves a
        # task step per batch, which at one client is a task step per request.
        if self._queue or self._drained is not None:
            self._notify()

    def _fail_all(self, batch: list[Pending], exc: BaseException) -> None:
        if isinstance(exc, PredictionError):
            error: PredictionError = exc
            logger.error("%s", exc)
        else:
            logger.error(
                "model %r raised while predicting a batch of %d",
                self.name,
                len(batch),
                exc_info=exc,
            )
            error = PredictionError(f"model {self.name!r} failed while predicting")
        self._safe(self._observer.on_error, type(error).__name__)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
        self._prune_deadlines()

    @staticmethod
    def _safe(hook: Callable[..., None], *args: Any) -> None:
        try:
            hook(*args)
        except Exception:  # an observer must never break inference
            logger.exception("engine observer failed")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
