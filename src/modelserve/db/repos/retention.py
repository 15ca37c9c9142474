"""Data access for retention: finished jobs past their time, uploads nothing needs, and which
blobs rows still name. Keyword-only; the caller owns the session.

Deletes are explicit, children first (failed rows, chunks, then the job; parts, then the
upload), rather than left to ON DELETE CASCADE, which SQLite applies only with its foreign-key
pragma on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from modelserve.db.tables.jobs import (
    JobChunkRow,
    JobErrorRow,
    JobRow,
    JobUploadPartRow,
    JobUploadRow,
)
from modelserve.db.tables.registry import RegistryFileRow
from modelserve.db.tables.schedules import JobScheduleRow

FINISHED = ("succeeded", "failed", "cancelled")


async def expired_jobs(*, session: AsyncSession, before: dt.datetime, limit: int) -> list[str]:
    """Ids of finished jobs that finished before `before`, oldest first."""
    rows = await session.scalars(
        select(JobRow.id)
        .where(JobRow.state.in_(FINISHED), JobRow.finished_at < before)
        .order_by(JobRow.finished_at)
        .limit(limit)
    )
    return list(rows)


async def delete_jobs(*, session: AsyncSession, job_ids: Sequence[str]) -> int:
    """Delete jobs with their chunks and failed rows; how many jobs."""
    if not job_ids:
        return 0
    await session.execute(delete(JobErrorRow).where(JobErrorRow.job_id.in_(job_ids)))
    await session.execute(delete(JobChunkRow).where(JobChunkRow.job_id.in_(job_ids)))
    result = await session.execute(delete(JobRow).where(JobRow.id.in_(job_ids)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def scheduled_uploads(*, session: AsyncSession) -> set[str]:
    """Uploads that schedules' job templates read at every tick (kept while they exist)."""
    templates = await session.scalars(select(JobScheduleRow.template))
    found: set[str] = set()
    for template in templates:
        source = template.get("input") if isinstance(template, dict) else None
        upload = source.get("upload_id") if isinstance(source, dict) else None
        if isinstance(upload, str):
            found.add(upload)
    return found


async def expired_uploads(
    *,
    session: AsyncSession,
    open_before: dt.datetime,
    complete_before: dt.datetime,
    keep: Collection[str],
    limit: int,
) -> list[str]:
    """Ids of uploads no job reads and no schedule names: open ones started before
    `open_before`, complete ones completed before `complete_before`."""
    used = select(JobRow.id).where(JobRow.upload_id == JobUploadRow.id).exists()
    rows = await session.scalars(
        select(JobUploadRow.id)
        .where(
            ~used,
            (
                (JobUploadRow.state != "complete") & (JobUploadRow.created_at < open_before)
                | (JobUploadRow.state == "complete") & (JobUploadRow.completed_at < complete_before)
            ),
        )
        .order_by(JobUploadRow.created_at)
        .limit(limit + len(keep))
    )
    return [upload for upload in rows if upload not in keep][:limit]


async def delete_uploads(*, session: AsyncSession, upload_ids: Sequence[str]) -> int:
    """Delete uploads with their parts, unless a job started reading one meanwhile; how many."""
    if not upload_ids:
        return 0
    used = select(JobRow.upload_id).where(JobRow.upload_id.in_(upload_ids))
    free = [u for u in upload_ids if u not in set(await session.scalars(used))]
    if not free:
        return 0
    await session.execute(delete(JobUploadPartRow).where(JobUploadPartRow.upload_id.in_(free)))
    result = await session.execute(delete(JobUploadRow).where(JobUploadRow.id.in_(free)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def named_blobs(*, session: AsyncSession, digests: Sequence[str]) -> set[str]:
    """Which of `digests` a row still names: a registry version's file, an upload's part, or
    a job chunk's results."""
    if not digests:
        return set()
    named: set[str] = set()
    for column in (RegistryFileRow.sha256, JobUploadPartRow.sha256, JobChunkRow.result_sha256):
        found = await session.scalars(select(column).where(column.in_(digests)).distinct())
        named.update(d for d in found if d is not None)
    return named
