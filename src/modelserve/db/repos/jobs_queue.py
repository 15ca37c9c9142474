"""The job queue in the database: leasing chunks, renewing leases, finishing chunks.

A chunk is leasable when it is pending and due, or running with an expired lease (its worker
died). Leasing is one UPDATE over a sub-select of leasable chunks: on PostgreSQL the sub-select
takes `FOR UPDATE SKIP LOCKED`, so workers never wait on each other's candidates; on SQLite the
UPDATE holds the database's write lock, so two workers can never take the same chunk. Every
later write about a chunk names its lease token, so a worker whose lease expired and was taken
over changes nothing. Finishing a chunk (results pointer, failed rows, job counters, the job's
final state) is one transaction.

With Celery workers the broker carries one message per chunk; `published_at` records that a
message was handed over, so the outbox relay publishes exactly the chunks that never got one
(`unpublished_chunks`, `mark_published`), and `chunk_status` tells a worker that received a
message whether the chunk needs another one later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from modelserve.db.base import utcnow
from modelserve.db.repos.jobs import lock_job
from modelserve.db.tables.jobs import JobChunkRow, JobErrorRow, JobRow

MAX_ERROR_TEXT = 500
MAX_MESSAGE = 1000


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row to record as failed."""

    row: int
    code: str
    message: str
    details: Any = None


def _leasable(now: dt.datetime) -> Any:
    return or_(
        and_(
            JobChunkRow.state == "pending",
            or_(JobChunkRow.next_attempt_at.is_(None), JobChunkRow.next_attempt_at <= now),
        ),
        and_(JobChunkRow.state == "running", JobChunkRow.lease_expires_at < now),
    )


async def lease_chunks(
    *,
    session: AsyncSession,
    token: str,
    lease_s: float,
    servable: Collection[tuple[str, str]],
    limit: int,
    job_id: str | None = None,
    index: int | None = None,
) -> list[tuple[JobRow, JobChunkRow]]:
    """Lease up to `limit` chunks of jobs whose (model, version) is in `servable`, highest
    priority and oldest job first (or exactly chunk `index` of `job_id`); their jobs start."""
    if not servable or limit < 1:
        return []
    now = utcnow()
    candidates = (
        select(JobChunkRow.job_id, JobChunkRow.index)
        .join(JobRow, JobRow.id == JobChunkRow.job_id)
        .where(
            _leasable(now),
            JobRow.state.in_(("queued", "running")),
            or_(*(and_(JobRow.model == m, JobRow.version == v) for m, v in sorted(servable))),
        )
        .order_by(JobRow.priority.desc(), JobRow.created_at, JobChunkRow.job_id, JobChunkRow.index)
        .limit(limit)
    )
    if job_id is not None:
        candidates = candidates.where(JobChunkRow.job_id == job_id, JobChunkRow.index == index)
    if session.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(of=JobChunkRow, skip_locked=True)
    leased = await session.execute(
        update(JobChunkRow)
        .where(tuple_(JobChunkRow.job_id, JobChunkRow.index).in_(candidates))
        .values(
            state="running",
            lease_token=token,
            lease_expires_at=now + dt.timedelta(seconds=lease_s),
            attempts=JobChunkRow.attempts + 1,
        )
        .returning(JobChunkRow.job_id, JobChunkRow.index)
    )
    keys = [(j, i) for j, i in leased.all()]
    if not keys:
        return []
    job_ids = sorted({j for j, _ in keys})
    await session.execute(
        update(JobRow)
        .where(JobRow.id.in_(job_ids), JobRow.state == "queued")
        .values(state="running", started_at=func.coalesce(JobRow.started_at, now), updated_at=now)
    )
    rows = await session.execute(
        select(JobRow, JobChunkRow)
        .join(JobChunkRow, JobChunkRow.job_id == JobRow.id)
        .where(tuple_(JobChunkRow.job_id, JobChunkRow.index).in_(keys))
        .order_by(JobRow.priority.desc(), JobRow.created_at, JobChunkRow.index)
        .execution_options(populate_existing=True)
    )
    return [(job, chunk) for job, chunk in rows.all()]


def _mine(job_id: str, index: int, token: str) -> Any:
    return and_(
        JobChunkRow.job_id == job_id,
        JobChunkRow.index == index,
        JobChunkRow.lease_token == token,
        JobChunkRow.state == "running",
    )


async def renew_lease(
    *, session: AsyncSession, job_id: str, index: int, token: str, lease_s: float
) -> bool:
    """Extend a lease; False when it is no longer ours (taken over, or the job cancelled)."""
    result = await session.execute(
        update(JobChunkRow)
        .where(_mine(job_id, index, token))
        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
    )
    return bool(getattr(result, "rowcount", 0))


async def release_lease(
    *,
    session: AsyncSession,
    job_id: str,
    index: int,
    token: str,
    next_attempt_at: dt.datetime | None,
    error: str | None,
    refund: bool,
) -> bool:
    """Give a chunk back to the queue (to retry at `next_attempt_at`); `refund` does not count
    this attempt (a worker stopping, not the chunk failing)."""
    values: dict[str, Any] = {
        "state": "pending",
        "lease_token": None,
        "lease_expires_at": None,
        "next_attempt_at": next_attempt_at,
    }
    if error is not None:
        values["last_error"] = error[:MAX_ERROR_TEXT]
    if refund:
        values["attempts"] = JobChunkRow.attempts - 1
    result = await session.execute(
        update(JobChunkRow).where(_mine(job_id, index, token)).values(values)
    )
    return bool(getattr(result, "rowcount", 0))


