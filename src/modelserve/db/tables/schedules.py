"""Tables of scheduled jobs: schedules (a cron expression and a job template) and the ticks
they claimed.

A tick is claimed by inserting its `(schedule_id, tick)` row: the primary key lets exactly one
server replica win it, so a tick never starts two jobs however many schedulers run. The run's
`job_id` is written once its job is submitted (with an idempotency key made of the schedule and
the tick, so a submit repeated after a crash gives back the same job).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.db.base import Base, Timestamped


class JobScheduleRow(Timestamped, Base):
    """A job run on a cron schedule, for its owner."""

    __tablename__ = "job_schedules"
    __table_args__ = (Index("ix_job_schedules_state_next_run_at", "state", "next_run_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    created_by: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    cron: Mapped[str] = mapped_column(String(100), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    # The job to submit at each tick: a `JobCreate` body without its idempotency key.
    template: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False)
    # "active" or "paused"; a paused schedule has no next run.
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    next_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_job_id: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(String(500))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class JobScheduleRunRow(Base):
    """One tick of a schedule, claimed by the replica that inserted it."""

    __tablename__ = "job_schedule_runs"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("job_schedules.id", ondelete="CASCADE"), primary_key=True
    )
    tick: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    job_id: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(500))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
