"""`JobSchedules`: create, list, show, pause, resume and delete scheduled jobs.

Visibility is the jobs' rule: owners see their own schedules, admins every one, others' are
404. A schedule is checked when it is created: its cron expression and time zone (422), its
model (404), and its input (the upload must be the owner's and complete, or the input file must
exist); a tick that later finds the model gone or the owner at a limit records why in
`last_error` and waits for the next one (`jobs/scheduler.py`). Changes are audited.
"""

from __future__ import annotations

from typing import Any

from modelserve.auth.audit import AuditEvent, AuditLog, RequestMeta
from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import schedules as repo
from modelserve.db.tables.schedules import JobScheduleRow
from modelserve.errors import ConflictError, ResourceNotFoundError
from modelserve.jobs.cron import next_tick
from modelserve.jobs.gateway import ModelGateway
from modelserve.jobs.uploads import JobUploads, new_id
from modelserve.registry.service import sees_everything
from modelserve.schemas.schedules import (
    JobTemplate,
    ScheduleCreate,
    SchedulePublic,
    SchedulesPublic,
)
from modelserve.types import Principal


def schedule_public(row: JobScheduleRow) -> SchedulePublic:
    """A schedule as the API shows it."""
    return SchedulePublic(
        id=row.id,
        name=row.name,
        cron=row.cron,
        timezone=row.timezone,
        state="paused" if row.state == "paused" else "active",
        job=JobTemplate.model_validate(row.template),
        next_run_at=row.next_run_at,
        last_run_at=row.last_run_at,
        last_job_id=row.last_job_id,
        last_error=row.last_error,
        created_at=row.created_at,
    )


class JobSchedules:
    """Scheduled-job operations. One instance per process."""

    def __init__(
        self,
        database: Database,
        uploads: JobUploads,
        gateway: ModelGateway,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self.database = database
        self.uploads = uploads
        self.gateway = gateway
        self.audit = audit

    async def row(self, session: Session, principal: Principal, schedule_id: str) -> JobScheduleRow:
        """The caller's schedule (404 for others' and unknown ids alike)."""
        row = await repo.get_schedule(session=session, schedule_id=schedule_id)
        if row is None or not (sees_everything(principal) or row.owner_id == principal.owner_id):
            raise ResourceNotFoundError(f"no schedule {schedule_id!r}")
        return row

    async def create(
        self, principal: Principal, body: ScheduleCreate, meta: RequestMeta
    ) -> SchedulePublic:
        """A new, active schedule; its first tick is the first time `cron` names from now."""
        first = next_tick(body.cron, body.timezone, utcnow())
        template = body.job
        self.gateway.resolve_version(template.model, template.version)  # 404 unknown model
        async with self.database.session() as session:
            if template.input.upload_id is not None:
                upload = await self.uploads.row(session, principal, template.input.upload_id)
                if upload.state != "complete":
                    raise ConflictError("the upload is not complete yet; complete it first")
            else:
                assert template.input.path is not None
                self.uploads.input_file(template.input.path)
            row = await repo.create_schedule(
                session=session,
                fields={
                    "id": new_id(),
                    "owner_id": principal.owner_id,
                    "created_by": principal.subject,
                    "name": body.name,
                    "cron": body.cron,
                    "timezone": body.timezone,
                    "template": template.model_dump(mode="json"),
                    "state": "active",
                    "next_run_at": first,
                },
            )
            await self._audit(session, AuditEvent.SCHEDULE_CREATED, principal, meta, row)
            return schedule_public(row)

    async def list(self, principal: Principal, *, limit: int, offset: int) -> SchedulesPublic:
        """A page of the caller's schedules (every one for admins), oldest first."""
        async with self.database.session() as session:
            rows, total = await repo.list_schedules(
                session=session,
                owner_id=principal.owner_id,
                all_owners=sees_everything(principal),
                limit=limit,
                offset=offset,
            )
            data = [schedule_public(r) for r in rows]
        return SchedulesPublic(data=data, count=total, limit=limit, offset=offset)

    async def get(self, principal: Principal, schedule_id: str) -> SchedulePublic:
        """One schedule."""
        async with self.database.session() as session:
            return schedule_public(await self.row(session, principal, schedule_id))

    async def pause(
        self, principal: Principal, schedule_id: str, meta: RequestMeta
    ) -> SchedulePublic:
        """No tick runs until it is resumed (pausing a paused schedule changes nothing)."""
        async with self.database.session() as session:
            row = await self.row(session, principal, schedule_id)
            if row.state != "paused":
                row.state, row.next_run_at, row.updated_at = "paused", None, utcnow()
                await self._audit(session, AuditEvent.SCHEDULE_PAUSED, principal, meta, row)
            return schedule_public(row)

    async def resume(
        self, principal: Principal, schedule_id: str, meta: RequestMeta
    ) -> SchedulePublic:
        """Run again from the next tick after now (ticks missed while paused do not run)."""
        async with self.database.session() as session:
            row = await self.row(session, principal, schedule_id)
            if row.state != "active":
                now = utcnow()
                row.state, row.updated_at = "active", now
                row.next_run_at = next_tick(row.cron, row.timezone, now)
                await self._audit(session, AuditEvent.SCHEDULE_RESUMED, principal, meta, row)
            return schedule_public(row)

    async def delete(self, principal: Principal, schedule_id: str, meta: RequestMeta) -> None:
        """Delete the schedule; the jobs it started stay."""
        async with self.database.session() as session:
            row = await self.row(session, principal, schedule_id)
            await self._audit(session, AuditEvent.SCHEDULE_DELETED, principal, meta, row)
            await repo.delete_schedule(session=session, row=row)

    async def _audit(
        self,
        session: Session,
        event: AuditEvent,
        principal: Principal,
        meta: RequestMeta,
        row: JobScheduleRow,
    ) -> None:
        if self.audit is not None:
            details: dict[str, Any] = {"name": row.name, "cron": row.cron}
            await self.audit.record(
                session,
                event,
                actor=principal,
                meta=meta,
                target_type="schedule",
                target_id=row.id,
                details=details,
            )
