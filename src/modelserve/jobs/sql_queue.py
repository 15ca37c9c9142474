"""`SqlJobQueue`: the `JobQueue` in the server's database (SQLite or PostgreSQL).

The `job_chunks` table is the queue (see `db/repos/jobs_queue.py` for how leases are taken
without two workers ever holding one chunk). Every process that runs jobs, embedded in a
server or not, leases from the same tables, so no broker is needed for one machine or many.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Collection, Sequence
from typing import Any, Protocol

from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import jobs as repo
from modelserve.db.repos import jobs_queue as queue_repo
from modelserve.db.repos.jobs_queue import ChunkStatus, FailedRow, UnpublishedChunk
from modelserve.db.tables.jobs import JobRow
from modelserve.jobs.work import ChunkResult, ChunkTask, ChunkWork, InputPart, Lease


def new_token() -> str:
    """A lease token: random, 32 hex digits."""
    return secrets.token_hex(16)


class _Span(Protocol):
    """Rows and bytes of a chunk (a `JobChunkRow`, or the `ChunkPlan` it was written from)."""

    @property
    def row_start(self) -> int: ...
    @property
    def row_end(self) -> int: ...
    @property
    def byte_start(self) -> int | None: ...
    @property
    def byte_end(self) -> int | None: ...


def chunk_work(job: JobRow, index: int, chunk: _Span, parts: Sequence[InputPart]) -> ChunkWork:
    """The frozen description of one chunk of `job`."""
    meta: dict[str, Any] = job.meta or {}
    kinds = meta.get("field_kinds") or {}
    return ChunkWork(
        task=ChunkTask(job.id, index),
        model=job.model,
        version=job.version,
        input_format=job.input_format,
        row_start=chunk.row_start,
        row_end=chunk.row_end,
        byte_start=chunk.byte_start,
        byte_end=chunk.byte_end,
        parts=tuple(parts),
        columns=tuple(meta.get("columns") or ()),
        field_kinds=tuple((str(k), tuple(v)) for k, v in sorted(kinds.items())),
    )


class SqlJobQueue:
    """Chunks queued in the database; leases are tokens with an expiry on the chunk's row."""

    def __init__(self, database: Database, *, lease_s: float) -> None:
        self.database = database
        self.lease_s = lease_s
        # Set by `enqueue`, so a runner in this process looks at once instead of at its next poll.
        self.wakeup = asyncio.Event()

    async def enqueue(self, works: Sequence[ChunkWork]) -> None:
        # The chunks were written as pending with their job: nothing to send anywhere.
        self.wakeup.set()

    async def lease(self, *, servable: Collection[tuple[str, str]], limit: int) -> list[Lease]:
        return await self._lease(servable=servable, limit=limit)

    async def lease_chunk(self, task: ChunkTask) -> Lease | None:
        async with self.database.session() as session:
            job = await repo.get_job(session=session, job_id=task.job_id)
        if job is None:
            return None
        leases = await self._lease(
            servable={(job.model, job.version)}, limit=1, job_id=task.job_id, index=task.index
        )
        return leases[0] if leases else None

    async def _lease(
        self,
        *,
        servable: Collection[tuple[str, str]],
        limit: int,
        job_id: str | None = None,
        index: int | None = None,
    ) -> list[Lease]:
        token = new_token()
        async with self.database.session() as session:
            leased = await queue_repo.lease_chunks(
                session=session,
                token=token,
                lease_s=self.lease_s,
                servable=servable,
                limit=limit,
                job_id=job_id,
                index=index,
            )
            parts: dict[str, list[InputPart]] = {}
            for job, _ in leased:
                if job.upload_id not in parts:
                    rows = await repo.upload_parts(session=session, upload_id=job.upload_id)
                    parts[job.upload_id] = [InputPart(r.offset, r.size, r.sha256) for r in rows]
            return [
                Lease(
                    chunk_work(job, chunk.index, chunk, parts[job.upload_id]), token, chunk.attempts
                )
                for job, chunk in leased
            ]

    async def renew(self, lease: Lease) -> bool:
        task = lease.work.task
        async with self.database.session() as session:
            return await queue_repo.renew_lease(
                session=session,
                job_id=task.job_id,
                index=task.index,
                token=lease.token,
                lease_s=self.lease_s,
            )

    async def ack(self, lease: Lease, result: ChunkResult) -> bool:
        return await self._finish(
            lease,
            state="done",
            result_sha256=result.result_sha256,
            rows_done=result.rows_done,
            failed=[FailedRow(f.row, f.code, f.message, f.details) for f in result.failures],
        )

    async def fail(self, lease: Lease, *, code: str, error: str) -> bool:
        work = lease.work
        failed = [FailedRow(row, code, error) for row in range(work.row_start, work.row_end)]
        return await self._finish(
            lease, state="failed", result_sha256=None, rows_done=0, failed=failed, error=error
        )

    async def _finish(
        self,
        lease: Lease,
        *,
        state: str,
        result_sha256: str | None,
        rows_done: int,
        failed: Sequence[FailedRow],
        error: str | None = None,
    ) -> bool:
        task = lease.work.task
        async with self.database.session() as session:
            return await queue_repo.finish_chunk(
                session=session,
                job_id=task.job_id,
                index=task.index,
                token=lease.token,
                state=state,
                result_sha256=result_sha256,
                rows_done=rows_done,
                failed=failed,
                error=error,
            )

    async def retry_later(self, lease: Lease, *, error: str, delay_s: float) -> bool:
        return await self._release(
            lease, utcnow() + dt.timedelta(seconds=delay_s), error=error, refund=False
        )

    async def release(self, lease: Lease) -> None:
        await self._release(lease, None, error=None, refund=True)

    async def _release(
        self, lease: Lease, at: dt.datetime | None, *, error: str | None, refund: bool
    ) -> bool:
        task = lease.work.task
        async with self.database.session() as session:
            return await queue_repo.release_lease(
                session=session,
                job_id=task.job_id,
                index=task.index,
                token=lease.token,
                next_attempt_at=at,
                error=error,
                refund=refund,
            )

    async def depth(self) -> int:
        async with self.database.session() as session:
            return await queue_repo.queue_depth(session=session)

    # -- the broker's side (Celery mode): which chunks have a message ------------------------

    async def unpublished(self, limit: int) -> list[UnpublishedChunk]:
        """Waiting chunks that no broker message was sent for (the outbox)."""
        async with self.database.session() as session:
            return await queue_repo.unpublished_chunks(session=session, limit=limit)

    async def mark_published(self, tasks: Sequence[ChunkTask], *, published: bool) -> None:
        """Record that each chunk's message was sent (or, `published=False`, that it was not
        and the outbox must send one)."""
        async with self.database.session() as session:
            await queue_repo.mark_published(
                session=session,
                keys=[(t.job_id, t.index) for t in tasks],
                at=utcnow() if published else None,
            )

    async def status(self, task: ChunkTask) -> ChunkStatus | None:
        """Where the chunk and its job stand (None: no such chunk)."""
        async with self.database.session() as session:
            return await queue_repo.chunk_status(
                session=session, job_id=task.job_id, index=task.index
            )
