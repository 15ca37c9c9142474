"""`ProcessReplica`: one service instance in its own worker process, for GIL-bound models.

Each replica is one process started with the "spawn" method, so `replicas = N` runs N copies of
a pure-Python model in parallel. The worker (`process_worker`) imports the Service class by file
path or module name and runs `setup`; then each batch is one frame each way over a Pipe.

Security: spawn pickles only the start-up arguments, which are plain strings (where the class
lives, the device, a label) and the pipe; nothing derived from a request is ever pickled or
unpickled. Batches cross as msgpack (`process_codec`): inputs as JSON-mode dicts re-validated by
the worker; outputs as JSON-mode dicts validated here. An invalid output fails its item only; a
wrong number of outputs fails the batch with OutputMismatchError.

Failures: if predict raises, the batch fails with a PredictionError naming the service and the
worker's traceback is logged here, never sent to clients. If the worker dies mid-batch
(segfault, `os._exit`, OOM kill), the batch fails with "worker process exited" and a new worker
starts at once. Batches handed over meanwhile wait, in order: a crash usually comes from one bad
batch, failing the requests behind it would turn one client's error into many, and their
deadlines still bound the wait. Only while a new worker's setup keeps failing (retried with
backoff) are batches failed fast.

One supervisor thread per replica starts workers, reads replies and reaps exits; `stop` joins
it and the worker, so no thread or zombie process is left behind.
"""

from __future__ import annotations

import concurrent.futures
import enum
import logging
import multiprocessing
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from modelserve.errors import (
    OutputMismatchError,
    PredictionError,
    ServiceLoadError,
    ServiceUnavailableError,
)
from modelserve.runtime.process_codec import (
    BatchCodec,
    BatchFailed,
    BatchResult,
    EncodedInputs,
    InvalidOutput,
    Message,
    Ready,
    SetupFailed,
    StopRequest,
    encode,
)
from modelserve.runtime.process_worker import WorkerHandle, describe_exit
from modelserve.service.spec import ServiceSpec
from modelserve.types import BatchDone

logger = logging.getLogger("modelserve.runtime")

# How long a worker that closed its pipe gets to finish exiting before it is killed.
REAP_TIMEOUT_S = 5.0
# Retry delays after a replacement worker failed its setup: doubles up to the maximum.
RESTART_BACKOFF_S = 0.5
MAX_RESTART_BACKOFF_S = 30.0

_STOP_FRAME = encode(StopRequest())


class WorkerState(enum.StrEnum):
    """Where a replica's worker process stands.

    STARTING -> READY | STOPPED; READY -> RESTARTING (worker died) | STOPPED;
    RESTARTING -> READY | DOWN (setup failed) | STOPPED; DOWN -> RESTARTING | STOPPED.
    """

    STARTING = "starting"
    READY = "ready"
    RESTARTING = "restarting"
    DOWN = "down"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True, eq=False)
class _Batch:
    """One batch on its way to a worker: the encoded inputs and how to answer."""

    inputs: EncodedInputs
    done: BatchDone


