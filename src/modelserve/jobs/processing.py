"""Running one chunk: read its rows, validate them, predict through the engine, checkpoint.

`ChunkProcessor.process(lease)` is the whole life of a leased chunk:

1. its rows are read from the upload and validated by the HTTP codec; a bad row becomes a
   failed row with the code `/predict` would have answered, never a failed chunk;
2. the rest go into the model's batching engine as `sharing.ModelShare` allows: a share of
   its batch slots, requests first, and a share of the time while requests are served;
3. the results are written as one blob, then acked with the failed rows in one transaction
   (the checkpoint). A lost lease (expired and taken over, or the job cancelled) stops the
   chunk and nothing of it is recorded.

Transient trouble (the model loading, overloaded, the database away) gives the chunk back to
retry after an exponential backoff; after `max_attempts` tries, or at once for an input that
cannot be read, the chunk fails and its rows are reported failed. `ChunkProcessor.run(task)`
does the same for a chunk named by job id and index (a Celery task's whole body).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import orjson
from opentelemetry import trace
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

from modelserve.config import JobsConfig
from modelserve.errors import (
    DatabaseUnavailableError,
    DeadlineExceededError,
    ModelserveError,
    OverloadedError,
    ResourceNotFoundError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from modelserve.jobs.gateway import ModelGateway, ModelHandle
from modelserve.jobs.inputs import BadRecord, InputChangedError, open_parts, read_chunk
from modelserve.jobs.outputs import encode_results
from modelserve.jobs.rows import UnsendableValueError, as_json
from modelserve.jobs.sharing import ModelShare
from modelserve.jobs.work import ChunkResult, ChunkTask, JobQueue, Lease, RowFailure
from modelserve.observability import tracing
from modelserve.registry.artifacts import ArtifactStore
from modelserve.schemas.jobs import DataFormat

logger = logging.getLogger("modelserve.jobs")

# Tries of one row that the engine shed (queue full) or timed out, before the whole chunk is
# given back to retry later.
ROW_TRIES = 3
ROW_RETRY_S = 0.05
TRANSIENT = (OverloadedError, ServiceUnavailableError, DeadlineExceededError)
CHUNK_FAILED = "chunk_failed"
INPUT_UNREADABLE = "input_unreadable"


class JobObserver(Protocol):
    """Hears how chunks end (the metrics implement it)."""

    def on_chunk(self, model: str, duration_s: float, done: int, failed: Sequence[str]) -> None:
        """A chunk was acked: its rows with results, and the error code of each failed row."""
        ...

    def on_chunk_failed(self, model: str, code: str, rows: int) -> None:
        """A chunk was given up: all its rows failed with `code`."""
        ...


class NullJobObserver:
    """Hears nothing."""

    def on_chunk(self, model: str, duration_s: float, done: int, failed: Sequence[str]) -> None:
        return None

    def on_chunk_failed(self, model: str, code: str, rows: int) -> None:
        return None


class _Transient(Exception):
    """The chunk could not run now; it may later."""


class _Permanent(Exception):
    """The chunk can never run (its input cannot be read as counted)."""


class _LeaseLost(Exception):
    """The lease was taken over or the job cancelled: stop, record nothing."""


def backoff_s(attempt: int, config: JobsConfig) -> float:
    """Delay before try `attempt + 1`: base * 2^(attempt-1), capped."""
    return float(min(config.retry_max_s, config.retry_base_s * 2 ** max(0, attempt - 1)))


class ChunkProcessor:
    """Processes leased chunks of every job in this process (one instance per process)."""

    def __init__(
        self,
        *,
        queue: JobQueue,
        store: ArtifactStore,
        gateway: ModelGateway,
        config: JobsConfig,
        observer: JobObserver | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.gateway = gateway
        self.config = config
        self.observer: JobObserver = observer or NullJobObserver()
        self._shares: dict[tuple[str, str], ModelShare] = {}

    async def run(self, task: ChunkTask) -> bool:
        """`ChunkRunner`: lease the named chunk and process it; False if it was not leasable."""
        lease = await self.queue.lease_chunk(task)
        if lease is None:
            return False
        await self.process(lease)
        return True

    async def process(self, lease: Lease) -> str:
        """Run a leased chunk to an outcome: done, retry, failed, lost or released."""
        work = lease.work
        if lease.attempt > self.config.max_attempts:
            await self.queue.fail(
                lease,
                code=CHUNK_FAILED,
                error=f"gave up after {self.config.max_attempts} attempts",
            )
            self.observer.on_chunk_failed(work.model, CHUNK_FAILED, work.rows)
            return "failed"
        lost = asyncio.Event()
        heartbeat = asyncio.get_running_loop().create_task(self._keep(lease, lost))
        started = time.perf_counter()
        with _chunk_span(lease) as span:
            try:
                result = await self._produce(lease, lost)
                if not await self.queue.ack(lease, result):
                    raise _LeaseLost
            except _LeaseLost:
                span.set_attribute("modelserve.job.outcome", "lost")
                return "lost"
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.queue.release(lease))
                raise
            except _Permanent as exc:
                return await self._give_up(lease, INPUT_UNREADABLE, str(exc), span)
            except Exception as exc:
                return await self._retry(lease, exc, span)
            finally:
                heartbeat.cancel()
            failed_codes = [f.code for f in result.failures]
            self.observer.on_chunk(
                work.model, time.perf_counter() - started, result.rows_done, failed_codes
            )
            span.set_attribute("modelserve.job.rows_failed", len(result.failures))
            span.set_attribute("modelserve.job.outcome", "done")
            return "done"

    async def _retry(self, lease: Lease, exc: Exception, span: trace.Span) -> str:
        reason = _describe(exc)
        if not isinstance(exc, _Transient | ModelserveError):
            logger.exception(
                "job %s chunk %d failed", lease.work.task.job_id, lease.work.task.index
            )
        if lease.attempt >= self.config.max_attempts:
            return await self._give_up(lease, CHUNK_FAILED, reason, span)
        delay = backoff_s(lease.attempt, self.config)
        span.set_attribute("modelserve.job.outcome", "retry")
        with contextlib.suppress(DatabaseUnavailableError):  # the lease expires and it reruns
            await self.queue.retry_later(lease, error=reason, delay_s=delay)
        return "retry"

    async def _give_up(self, lease: Lease, code: str, reason: str, span: trace.Span) -> str:
        span.set_status(Status(StatusCode.ERROR, code))
        span.set_attribute("modelserve.job.outcome", "failed")
        with contextlib.suppress(DatabaseUnavailableError):
            if await self.queue.fail(lease, code=code, error=reason):
                self.observer.on_chunk_failed(lease.work.model, code, lease.work.rows)
        return "failed"

    async def _keep(self, lease: Lease, lost: asyncio.Event) -> None:
        """Renew the lease a few times per lease period; set `lost` when it is gone."""
        interval = self.config.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                if not await self.queue.renew(lease):
                    lost.set()
                    return
            except DatabaseUnavailableError:
                continue  # try again; if it stays away the lease expires, as after a crash

    # -- the work --------------------------------------------------------------------------

    async def _produce(self, lease: Lease, lost: asyncio.Event) -> ChunkResult:
        work = lease.work
        try:
            handle = self.gateway.handle(work.model, work.version)
        except (ServiceNotFoundError, ServiceUnavailableError) as exc:
            raise _Transient(exc.message) from None
        # Reading, validating and (below) encoding run on a worker thread: on the event loop
        # they would delay every HTTP request for as long as a chunk's rows take.
        try:
            items, failures = await asyncio.to_thread(self._read_and_validate, lease, handle)
        except (InputChangedError, ResourceNotFoundError) as exc:
            raise _Permanent(f"the input cannot be read: {exc}") from None
        outputs, rejected = await self._predict(handle, items, lost)
        failures.extend(rejected)
        failures.sort(key=lambda f: f.row)
        if lost.is_set():
            raise _LeaseLost
        blob = None
        if outputs:
            blob = await asyncio.to_thread(self._store_results, handle, outputs)
        return ChunkResult(blob, len(outputs), tuple(failures))

    def _read_and_validate(
        self, lease: Lease, handle: ModelHandle
    ) -> tuple[list[tuple[int, Any]], list[RowFailure]]:
        """The chunk's rows validated for the model, and the rows that failed validation."""
        work = lease.work
        with open_parts(self.store, work.parts) as stream:
            rows = read_chunk(stream, work)
        fmt = DataFormat(work.input_format)
        kinds = dict(work.field_kinds)
        items: list[tuple[int, Any]] = []
        failures: list[RowFailure] = []
        for number, row in rows:
            if isinstance(row, BadRecord):
                failures.append(RowFailure(number, "invalid_input", row.message))
                continue
            try:
                items.append((number, handle.parse(as_json(row, fmt, kinds))))
            except UnsendableValueError as exc:
                failures.append(RowFailure(number, "invalid_input", str(exc)))
            except ModelserveError as exc:
                failures.append(self._failure(number, exc))
        return items, failures

    def _store_results(self, handle: ModelHandle, outputs: dict[int, Any]) -> str:
        """The chunk's results as one blob (JSON lines in row order); its digest."""
        data = encode_results((row, handle.dump(outputs[row])) for row in sorted(outputs))
        writer = self.store.writer(max_bytes=max(1, len(data)))
        try:
            writer.write(data)
            return writer.commit().sha256
        finally:
            writer.abort()

    def share(self, handle: ModelHandle) -> ModelShare:
        """This process's allowance of job rows in one model version's engine."""
        key = (handle.name, handle.version)
        share = self._shares.get(key)
        if share is None:
            permits = max(1, int(self.config.batch_share * handle.max_batch_size))
            share = self._shares[key] = ModelShare(
                permits,
                share=self.config.batch_share,
                items_seen=handle.items_seen,
                # Alone, a running batch and a full one queued behind it (sharing.py, rule 4).
                burst=2 * handle.max_batch_size,
            )
        return share

    async def _predict(
        self, handle: ModelHandle, items: list[tuple[int, Any]], lost: asyncio.Event
    ) -> tuple[dict[int, Any], list[RowFailure]]:
        """Each item's output, or its failure; rows the engine shed or timed out are tried
        again (ROW_TRIES), then the chunk is given back as a whole."""
        share = self.share(handle)
        outputs: dict[int, Any] = {}
        failures: list[RowFailure] = []
        pending = items
        for attempt in range(ROW_TRIES):
            again: list[tuple[int, Any]] = []
            submitted: list[tuple[int, Any, asyncio.Future[Any]]] = []
            for number, item in pending:
                if lost.is_set():
                    raise _LeaseLost
                await share.take(handle.sink)
                try:
                    future = handle.sink.enqueue(item)
                except TRANSIENT:
                    share.give(answered=False)
                    again.append((number, item))
                    continue
                except ModelserveError as exc:
                    share.give(answered=False)
                    failures.append(self._failure(number, exc))
                    continue
                future.add_done_callback(share.done)
                submitted.append((number, item, future))
            for number, item, future in submitted:
                try:
                    output = await future
                except TRANSIENT:
                    again.append((number, item))
                except ModelserveError as exc:
                    failures.append(self._failure(number, exc))
                else:
                    outputs[number] = output
            if not again:
                return outputs, failures
            pending = again
            if attempt + 1 < ROW_TRIES:
                await asyncio.sleep(ROW_RETRY_S * 2**attempt)
        raise _Transient(f"model {handle.name!r} kept refusing rows (overloaded or timing out)")

    def _failure(self, row: int, exc: ModelserveError) -> RowFailure:
        """A failed row as `/predict` would have answered it (code, message, details)."""
        return RowFailure(row, self.gateway.error_code(exc), exc.message, _json_safe(exc.details))


