"""`JobScheduler`: the loop in each server that starts scheduled jobs when their tick comes.

Every `scheduler_interval_s` it reads the active schedules whose next tick has come and, for
each, *claims* the tick: one transaction inserts the `(schedule, tick)` row (the primary key
refuses a second claim, so across any number of replicas a tick is claimed once) and moves the
schedule to its next tick after now (ticks missed while every server was down are not run one
by one: the latest one runs, once). Then it submits the template as the schedule's owner, with
the idempotency key `schedule-<id>-<tick>`, and records the job (or why there is none: the
model gone, the owner at a limit) on the tick and the schedule.

A replica that stops between claiming and recording leaves a tick without a job; any
scheduler submits it again after `RECOVER_AFTER_S`, with the same key, so it is one job
whether the first submit got through or not. The same loop works in both runner modes: the
submit stores the job, and the embedded runner or the Celery outbox takes it from there.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelserve.auth.audit import RequestMeta
from modelserve.config import JobsConfig
from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import schedules as repo
from modelserve.errors import (
    ConflictError,
    DatabaseUnavailableError,
    InvalidInputError,
    ModelserveError,
)
from modelserve.jobs.cron import next_tick
from modelserve.jobs.periodic import Periodic
from modelserve.jobs.service import Jobs
from modelserve.schemas.jobs import JobCreate
from modelserve.types import ANONYMOUS, Principal

logger = logging.getLogger("modelserve.jobs")

# Schedules handled per pass; the rest wait for the next pass.
BATCH = 100
# A claimed tick with no recorded job after this long is submitted again (same key).
RECOVER_AFTER_S = 120.0
SCHEDULER_META = RequestMeta(request_id=None, client_ip=None)


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick of one schedule, and what its job needs."""

    schedule_id: str
    tick: dt.datetime
    owner_id: str | None
    created_by: str | None
    template: dict[str, Any]

    @property
    def idempotency_key(self) -> str:
        """The same for every submit of this tick, on every replica."""
        return f"schedule-{self.schedule_id}-{self.tick:%Y%m%dT%H%M%SZ}"


def as_utc(value: dt.datetime) -> dt.datetime:
    """A stored time as aware UTC (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def owner_principal(owner_id: str | None, created_by: str | None) -> Principal:
    """Whom a schedule's jobs belong to: its owner, with the jobs scopes only."""
    if owner_id is None:
        return ANONYMOUS
    return Principal(
        kind="user",
        subject=created_by or owner_id,
        owner_id=owner_id,
        role="member",
        scopes=frozenset({"jobs:read", "jobs:write"}),
        rate_key=f"user:{owner_id}",
    )


class JobScheduler:
    """Starts due scheduled jobs from this process until stopped."""

    def __init__(
        self,
        *,
        database: Database,
        jobs: Jobs,
        config: JobsConfig,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self._database = database
        self._jobs = jobs
        self._config = config
        self._clock = clock
        self._loop = Periodic(
            "modelserve-jobs-scheduler", self.run_due, config.scheduler_interval_s
        )

    def start(self) -> None:
        """Look for due schedules now and then every `scheduler_interval_s`."""
        self._loop.start()

    async def stop(self) -> None:
        """Stop looking (a submit in flight is cancelled; its tick is recovered later)."""
        await self._loop.stop()

    async def run_due(self) -> list[str]:
        """Claim and submit every due tick; the ids of the jobs submitted (recovered ticks'
        too)."""
        now = self._clock()
        started: list[str] = []
        async with self._database.session() as session:
            due = await repo.due_schedules(session=session, now=now, limit=BATCH)
            ticks = [
                (
                    Tick(r.id, as_utc(r.next_run_at), r.owner_id, r.created_by, dict(r.template)),
                    r.cron,
                    r.timezone,
                )
                for r in due
                if r.next_run_at is not None
            ]
        for tick, cron, timezone in ticks:
            try:
                following = next_tick(cron, timezone, now)
            except InvalidInputError as exc:  # e.g. a zone the system's tzdata lost since
                await self._disable(tick, exc.message)
                continue
            if not await self._claim(tick, following, now):
                continue
            job_id = await self._submit(tick)
            if job_id is not None:
                started.append(job_id)
        started.extend(await self._recover(now))
        return started

    async def _disable(self, tick: Tick, reason: str) -> None:
        """Pause a schedule whose next tick cannot be computed, saying why (one bad schedule
        must not stop the others)."""
        logger.warning("jobs: schedule %s paused: %s", tick.schedule_id, reason)
        async with self._database.session() as session:
            await repo.pause_broken(session=session, schedule_id=tick.schedule_id, error=reason)

    async def _claim(self, tick: Tick, following: dt.datetime, now: dt.datetime) -> bool:
        try:
            async with self._database.session() as session:
                await repo.claim_tick(
                    session=session,
                    schedule_id=tick.schedule_id,
                    tick=tick.tick,
                    next_run_at=following,
                    now=now,
                )
        except ConflictError:
            return False  # another replica has it
        return True

    async def _submit(self, tick: Tick) -> str | None:
        """Submit the tick's job and record the outcome; the job's id, or None."""
        job_id: str | None = None
        error: str | None = None
        try:
            body = JobCreate.model_validate(
                {**tick.template, "idempotency_key": tick.idempotency_key}
            )
            job, _ = await self._jobs.submit(
                owner_principal(tick.owner_id, tick.created_by), body, SCHEDULER_META
            )
            job_id = job.id
        except DatabaseUnavailableError:
            raise  # nothing can be recorded either: the tick is recovered later
        except ModelserveError as exc:
            error = exc.message
        except ValueError as exc:  # a template that no longer validates
            error = f"the job template is invalid: {exc}"
        if error is not None:
            logger.warning("jobs: schedule %s submitted no job: %s", tick.schedule_id, error)
        async with self._database.session() as session:
            await repo.finish_tick(
                session=session,
                schedule_id=tick.schedule_id,
                tick=tick.tick,
                job_id=job_id,
                error=error,
            )
        return job_id

    async def _recover(self, now: dt.datetime) -> list[str]:
        before = now - dt.timedelta(seconds=RECOVER_AFTER_S)
        async with self._database.session() as session:
            runs = await repo.unfinished_ticks(session=session, claimed_before=before, limit=BATCH)
            lost = []
            for run in runs:
                schedule = await repo.get_schedule(session=session, schedule_id=run.schedule_id)
                if schedule is not None:
                    lost.append(
                        Tick(
                            schedule.id,
                            as_utc(run.tick),
                            schedule.owner_id,
                            schedule.created_by,
                            dict(schedule.template),
                        )
                    )
        started = []
        for tick in lost:
            job_id = await self._submit(tick)
            if job_id is not None:
                started.append(job_id)
        return started
