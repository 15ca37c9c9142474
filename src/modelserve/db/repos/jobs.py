"""Data access for batch jobs: uploads, jobs, chunk plans, failed rows. Keyword-only; the caller
owns the session. Leasing and finishing chunks (the queue) are in `jobs_queue.py`.

Writes that change a job's state start with `lock_job` (an UPDATE of the job's row): on
PostgreSQL that is the row lock every writer of the job queues on, on SQLite it takes the
database's write lock before anything is read, so a transaction never has to upgrade a read
snapshot another writer already moved past.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from modelserve.db.base import utcnow
from modelserve.db.tables.jobs import (
    JobChunkRow,
    JobErrorRow,
    JobRow,
    JobUploadPartRow,
    JobUploadRow,
)
from modelserve.errors import ConflictError

ACTIVE = ("queued", "running")


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """One chunk to create: its rows, and where they are in the input (when known)."""

    row_start: int
    row_end: int
    byte_start: int | None = None
    byte_end: int | None = None


# -- uploads ---------------------------------------------------------------------------------


async def create_upload(
    *, session: AsyncSession, upload_id: str, owner_id: str | None
) -> JobUploadRow:
    """Start an empty upload."""
    row = JobUploadRow(id=upload_id, owner_id=owner_id, state="open", size=0)
    session.add(row)
    await session.flush()
    return row


async def get_upload(
    *, session: AsyncSession, upload_id: str, lock: bool = False
) -> JobUploadRow | None:
    """An upload by id; with `lock`, its row is locked (written first) for the transaction."""
    if lock:
        await session.execute(
            update(JobUploadRow).where(JobUploadRow.id == upload_id).values(size=JobUploadRow.size)
        )
    row: JobUploadRow | None = await session.get(JobUploadRow, upload_id, populate_existing=True)
    return row


async def add_part(
    *, session: AsyncSession, upload: JobUploadRow, offset: int, size: int, sha256: str
) -> None:
    """Append a part at `offset` (the upload's size); ConflictError if another got there first."""
    session.add(JobUploadPartRow(upload_id=upload.id, offset=offset, size=size, sha256=sha256))
    upload.size = offset + size
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("another part was written at this offset first") from exc


async def upload_parts(*, session: AsyncSession, upload_id: str) -> list[JobUploadPartRow]:
    """The parts of an upload, in order."""
    rows = await session.scalars(
        select(JobUploadPartRow)
        .where(JobUploadPartRow.upload_id == upload_id)
        .order_by(JobUploadPartRow.offset)
    )
    return list(rows)


# -- jobs ------------------------------------------------------------------------------------


async def get_job(*, session: AsyncSession, job_id: str) -> JobRow | None:
    """A job by id (fresh from the database)."""
    row: JobRow | None = await session.get(JobRow, job_id, populate_existing=True)
    return row


async def lock_job(*, session: AsyncSession, job_id: str) -> JobRow | None:
    """The job, its row locked for the rest of the transaction (see the module docstring)."""
    await session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=utcnow()))
    return await get_job(session=session, job_id=job_id)


async def job_by_scope(*, session: AsyncSession, scope: str) -> JobRow | None:
    """The job an idempotency scope (`owner:key`) names."""
    row: JobRow | None = await session.scalar(
        select(JobRow).where(JobRow.idempotency_scope == scope)
    )
    return row


async def lock_owner(*, session: AsyncSession, owner_id: str | None, upload_id: str) -> None:
    """Serialize one owner's submits until the transaction ends, so that checking their limits
    and inserting the job are one step: a transaction-scoped advisory lock on PostgreSQL; on
    SQLite any write takes the database's one write lock (here, a no-op write to the upload)."""
    if session.get_bind().dialect.name == "postgresql":
        digest = hashlib.sha256(f"modelserve.jobs:{owner_id}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        await session.execute(select(func.pg_advisory_xact_lock(key)))
    else:
        await session.execute(
            update(JobUploadRow).where(JobUploadRow.id == upload_id).values(size=JobUploadRow.size)
        )


async def owner_load(*, session: AsyncSession, owner_id: str | None) -> tuple[int, int]:
    """(jobs queued or running, rows of those jobs not processed yet) of one owner."""
    owner = JobRow.owner_id.is_(None) if owner_id is None else JobRow.owner_id == owner_id
    result = await session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(JobRow.total_rows - JobRow.rows_done - JobRow.rows_failed), 0),
        ).where(owner, JobRow.state.in_(ACTIVE))
    )
    jobs, rows = result.one()
    return int(jobs), int(rows)


