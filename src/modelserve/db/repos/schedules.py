"""Data access for scheduled jobs: schedules and the ticks they claimed. Keyword-only; the
caller owns the session.

`claim_tick` is the only thing that makes a tick run once: it inserts the `(schedule, tick)`
row, and the primary key refuses a second replica's insert. The same transaction moves the
schedule to its next tick, so the winner's commit is what every replica reads next.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from modelserve.db.base import utcnow
from modelserve.db.tables.schedules import JobScheduleRow, JobScheduleRunRow
from modelserve.errors import ConflictError

MAX_ERROR_TEXT = 500


def _owned(owner_id: str | None) -> Any:
    return (
        JobScheduleRow.owner_id.is_(None)
        if owner_id is None
        else (JobScheduleRow.owner_id == owner_id)
    )


async def create_schedule(*, session: AsyncSession, fields: dict[str, Any]) -> JobScheduleRow:
    """Insert a schedule."""
    now = utcnow()
    row = JobScheduleRow(**fields, created_at=now, updated_at=now)
    session.add(row)
    await session.flush()
    return row


async def get_schedule(*, session: AsyncSession, schedule_id: str) -> JobScheduleRow | None:
    """A schedule by id (fresh from the database)."""
    row: JobScheduleRow | None = await session.get(
        JobScheduleRow, schedule_id, populate_existing=True
    )
    return row


async def list_schedules(
    *, session: AsyncSession, owner_id: str | None, all_owners: bool, limit: int, offset: int
) -> tuple[Sequence[JobScheduleRow], int]:
    """A page of schedules, oldest first, and the total; only `owner_id`'s unless
    `all_owners`."""
    conditions = [] if all_owners else [_owned(owner_id)]
    rows = (
        await session.scalars(
            select(JobScheduleRow)
            .where(*conditions)
            .order_by(JobScheduleRow.created_at, JobScheduleRow.id)
            .limit(limit)
            .offset(offset)
        )
    ).all()
    total = await session.scalar(
        select(func.count()).select_from(JobScheduleRow).where(*conditions)
    )
    return rows, int(total or 0)


async def delete_schedule(*, session: AsyncSession, row: JobScheduleRow) -> None:
    """Delete a schedule and its claimed ticks (the jobs it started stay)."""
    await session.delete(row)
    await session.flush()


async def due_schedules(
    *, session: AsyncSession, now: dt.datetime, limit: int
) -> list[JobScheduleRow]:
    """Active schedules whose next tick is at or before `now`, earliest first."""
    rows = await session.scalars(
        select(JobScheduleRow)
        .where(JobScheduleRow.state == "active", JobScheduleRow.next_run_at <= now)
        .order_by(JobScheduleRow.next_run_at, JobScheduleRow.id)
        .limit(limit)
    )
    return list(rows)


async def claim_tick(
    *,
    session: AsyncSession,
    schedule_id: str,
    tick: dt.datetime,
    next_run_at: dt.datetime,
    now: dt.datetime,
) -> None:
    """Claim `tick` of the schedule at `now` and move it to `next_run_at`. ConflictError when
    another replica claimed it first: the caller's transaction is then rolled back whole."""
    session.add(JobScheduleRunRow(schedule_id=schedule_id, tick=tick, claimed_at=now))
    try:
        await session.flush()
    except IntegrityError as exc:
        raise ConflictError("this tick was claimed by another scheduler") from exc
    await session.execute(
        update(JobScheduleRow)
        .where(JobScheduleRow.id == schedule_id, JobScheduleRow.next_run_at == tick)
        .values(next_run_at=next_run_at, last_run_at=tick, updated_at=now)
    )


async def finish_tick(
    *,
    session: AsyncSession,
    schedule_id: str,
    tick: dt.datetime,
    job_id: str | None,
    error: str | None,
) -> None:
    """Record what a claimed tick did: the job it submitted, or why none."""
    now = utcnow()
    text = None if error is None else error[:MAX_ERROR_TEXT]
    await session.execute(
        update(JobScheduleRunRow)
        .where(JobScheduleRunRow.schedule_id == schedule_id, JobScheduleRunRow.tick == tick)
        .values(job_id=job_id, error=text, finished_at=now)
    )
    await session.execute(
        update(JobScheduleRow)
        .where(JobScheduleRow.id == schedule_id)
        .values(last_job_id=job_id, last_error=text, updated_at=now)
    )


async def unfinished_ticks(
    *, session: AsyncSession, claimed_before: dt.datetime, limit: int
) -> list[JobScheduleRunRow]:
    """Ticks claimed before `claimed_before` whose job was never recorded (the replica that
    claimed them stopped in between)."""
    rows = await session.scalars(
        select(JobScheduleRunRow)
        .where(
            JobScheduleRunRow.finished_at.is_(None),
            JobScheduleRunRow.claimed_at < claimed_before,
        )
        .order_by(JobScheduleRunRow.claimed_at)
        .limit(limit)
    )
    return list(rows)


async def pause_broken(*, session: AsyncSession, schedule_id: str, error: str) -> None:
    """Pause a schedule that cannot run, with the reason as its last error."""
    await session.execute(
        update(JobScheduleRow)
        .where(JobScheduleRow.id == schedule_id)
        .values(
            state="paused", next_run_at=None, last_error=error[:MAX_ERROR_TEXT], updated_at=utcnow()
        )
    )
