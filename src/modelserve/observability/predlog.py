"""The prediction log: a sampled record of predict requests, written off the request path.

Per model, a share of requests (`predlog_sample_rate`, `predlog_sample_rates`) is kept: model,
version, request id, principal id, status, latency and, for answered (2xx) requests, the input
and output JSON as they crossed the wire. Failed requests keep no bodies: an unvalidated body
may hold anything a client sent, credentials included.

The fast path calls `wants(model)` (one dict lookup and one random draw) and, when it says
yes, `offer(...)`, which only appends to a bounded in-memory queue. A background task writes
the queue in batches every `predlog_flush_interval_s`; a full queue drops entries and counts
them (`modelserve_predlog_rows_total{outcome="dropped"}`) instead of slowing requests. A second
task deletes rows older than `predlog_retention_days`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelserve.db.repos.predictions import add_predictions, purge_predictions

if TYPE_CHECKING:
    from modelserve.config import ObservabilityConfig
    from modelserve.db.engine import Database
    from modelserve.observability.metrics import Metrics
    from modelserve.types import Principal

logger = logging.getLogger("modelserve.observability")

WRITE_BATCH = 500
PURGE_BATCH = 5000
PURGE_INTERVAL_S = 600.0


@dataclass(frozen=True, slots=True)
class PredictionEntry:
    """One sampled request, as queued for writing."""

    created_at: dt.datetime
    model: str
    version: str
    request_id: str
    principal_id: str | None
    status: int
    latency_s: float
    sample_rate: float
    error_code: str | None
    body: bytes | None
    output: bytes | None
    # How the prediction cache answered ("hit", ...); None when the model is not cached.
    cached: str | None = None

    def to_row(self) -> dict[str, Any]:
        """The column values of its row."""
        return {
            "created_at": self.created_at,
            "model": self.model,
            "version": self.version,
            "request_id": self.request_id,
            "principal_id": self.principal_id,
            "status": self.status,
            "latency_ms": self.latency_s * 1000.0,
            "sample_rate": self.sample_rate,
            "error_code": self.error_code,
            "input_json": _text(self.body),
            "output_json": _text(self.output),
            "cached": self.cached,
        }


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", "replace")


class PredictionLog:
    """Samples predict requests per model and writes them to the database in batches."""

    def __init__(
        self,
        config: ObservabilityConfig,
        *,
        metrics: Metrics | None = None,
        draw: Callable[[], float] = random.random,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self._config = config
        self._default_rate = config.predlog_sample_rate
        self._rates = dict(config.predlog_sample_rates)
        self._max_bytes = config.predlog_max_bytes
        self._queue: deque[PredictionEntry] = deque()
        self._limit = config.predlog_queue
        self._draw = draw
        self._now = now
        self._written = metrics.predlog_rows.labels("written") if metrics else None
        self._dropped = metrics.predlog_rows.labels("dropped") if metrics else None
        self._database: Database | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.dropped = 0

    def rate(self, model: str) -> float:
        """The share of `model`'s requests that is logged."""
        return self._rates.get(model, self._default_rate)

    def wants(self, model: str) -> bool:
        """Draw whether this request of `model` is logged (cheap; call first)."""
        rate = self._rates.get(model, self._default_rate)
        return rate > 0.0 and (rate >= 1.0 or self._draw() < rate)

    def offer(
        self,
        *,
        model: str,
        version: str,
        request_id: str,
        principal: Principal | None,
        status: int,
        latency_s: float,
        body: bytes | None,
        output: bytes | None,
        error_code: str | None = None,
        cached: str | None = None,
    ) -> None:
        """Queue one sampled request; never blocks and never raises on a full queue.

        `cached` says how the prediction cache answered (None: the model is not cached)."""
        if len(self._queue) >= self._limit:
            self.dropped += 1
            if self._dropped is not None:
                self._dropped.inc()
            return
        answered = 200 <= status < 300
        limit = self._max_bytes
        self._queue.append(
            PredictionEntry(
                created_at=self._now(),
                model=model,
                version=version,
                request_id=request_id,
                principal_id=principal.subject if principal is not None else None,
                status=status,
                latency_s=latency_s,
                sample_rate=self.rate(model),
                error_code=error_code,
                body=body if answered and body is not None and len(body) <= limit else None,
                output=output if answered and output is not None and len(output) <= limit else None,
                cached=cached,
            )
        )
        if len(self._queue) >= WRITE_BATCH:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Entries queued and not yet written."""
        return len(self._queue)

    # -- writing ---------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything queued now; return how many rows were written."""
        database = self._database
        written = 0
        while self._queue and database is not None:
            batch = [self._queue.popleft() for _ in range(min(WRITE_BATCH, len(self._queue)))]
            try:
                async with database.session() as session:
                    written += await add_predictions(
                        session=session, entries=[e.to_row() for e in batch]
                    )
            except Exception as exc:  # the log is best effort: never take serving down
                self.dropped += len(batch)
                if self._dropped is not None:
                    self._dropped.inc(len(batch))
                logger.warning("prediction log write failed: %s", type(exc).__name__)
                break
        if written and self._written is not None:
            self._written.inc(written)
        return written

    async def purge(self) -> int:
        """Delete rows older than the retention period; return how many."""
        database = self._database
        if database is None:
            return 0
        cutoff = self._now() - dt.timedelta(days=self._config.predlog_retention_days)
        removed = 0
        while True:
            async with database.session() as session:
                count = await purge_predictions(session=session, before=cutoff, limit=PURGE_BATCH)
            removed += count
            if count < PURGE_BATCH:
                return removed

    async def _flush_loop(self) -> None:
        interval = self._config.predlog_flush_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            await self.flush()

    async def _purge_loop(self) -> None:
        while True:
            try:
                removed = await self.purge()
                if removed:
                    logger.info("prediction log: purged %d rows past retention", removed)
            except Exception as exc:
                logger.warning("prediction log purge failed: %s", type(exc).__name__)
            await asyncio.sleep(PURGE_INTERVAL_S)

    def start(self, database: Database) -> None:
        """Start writing to `database` (call on the serving event loop)."""
        self._database = database
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._tasks = [
                loop.create_task(self._flush_loop(), name="modelserve-predlog-flush"),
                loop.create_task(self._purge_loop(), name="modelserve-predlog-purge"),
            ]

    async def stop(self) -> None:
        """Stop the background tasks and write what is still queued."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
