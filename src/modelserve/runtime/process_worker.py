"""One worker process of `isolation="process"`: its main loop, and the server's handle on it.

A worker imports its Service class by name (a file path or module plus an attribute), runs
`setup(device)`, then answers one batch at a time (frames in `process_codec`) until it is told to
stop or its connection to the server closes, and runs `teardown` on the way out. It never
unpickles anything after start-up: batches arrive as msgpack and are re-validated with the
service's Input model.

`WorkerHandle` is the server's side: it spawns a worker, talks to it over the pipe (a
socketpair, so a blocking read is the cheapest way to wait for a reply), notices its exit even
when a grandchild keeps the pipe open, and reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Iterable
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from modelserve.runtime.process_codec import (
    BatchCodec,
    BatchFailed,
    BatchRequest,
    BatchResult,
    Message,
    Ready,
    SetupFailed,
    decode,
    encode,
    safe_text,
)
from modelserve.service.base import Service, load_service
from modelserve.service.loader import load_class
from modelserve.service.spec import ServiceSource, ServiceSpec

logger = logging.getLogger("modelserve.runtime")


class BatchRunner:
    """Runs predict for one service instance and frames what it returned."""

    def __init__(self, service: Service[Any, Any], spec: ServiceSpec) -> None:
        self._predict = service.predict
        self._codec = BatchCodec(spec.input_type, spec.output_type)
        # One loop for the worker's life, so an async predict may keep loop-bound state.
        self.loop = asyncio.new_event_loop() if spec.is_async else None

    def run(self, items: list[Any]) -> bytes:
        """The reply frame for one batch request."""
        try:
            result: Any = self._predict(self._codec.decode_inputs(items))
            if self.loop is not None and inspect.isawaitable(result):
                result = self.loop.run_until_complete(result)
            if not isinstance(result, list):
                if not isinstance(result, Iterable) or isinstance(result, str | bytes | dict):
                    return encode(BatchResult(outputs=[], returned=type(result).__name__))
                result = list(result)
            return self._codec.encode_result(result)
        except Exception as exc:
            trace = safe_text(traceback.format_exc())
            report = BatchFailed(error=type(exc).__name__, traceback=trace)
            return encode(report)

    def close(self) -> None:
        """Release the event loop of an async predict."""
        if self.loop is not None:
            self.loop.close()


def run_worker(
    conn: Connection,
    *,
    kind: str,
    location: str,
    attr: str,
    device: str,
    label: str,
    artifacts: str | None = None,
) -> None:
    """Entry point of a worker process (spawned; every argument but `conn` is a plain string)."""
    # Ctrl-C reaches the whole process group; the server decides when its workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        source = ServiceSource("file" if kind == "file" else "module", location, attr)
        spec = ServiceSpec.from_class(load_class(source), source=source)
        service = load_service(
            spec.cls, device=device, artifacts=Path(artifacts) if artifacts is not None else None
        )
    except BaseException as exc:  # SystemExit in setup is a failed setup too
        error = safe_text(f"{type(exc).__name__}: {exc}")
        _send(conn, SetupFailed(error=error, traceback=safe_text(traceback.format_exc())))
        conn.close()
        return
    runner = BatchRunner(service, spec)
    # This process holds one model for its whole life: keep that heap out of the collector's
    # full collections (see runtime/heap.py), so they do not stall batches.
    gc.collect()
    gc.freeze()
    try:
        _send(conn, Ready(pid=os.getpid()))
        while True:
            message = decode(conn.recv_bytes())
            if not isinstance(message, BatchRequest):
                break  # StopRequest
            conn.send_bytes(runner.run(message.items))
    except (EOFError, OSError):
        pass  # the server is gone: nobody is left to answer
    finally:
        try:
            service.teardown()
        except Exception:
            print(f"modelserve worker {label}: teardown failed", file=sys.stderr)
            traceback.print_exc()
        runner.close()
        conn.close()


def _send(conn: Connection, message: Message) -> None:
    with contextlib.suppress(OSError):  # the server is gone
        conn.send_bytes(encode(message))


# -- the server's side ---------------------------------------------------------------------


class WorkerHandle:
    """One spawned worker process as the server sees it: pipe, exit watcher, reaping."""

    def __init__(self, process: BaseProcess, conn: Connection, label: str) -> None:
        self.process = process
        self.pid = process.pid
        self.label = label
        self._conn = conn
        exit_fd = _exit_fd(process)
        try:
            wake = socket.socket(fileno=os.dup(conn.fileno()))
        except OSError:
            os.close(exit_fd)
            raise
        self._watcher = threading.Thread(
            target=_watch_exit, args=(exit_fd, wake), name=f"modelserve-{label}-watch", daemon=True
        )
        self._watcher.start()

    @classmethod
    def spawn(
        cls,
        ctx: SpawnContext,
        source: ServiceSource,
        *,
        device: str,
        label: str,
        artifacts: str | None = None,
    ) -> WorkerHandle:
        """Start a worker process; raises OSError/RuntimeError if it cannot be started."""
        parent_conn, child_conn = ctx.Pipe(duplex=True)
        process = ctx.Process(
            target=run_worker,
            kwargs={
                "conn": child_conn,
                "kind": source.kind,
                "location": source.location,
                "attr": source.attr,
                "device": device,
                "label": label,
                "artifacts": artifacts,
            },
            name=f"modelserve-{label}",
        )
        try:
            process.start()
        except BaseException:
            parent_conn.close()
            raise
        finally:
            # Our copy of the worker's end must go, or its death would never read as EOF.
            child_conn.close()
        try:
            return cls(process, parent_conn, label)
        except BaseException:
            process.kill()
            process.join()
            process.close()
            parent_conn.close()
            raise

    def send(self, frame: bytes) -> None:
        """Send one frame; a worker that just died is noticed by `receive`, not here."""
        with contextlib.suppress(OSError):
            self._conn.send_bytes(frame)

    def receive(self) -> Message | None:
        """The next message, or None once the worker has exited (or spoke out of protocol)."""
        try:
            return decode(self._conn.recv_bytes())
        except (EOFError, OSError):
            return None
        except ValueError:
            logger.exception("worker process %s sent a malformed frame", self.label)
            return None

    def kill(self) -> None:
        """SIGKILL the worker (no-op once it has been reaped)."""
        with contextlib.suppress(ValueError):  # already closed by reap
            self.process.kill()

    def close_pipe(self) -> None:
        """Close the server's end; a worker still reading sees EOF and exits."""
        self._conn.close()

    def reap(self, timeout_s: float) -> int | None:
        """Close the pipe, wait for the exit (killing after `timeout_s`), return the exit code."""
        self.close_pipe()
        # The watcher ends once the worker has exited; process.join would trust the sentinel.
        self._watcher.join(timeout_s)
        if self._watcher.is_alive():
            self.kill()
            self._watcher.join()
        self.process.join()
        exitcode = self.process.exitcode
        self.process.close()
        return exitcode


def _exit_fd(process: BaseProcess) -> int:
    """A descriptor that turns readable when `process` exits.

    A pidfd where the OS has them: multiprocessing's own sentinel is a pipe that a grandchild
    forked inside the model inherits, and then it stays silent after the worker is gone.
    """
    assert process.pid is not None
    try:
        return os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        return os.dup(process.sentinel)


def _watch_exit(exit_fd: int, wake: socket.socket) -> None:
    """When the worker exits, shut the pipe so a blocked `receive` returns; owns both fds."""
    try:
        wait([exit_fd])
        with contextlib.suppress(OSError):
            wake.shutdown(socket.SHUT_RDWR)  # replies already queued are still read first
    finally:
        wake.close()
        os.close(exit_fd)


def describe_exit(exitcode: int | None) -> str:
    """'exit code 1', 'killed by SIGSEGV' or 'exit status unknown'."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