async def create_job(
    *, session: AsyncSession, fields: dict[str, Any], chunks: Sequence[ChunkPlan]
) -> JobRow:
    """Insert a queued job and its pending chunks; ConflictError when its idempotency scope is
    taken (a concurrent submit with the same key)."""
    now = utcnow()
    row = JobRow(
        **fields,
        state="queued",
        rows_done=0,
        rows_failed=0,
        chunks_total=len(chunks),
        chunks_failed=0,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("a job with this idempotency key is being created") from exc
    if chunks:
        await session.execute(
            insert(JobChunkRow),
            [
                {
                    "job_id": row.id,
                    "index": index,
                    "row_start": plan.row_start,
                    "row_end": plan.row_end,
                    "byte_start": plan.byte_start,
                    "byte_end": plan.byte_end,
                    "state": "pending",
                    "attempts": 0,
                    "rows_done": 0,
                    "rows_failed": 0,
                }
                for index, plan in enumerate(chunks)
            ],
        )
    return row


async def list_jobs(
    *,
    session: AsyncSession,
    owner_id: str | None,
    all_owners: bool,
    state: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[JobRow], int]:
    """A page of jobs, newest first, and the total; only `owner_id`'s unless `all_owners`."""
    conditions = []
    if not all_owners:
        conditions.append(
            JobRow.owner_id.is_(None) if owner_id is None else JobRow.owner_id == owner_id
        )
    if state is not None:
        conditions.append(JobRow.state == state)
    rows = (
        await session.scalars(
            select(JobRow)
            .where(*conditions)
            .order_by(JobRow.created_at.desc(), JobRow.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    total = await session.scalar(select(func.count()).select_from(JobRow).where(*conditions))
    return rows, int(total or 0)


async def set_job_state(
    *,
    session: AsyncSession,
    job: JobRow,
    state: str,
    finished_at: dt.datetime | None,
) -> None:
    """Write a job's new state (the caller checked the transition)."""
    job.state = state
    job.finished_at = finished_at
    job.updated_at = utcnow()
    await session.flush()


async def cancel_chunks(*, session: AsyncSession, job_id: str) -> int:
    """Cancel every pending or running chunk (a running one's lease stops being honoured)."""
    result = await session.execute(
        update(JobChunkRow)
        .where(JobChunkRow.job_id == job_id, JobChunkRow.state.in_(("pending", "running")))
        .values(state="cancelled", lease_token=None, lease_expires_at=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def requeue_failed_chunks(*, session: AsyncSession, job: JobRow) -> int:
    """Put a job's failed chunks back to pending, forgetting their failed rows; how many."""
    failed = list(
        await session.scalars(
            select(JobChunkRow).where(JobChunkRow.job_id == job.id, JobChunkRow.state == "failed")
        )
    )
    if not failed:
        return 0
    indexes = [c.index for c in failed]
    await session.execute(
        delete(JobErrorRow).where(
            JobErrorRow.job_id == job.id, JobErrorRow.chunk_index.in_(indexes)
        )
    )
    job.rows_failed -= sum(c.rows_failed for c in failed)
    job.chunks_failed = 0
    await session.execute(
        update(JobChunkRow)
        .where(JobChunkRow.job_id == job.id, JobChunkRow.index.in_(indexes))
        .values(
            state="pending",
            attempts=0,
            rows_failed=0,
            next_attempt_at=None,
            last_error=None,
            lease_token=None,
            lease_expires_at=None,
            finished_at=None,
            published_at=None,  # Celery mode: the outbox relay sends them out again
        )
    )
    return len(indexes)


async def done_chunks(*, session: AsyncSession, job_id: str) -> list[JobChunkRow]:
    """The job's chunks that have results, in row order."""
    rows = await session.scalars(
        select(JobChunkRow)
        .where(JobChunkRow.job_id == job_id, JobChunkRow.state == "done")
        .order_by(JobChunkRow.index)
    )
    return list(rows)


async def list_errors(
    *, session: AsyncSession, job_id: str, after_row: int, limit: int
) -> list[JobErrorRow]:
    """Failed rows of a job after `after_row`, by row number."""
    rows = await session.scalars(
        select(JobErrorRow)
        .where(JobErrorRow.job_id == job_id, JobErrorRow.row > after_row)
        .order_by(JobErrorRow.row)
        .limit(limit)
    )
    return list(rows)