class ProcessReplica:
    """Runs one Service instance in a worker process; implements the Replica protocol."""

    def __init__(
        self,
        spec: ServiceSpec,
        *,
        device: str,
        label: str,
        restart_backoff_s: float = RESTART_BACKOFF_S,
    ) -> None:
        if spec.source is None:
            raise ValueError(f"model {spec.name!r} has no source a worker process can import")
        self._source = spec.source
        self._artifacts = str(spec.artifact_dir) if spec.artifact_dir is not None else None
        self._name = spec.name
        self._device = device
        self._label = label
        self._restart_backoff_s = restart_backoff_s
        self._codec = BatchCodec(spec.input_type, spec.output_type)
        self._ctx = multiprocessing.get_context("spawn")
        # Guards state, worker, inflight and pending, and keeps frames on the pipe whole.
        self._lock = threading.Lock()
        self._state = WorkerState.STARTING
        self._stopping = threading.Event()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self._worker: WorkerHandle | None = None
        self._inflight: _Batch | None = None
        self._pending: deque[_Batch] = deque()
        self.restarts = 0

    # -- Replica protocol ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a batch is running in the worker or waiting for one."""
        return self._inflight is not None or bool(self._pending)

    @property
    def state(self) -> WorkerState:
        """Where the worker process stands."""
        return self._state

    @property
    def pid(self) -> int | None:
        """Process id of the current worker, if one is running."""
        worker = self._worker
        return worker.pid if worker is not None else None

    def start(self) -> concurrent.futures.Future[None]:
        """Start the worker; the future completes when its `setup` finished (or failed)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._supervise, name=f"modelserve-{self._label}-io", daemon=True
                )
                self._thread.start()
        return self._ready

    def run_batch(self, items: list[Any], done: BatchDone) -> None:
        """Send a batch to the worker (or queue it while one starts).

        `done` is called exactly once: from the supervisor thread, or before this returns when
        the batch cannot be run at all (replica stopped or down, every input unencodable).
        """
        inputs = self._codec.encode_inputs(items)
        if inputs.rejected and not inputs.sent:
            done([inputs.rejected[index] for index in range(inputs.size)])
            return
        batch = _Batch(inputs, done)
        error: PredictionError | None = None
        with self._lock:
            if self._stopping.is_set() or self._state is WorkerState.STOPPED:
                error = PredictionError(f"model {self._name!r}: replica {self._label} is stopped")
            elif self._state is WorkerState.DOWN:
                error = PredictionError(
                    f"model {self._name!r}: its worker process could not be restarted; retrying"
                )
            elif self._state is WorkerState.READY and self._inflight is None:
                self._send_locked(batch)
            else:
                self._pending.append(batch)
        if error is not None:
            done(error)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let the worker finish its batch and tear down; kill it after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            thread = self._thread
            first = not self._stopping.is_set()
            self._stopping.set()
            waiting = list(self._pending)
            self._pending.clear()
            if first and self._worker is not None:
                self._worker.send(_STOP_FRAME)
            if thread is None:
                self._state = WorkerState.STOPPED
        self._fail(waiting, ServiceUnavailableError(f"model {self._name!r} is shutting down"))
        if thread is None:
            return
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            logger.warning(
                "worker process %s did not stop in %.1fs; killing it", self._label, timeout_s
            )
        # Looping covers a replacement worker that was being started while we waited.
        give_up = time.monotonic() + REAP_TIMEOUT_S
        while thread.is_alive() and time.monotonic() < give_up:
            with self._lock:
                if self._worker is not None:
                    self._worker.kill()
            thread.join(0.2)

    def _send_locked(self, batch: _Batch) -> None:
        assert self._worker is not None
        self._inflight = batch
        self._worker.send(batch.inputs.payload)

    def _fail(self, batches: list[_Batch], error: Exception) -> None:
        for batch in batches:
            self._answer(batch, error)

    def _answer(self, batch: _Batch, result: list[Any] | BaseException) -> None:
        try:
            batch.done(result)
        except Exception:  # a broken callback must not take the supervisor down
            logger.exception("batch callback of %s failed", self._label)

    # -- supervisor thread -----------------------------------------------------------------

    def _supervise(self) -> None:
        failures = 0
        try:
            while not self._stopping.is_set():
                problem = self._launch()
                if problem is None:
                    failures = 0
                    if not self._ready.done():
                        self._ready.set_result(None)
                    self._serve()
                    continue
                if not self._ready.done():
                    self._ready.set_exception(ServiceLoadError(problem))
                    break
                failures += 1
                logger.error("could not restart worker process %s: %s", self._label, problem)
                with self._lock:
                    self._state = WorkerState.DOWN
                    waiting = list(self._pending)
                    self._pending.clear()
                self._fail(
                    waiting,
                    PredictionError(
                        f"model {self._name!r}: its worker process could not be restarted; retrying"
                    ),
                )
                delay = self._restart_backoff_s * 2 ** (failures - 1)
                if self._stopping.wait(min(MAX_RESTART_BACKOFF_S, delay)):
                    break
                with self._lock:
                    self._state = WorkerState.RESTARTING
        except BaseException as exc:  # a bug here must not leave start() or a batch hanging
            logger.exception("supervisor of worker process %s failed", self._label)
            if not self._ready.done():
                self._ready.set_exception(exc)
            self._reap()
        finally:
            with self._lock:
                self._state = WorkerState.STOPPED
                left = list(self._pending)
                self._pending.clear()
                if self._inflight is not None:
                    left.append(self._inflight)
                    self._inflight = None
            self._fail(left, ServiceUnavailableError(f"model {self._name!r} is shutting down"))

    def _launch(self) -> str | None:
        """Start a worker and wait for its setup; None when ready, else what went wrong."""
        try:
            worker = WorkerHandle.spawn(
                self._ctx,
                self._source,
                device=self._device,
                label=self._label,
                artifacts=self._artifacts,
            )
        except Exception as exc:
            return f"cannot start a worker process: {type(exc).__name__}: {exc}"
        with self._lock:
            self._worker = worker
            if self._stopping.is_set():
                worker.send(_STOP_FRAME)
        message = worker.receive()
        if isinstance(message, Ready):
            with self._lock:
                self._state = WorkerState.READY
                if self._pending and not self._stopping.is_set():
                    self._send_locked(self._pending.popleft())
            logger.info("worker process %s (pid %s) is ready", self._label, message.pid)
            return None
        if isinstance(message, SetupFailed):
            logger.error(
                "setup of model %r failed in worker process %s:\n%s",
                self._name,
                self._label,
                message.traceback,
            )
            self._reap()
            return f"{message.error} (in worker process {self._label})"
        exitcode = self._reap()
        return f"worker process exited during setup ({describe_exit(exitcode)})"

    def _serve(self) -> None:
        """Answer batches until the worker exits; then fail its batch if it died mid-way."""
        worker = self._worker
        assert worker is not None
        while (message := worker.receive()) is not None:
            with self._lock:
                batch, self._inflight = self._inflight, None
            if batch is None:
                logger.error("worker process %s sent an unexpected %r", self._label, message)
                continue
            result = self._result_of(batch, message)
            with self._lock:
                if self._pending and not self._stopping.is_set():
                    self._send_locked(self._pending.popleft())
            self._answer(batch, result)
        with self._lock:
            # From here new batches wait for the next worker instead of going to this one.
            batch, self._inflight = self._inflight, None
            if not self._stopping.is_set():
                self._state = WorkerState.RESTARTING
                self.restarts += 1
        how = describe_exit(self._reap())
        if not self._stopping.is_set():
            logger.error("worker process %s exited (%s); restarting it", self._label, how)
        if batch is not None:
            self._answer(
                batch,
                PredictionError(
                    f"model {self._name!r}: worker process exited ({how}) while predicting;"
                    " a new one is starting"
                ),
            )

    def _reap(self) -> int | None:
        with self._lock:
            worker = self._worker
            if worker is None:
                return None
            worker.close_pipe()  # under the lock, so no frame is half-written to it
        exitcode = worker.reap(REAP_TIMEOUT_S)
        with self._lock:
            self._worker = None
        return exitcode

    def _result_of(self, batch: _Batch, message: Message) -> list[Any] | BaseException:
        name = self._name
        if isinstance(message, BatchFailed):
            logger.error(
                "model %r raised %s in worker process %s:\n%s",
                name,
                message.error,
                self._label,
                message.traceback,
            )
            return PredictionError(f"model {name!r} failed while predicting")
        if not isinstance(message, BatchResult):
            return PredictionError(f"model {name!r}: worker process sent an unexpected reply")
        outputs = self._codec.decode_outputs(message, batch.inputs)
        if outputs is None:
            got = message.returned or len(message.outputs)
            return OutputMismatchError(
                f"model {name!r}: predict returned {got} outputs for {batch.inputs.sent} inputs;"
                " it must return a list with one output (or ItemError) per input"
            )
        for output in outputs:
            if isinstance(output, InvalidOutput):
                logger.error("model %r returned an invalid output: %s", name, output.reason)
        return outputs
