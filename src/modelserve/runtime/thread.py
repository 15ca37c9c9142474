"""`ThreadReplica`: one service instance whose setup and predict run on a dedicated thread.

PyTorch, NumPy and ONNX Runtime release the GIL inside their kernels, so a thread per replica
costs no IPC and no copies while keeping the event loop free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import queue
import sys
import threading
from pathlib import Path
from typing import Any

from modelserve.service.base import Service, as_outputs, load_service
from modelserve.types import BatchDone

logger = logging.getLogger("modelserve.runtime")

_STOP = object()

# Python hands the GIL over in 5 ms slices by default. A replica running pure-Python code holds
# it for whole slices, and the event loop waits one slice or more each time it wakes, so a busy
# GIL-bound model slowed /livez to tens of milliseconds (R8). 1 ms slices bound that wait for a
# negligible cost in switching.
GIL_SWITCH_INTERVAL_S = 0.001


class ThreadReplica:
    """Runs one Service instance on its own thread; implements BatchExecutor."""

    def __init__(
        self,
        service_cls: type[Service[Any, Any]],
        *,
        device: str,
        label: str,
        artifacts: Path | None = None,
    ) -> None:
        self._service_cls = service_cls
        self._artifacts = artifacts
        self._device = device
        self._label = label
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        # The loaded instance once setup finished: streams (runtime/streaming.py) run its
        # predict_stream on threads of their own.
        self.service: Service[Any, Any] | None = None

    @property
    def busy(self) -> bool:
        """True while a batch is running."""
        return self._busy

    def start(self) -> concurrent.futures.Future[None]:
        """Start the thread; the returned future completes when `setup` has finished.

        Lowers the interpreter's GIL switch interval to GIL_SWITCH_INTERVAL_S (never raises it).
        """
        if sys.getswitchinterval() > GIL_SWITCH_INTERVAL_S:
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self._thread = threading.Thread(
            target=self._main, name=f"modelserve-{self._label}", daemon=True
        )
        self._thread.start()
        return self._ready

    def run_batch(self, items: list[Any], done: BatchDone) -> None:
        """Queue a batch for the replica thread; `done` is called from that thread."""
        self._jobs.put((items, done))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the thread to finish its current batch, run teardown and exit."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout_s)

    def _main(self) -> None:
        try:
            service = load_service(
                self._service_cls, device=self._device, artifacts=self._artifacts
            )
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        predict = service.predict
        loop = asyncio.new_event_loop() if inspect.iscoroutinefunction(predict) else None
        self.service = service
        self._ready.set_result(None)
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    break
                items, done = job
                self._busy = True
                try:
                    outputs: Any = predict(items)
                    if loop is not None:
                        outputs = loop.run_until_complete(outputs)
                    if not isinstance(outputs, list):
                        outputs = as_outputs(outputs)  # None stays None: invalid_model_output
                except BaseException as exc:
                    result: list[Any] | BaseException = exc
                else:
                    result = outputs
                finally:
                    self._busy = False
                done(result)
        finally:
            self.service = None
            try:
                service.teardown()
            except Exception:
                logger.exception("teardown of %s failed", self._label)
            if loop is not None:
                loop.close()