def _json_safe(details: Any) -> Any:
    # A model's ItemError may carry details JSON cannot hold; they must not fail the chunk.
    try:
        orjson.dumps(details)
    except TypeError:
        return {"text": str(details)[:500]}
    return details


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ModelserveError):
        return exc.message
    if isinstance(exc, _Transient):
        return str(exc)
    return f"{type(exc).__name__} (the server log has the details)"


@contextlib.contextmanager
def _chunk_span(lease: Lease) -> Iterator[trace.Span]:
    """A span per chunk, in the trace whose id is the job's id (every chunk of a job together)."""
    if not tracing.enabled:
        yield trace.INVALID_SPAN
        return
    work = lease.work
    parent = trace.set_span_in_context(
        NonRecordingSpan(
            SpanContext(
                trace_id=int(work.task.job_id, 16),
                span_id=int(work.task.job_id[:16], 16) or 1,
                is_remote=True,
                # Sampled: the sampler follows the parent, and chunks are few and worth seeing.
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
    )
    tracer = trace.get_tracer(tracing.SCOPE)
    with tracer.start_as_current_span(
        f"job chunk {work.model}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "modelserve.job_id": work.task.job_id,
            "modelserve.job.chunk": work.task.index,
            "modelserve.job.attempt": lease.attempt,
            "modelserve.job.rows": work.rows,
            "modelserve.model": work.model,
            "modelserve.version": work.version,
        },
    ) as span:
        yield span