async def finish_chunk(
    *,
    session: AsyncSession,
    job_id: str,
    index: int,
    token: str,
    state: str,
    result_sha256: str | None,
    rows_done: int,
    failed: Sequence[FailedRow],
    error: str | None = None,
) -> bool:
    """Record a chunk as done (with its results) or failed, its failed rows and the job's
    counters, and finish the job when it was the last chunk; all or nothing. False (and
    nothing written) when the lease is no longer ours."""
    now = utcnow()
    job = await lock_job(session=session, job_id=job_id)
    if job is None:
        return False
    result = await session.execute(
        update(JobChunkRow)
        .where(_mine(job_id, index, token))
        .values(
            state=state,
            result_sha256=result_sha256,
            rows_done=rows_done,
            rows_failed=len(failed),
            lease_token=None,
            lease_expires_at=None,
            finished_at=now,
            last_error=None if error is None else error[:MAX_ERROR_TEXT],
        )
    )
    if not getattr(result, "rowcount", 0):
        return False
    if failed:
        await session.execute(
            insert(JobErrorRow),
            [
                {
                    "job_id": job_id,
                    "row": f.row,
                    "chunk_index": index,
                    "code": f.code[:64],
                    "message": f.message[:MAX_MESSAGE],
                    "details": f.details,
                }
                for f in failed
            ],
        )
    job.rows_done += rows_done
    job.rows_failed += len(failed)
    if state == "failed":
        job.chunks_failed += 1
    unfinished = await session.scalar(
        select(func.count())
        .select_from(JobChunkRow)
        .where(JobChunkRow.job_id == job_id, JobChunkRow.state.in_(("pending", "running")))
    )
    if not unfinished and job.state in ("queued", "running"):
        job.state = "failed" if job.chunks_failed >= job.chunks_total else "succeeded"
        job.finished_at = now
    job.updated_at = now
    await session.flush()
    return True


async def queue_depth(*, session: AsyncSession) -> int:
    """Chunks waiting to run, over every active job."""
    value = await session.scalar(
        select(func.count())
        .select_from(JobChunkRow)
        .join(JobRow, JobRow.id == JobChunkRow.job_id)
        .where(JobChunkRow.state == "pending", JobRow.state.in_(("queued", "running")))
    )
    return int(value or 0)


@dataclass(frozen=True, slots=True)
class UnpublishedChunk:
    """A waiting chunk that no broker message was sent for."""

    job_id: str
    index: int
    model: str


async def unpublished_chunks(*, session: AsyncSession, limit: int) -> list[UnpublishedChunk]:
    """Chunks of active jobs that wait for a worker (pending, or running with an expired
    lease) and have no broker message (never published, or one forgotten), best job first."""
    now = utcnow()
    waiting = or_(
        JobChunkRow.state == "pending",
        and_(JobChunkRow.state == "running", JobChunkRow.lease_expires_at < now),
    )
    rows = await session.execute(
        select(JobChunkRow.job_id, JobChunkRow.index, JobRow.model)
        .join(JobRow, JobRow.id == JobChunkRow.job_id)
        .where(
            waiting,
            JobChunkRow.published_at.is_(None),
            JobRow.state.in_(("queued", "running")),
        )
        .order_by(JobRow.priority.desc(), JobRow.created_at, JobChunkRow.job_id, JobChunkRow.index)
        .limit(limit)
    )
    return [UnpublishedChunk(j, i, m) for j, i, m in rows.all()]


async def mark_published(
    *, session: AsyncSession, keys: Collection[tuple[str, int]], at: dt.datetime | None
) -> None:
    """Record that a message was published for each (job, index) at `at` (None: forget it,
    so the relay publishes one again)."""
    if keys:
        await session.execute(
            update(JobChunkRow)
            .where(tuple_(JobChunkRow.job_id, JobChunkRow.index).in_(list(keys)))
            .values(published_at=at)
        )


@dataclass(frozen=True, slots=True)
class ChunkStatus:
    """Where a chunk stands, as a worker holding a message for it needs to know."""

    state: str
    job_state: str
    model: str
    version: str
    next_attempt_at: dt.datetime | None
    lease_expires_at: dt.datetime | None


async def chunk_status(*, session: AsyncSession, job_id: str, index: int) -> ChunkStatus | None:
    """The chunk's state and its job's, or None when there is no such chunk."""
    row = (
        await session.execute(
            select(
                JobChunkRow.state,
                JobRow.state,
                JobRow.model,
                JobRow.version,
                JobChunkRow.next_attempt_at,
                JobChunkRow.lease_expires_at,
            )
            .join(JobRow, JobRow.id == JobChunkRow.job_id)
            .where(JobChunkRow.job_id == job_id, JobChunkRow.index == index)
        )
    ).one_or_none()
    return None if row is None else ChunkStatus(*row)
