"""Streams: one input answered in chunks by a Service's `predict_stream`, pulled by its reader.

A `ChunkStream` runs the generator where its kind allows: a plain generator on a thread of its
own (model code never runs on the event loop), an async generator as a task on the loop. Either
way the producer makes a chunk only when the reader asked for one (`next`): one chunk of
credit, so a slow reader pauses generation instead of making the server buffer, and `cancel`
(the client went away, the server is stopping) closes the generator at its next `yield`, with
at most the chunk already in progress made after it.

`StreamRunner` opens them for a loaded version: at most `max_streams` per replica at once
(503 with Retry-After past it), each on one of the version's loaded instances in turn.
Streams do not go through the batching engine: they hold their own thread for their whole
life, which is why their number is capped apart from the engine's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from modelserve.errors import (
    OverloadedError,
    PredictionError,
    ServiceUnavailableError,
    StreamNotSupportedError,
)
from modelserve.runtime.versions import DeployedService

logger = logging.getLogger("modelserve.runtime")

# What `ChunkStream.next` returns when the generator is exhausted, or nothing came in time.
END: Any = object()
IDLE: Any = object()
# A stream over its cap answers this soon: streams last seconds, not milliseconds.
STREAM_RETRY_AFTER_S = 2.0


class ChunkStream:
    """One running `predict_stream(item)`, read chunk by chunk with `next` (on the loop)."""

    def __init__(self, service: Any, item: Any, *, is_async: bool, label: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._results: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()
        self._asked = False
        self._done = False
        self._cancelled = threading.Event()
        self._on_close: list[Any] = []
        if is_async:
            self._wanted_async = asyncio.Event()
            self._task: asyncio.Task[None] | None = self._loop.create_task(
                self._pump_async(service, item), name=f"modelserve-stream-{label}"
            )
            self._credit: threading.Semaphore | None = None
        else:
            self._task = None
            self._credit = threading.Semaphore(0)
            threading.Thread(
                target=self._pump_thread,
                args=(service, item),
                name=f"modelserve-stream-{label}",
                daemon=True,
            ).start()

    async def next(self, timeout_s: float | None = None) -> Any:
        """The next chunk, `END` when the generator is done, or `IDLE` after `timeout_s`
        without one (the request stays: the next call waits for the same chunk). Raises what
        the generator raised, as a `PredictionError`."""
        if self._done:
            return END
        if not self._asked:
            self._asked = True
            self._want()
        try:
            ok, value = await asyncio.wait_for(self._results.get(), timeout_s)
        except TimeoutError:
            return IDLE
        self._asked = False
        if not ok:
            self._done = True
            self._close()
            if value is END:
                return END
            raise value
        return value

    def cancel(self) -> None:
        """Stop the generator at its next `yield` (idempotent, from the loop)."""
        if self._done:
            return
        self._done = True
        self._cancelled.set()
        if self._credit is not None:
            self._credit.release()  # wake the producer so it sees the flag
        elif self._task is not None:
            self._task.cancel()
        self._close()

    def on_close(self, callback: Any) -> None:
        """Call `callback()` once when the stream ends, whichever way."""
        self._on_close.append(callback)

    def _close(self) -> None:
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    def _want(self) -> None:
        if self._credit is not None:
            self._credit.release()
        else:
            self._wanted_async.set()

    # -- producers ---------------------------------------------------------------------------

    def _post(self, ok: bool, value: Any) -> None:
        """Hand a result to the loop from the producer's thread (the loop may be closed)."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._results.put_nowait, (ok, value))

    def _pump_thread(self, service: Any, item: Any) -> None:
        credit = self._credit
        assert credit is not None
        iterator: Iterator[Any] | None = None
        try:
            credit.acquire()  # the first chunk is made only once it is asked for
            if self._cancelled.is_set():
                return
            iterator = iter(service.predict_stream(item))
            while True:
                try:
                    chunk = next(iterator)
                except StopIteration:
                    self._post(False, END)
                    return
                self._post(True, chunk)
                credit.acquire()
                if self._cancelled.is_set():
                    return
        except BaseException as exc:
            self._post(False, _failure(exc))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                try:
                    close()  # runs the generator's finally blocks, on this thread
                except Exception:
                    logger.exception("closing a stream's generator failed")

    async def _pump_async(self, service: Any, item: Any) -> None:
        agen: AsyncIterator[Any] | None = None
        try:
            await self._wanted_async.wait()
            agen = aiter(service.predict_stream(item))
            while True:
                self._wanted_async.clear()
                try:
                    chunk = await anext(agen)
                except StopAsyncIteration:
                    self._results.put_nowait((False, END))
                    return
                self._results.put_nowait((True, chunk))
                await self._wanted_async.wait()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._results.put_nowait((False, _failure(exc)))
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _failure(exc: BaseException) -> Exception:
    """A generator's exception as the one error a client sees (its text stays in the log)."""
    logger.error("predict_stream failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return PredictionError("the model failed while streaming")


class StreamRunner:
    """Opens `ChunkStream`s on loaded versions, at most `max_streams` per replica at once."""

    def __init__(self) -> None:
        self._open: weakref.WeakKeyDictionary[DeployedService, int] = weakref.WeakKeyDictionary()
        self._turn = itertools.count()

    def open(self, deployed: DeployedService, item: Any) -> ChunkStream:
        """Start `predict_stream(item)` on one of the version's instances.

        OverloadedError (503, Retry-After) past the cap; ServiceUnavailableError when the
        version does not stream or has no loaded instance.
        """
        spec = deployed.spec
        if not spec.streams:
            raise StreamNotSupportedError(
                f"model {spec.name!r} does not stream (no predict_stream): ask without"
                " ?stream=true or an Accept of text/event-stream or application/x-ndjson"
            )
        services = [s for r in deployed.replicas if (s := getattr(r, "service", None)) is not None]
        if not services:
            raise ServiceUnavailableError(f"model {spec.name!r} has no loaded replica")
        count = self._open.get(deployed, 0)
        if count >= spec.max_streams * len(services):
            raise OverloadedError(
                f"model {spec.name!r} is streaming to {count} clients, its limit: retry later",
                retry_after_s=STREAM_RETRY_AFTER_S,
            )
        service = services[next(self._turn) % len(services)]
        stream = ChunkStream(
            service, item, is_async=spec.stream_is_async, label=f"{spec.name}-{spec.version}"
        )
        self._open[deployed] = count + 1

        def closed() -> None:
            self._open[deployed] = self._open.get(deployed, 1) - 1

        stream.on_close(closed)
        return stream
