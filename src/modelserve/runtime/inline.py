"""`InlineReplica`: `isolation = "inline"`, predict on the server's event loop.

For models that answer a batch in microseconds (a small linear model, a lookup table), handing
each batch to a replica thread costs more than the model: a queue put, waking the thread, two
GIL hand-overs, `call_soon_threadsafe` and a self-pipe wake-up of the loop, then resuming the
waiting request. Inline, the engine calls `run_now` from `submit` and the request's future is
resolved before it is awaited, so the request never suspends (docs/performance.md has the
figures). The price: while predict runs, nothing else on this process does, so `setup` still
runs on a thread (loading weights can take seconds), and a predict call slower than
`SLOW_BATCH_S` is logged as a warning, at most once a minute.

An `async def predict` runs as a task on the loop (`run_batch`), which suits models that await
I/O (a remote feature store, another service) rather than compute.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelserve.service.base import Service, as_outputs, load_service
from modelserve.types import BatchDone

logger = logging.getLogger("modelserve.runtime")

SLOW_BATCH_S = 0.005
WARN_EVERY_S = 60.0


class InlineReplica:
    """One Service instance whose predict runs on the event loop; implements BatchExecutor."""

    def __init__(
        self,
        service_cls: type[Service[Any, Any]],
        *,
        device: str,
        label: str,
        artifacts: Path | None = None,
    ) -> None:
        self._service_cls = service_cls
        self._device = device
        self._label = label
        self._artifacts = artifacts
        self._service: Service[Any, Any] | None = None
        self._predict: Callable[[list[Any]], Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned_at = -WARN_EVERY_S
        self._busy = False
        # The engine calls this directly when predict is synchronous (see BatchEngine).
        self.run_now: Callable[[list[Any]], list[Any]] | None = None

    @property
    def busy(self) -> bool:
        """True while an async predict is running."""
        return self._busy

    @property
    def service(self) -> Service[Any, Any] | None:
        """The loaded instance (None before setup and after stop), for streams."""
        return self._service

    def start(self) -> concurrent.futures.Future[None]:
        """Run `setup` on a short-lived thread; the future completes when it has finished."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        def setup() -> None:
            try:
                service = load_service(
                    self._service_cls, device=self._device, artifacts=self._artifacts
                )
            except BaseException as exc:
                ready.set_exception(exc)
                return
            self._service = service
            self._predict = service.predict
            if not inspect.iscoroutinefunction(service.predict):
                self.run_now = self._run_now
            ready.set_result(None)

        threading.Thread(target=setup, name=f"modelserve-setup-{self._label}", daemon=True).start()
        return ready

    def _run_now(self, items: list[Any]) -> list[Any]:
        predict = self._predict
        assert predict is not None
        started = time.perf_counter()
        outputs = predict(items)
        elapsed = time.perf_counter() - started
        if elapsed > SLOW_BATCH_S:
            self._warn_slow(elapsed, len(items))
        # Not a list: as_outputs leaves None as is, for the engine to report invalid_model_output.
        return outputs if isinstance(outputs, list) else as_outputs(outputs)

    def run_batch(self, items: list[Any], done: BatchDone) -> None:
        """Run one batch on the loop: at once when predict is sync, else as a task."""
        if self.run_now is not None:
            try:
                result: list[Any] | BaseException = self.run_now(items)
            except Exception as exc:
                result = exc
            done(result)
            return
        predict = self._predict
        assert predict is not None
        self._busy = True
        task = asyncio.get_running_loop().create_task(self._run_async(predict, items, done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_async(
        self, predict: Callable[[list[Any]], Any], items: list[Any], done: BatchDone
    ) -> None:
        try:
            outputs = await predict(items)
            result: list[Any] | BaseException = (
                outputs if isinstance(outputs, list) else as_outputs(outputs)
            )
        except BaseException as exc:  # cancelled at shutdown too: the batch must be answered
            self._busy = False
            done(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._busy = False
        done(result)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Run teardown (from the runtime's stopping thread) and drop the instance."""
        service, self._service = self._service, None
        self._predict = None
        self.run_now = None
        if service is None:
            return
        try:
            service.teardown()
        except Exception:
            logger.exception("teardown of %s failed", self._label)

    def _warn_slow(self, elapsed: float, size: int) -> None:
        now = time.monotonic()
        if now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        logger.warning(
            "%s: predict took %.1f ms for a batch of %d on the event loop; isolation='inline'"
            " is for models that answer in microseconds, use 'thread' for this one",
            self._label,
            elapsed * 1000.0,
            size,
        )
