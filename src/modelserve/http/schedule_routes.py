"""HTTP routes of scheduled jobs (`/v1/schedules/...`).

Translation only: each handler names its scope (`jobs:read`, `jobs:write`, as jobs do) and
calls one method of `modelserve.jobs.schedules.JobSchedules`, which decides visibility (others'
schedules are 404).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Path, Query, Request, Response

from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    ResourceNotFoundError,
    ServiceNotFoundError,
)
from modelserve.http.deps import Meta, require_scope
from modelserve.http.error_docs import error_responses
from modelserve.jobs.schedules import JobSchedules
from modelserve.schemas.jobs import OBJECT_ID_PATTERN
from modelserve.schemas.schedules import ScheduleCreate, SchedulePublic, SchedulesPublic
from modelserve.types import Principal

PREFIX = "/v1/schedules"
MAX_OFFSET = 1_000_000

JobsReader = Annotated[Principal, require_scope("jobs:read")]
JobsWriter = Annotated[Principal, require_scope("jobs:write")]
ScheduleId = Annotated[
    str, Path(pattern=OBJECT_ID_PATTERN, description="A schedule id (32 hex digits).")
]

_NOT_FOUND = error_responses(ResourceNotFoundError)


def _schedules(request: Request) -> JobSchedules:
    return cast(JobSchedules, request.app.state.job_schedules)


def build_schedules_router() -> APIRouter:
    """Every schedule route; the app's state must hold `job_schedules`."""
    router = APIRouter(prefix=PREFIX, tags=["jobs"])

    @router.post(
        "",
        status_code=201,
        summary="Schedule a job",
        responses=error_responses(
            ResourceNotFoundError, ServiceNotFoundError, ConflictError, InvalidInputError
        ),
    )
    async def create(
        body: ScheduleCreate, request: Request, principal: JobsWriter, meta: Meta
    ) -> SchedulePublic:
        """Submit `job` at every time `cron` names in `timezone`, as you. 422 for a cron
        expression or time zone that cannot be read; 404 for an unknown model, upload or
        input file; 409 for an upload that is not complete."""
        return await _schedules(request).create(principal, body, meta)

    @router.get("", summary="List schedules")
    async def list_schedules(
        request: Request,
        principal: JobsReader,
        limit: Annotated[int, Query(ge=1, description="Page size; larger is clamped.")] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> SchedulesPublic:
        """Your schedules (an admin's: everyone's), oldest first."""
        chosen = min(limit, request.app.state.jobs.config.max_page_size)
        return await _schedules(request).list(principal, limit=chosen, offset=offset)

    @router.get("/{schedule_id}", summary="Describe a schedule", responses=_NOT_FOUND)
    async def get_schedule(
        schedule_id: ScheduleId, request: Request, principal: JobsReader
    ) -> SchedulePublic:
        """Its next tick, and the job its last tick started (or why none)."""
        return await _schedules(request).get(principal, schedule_id)

    @router.delete(
        "/{schedule_id}",
        status_code=204,
        summary="Delete a schedule",
        responses=_NOT_FOUND,
        response_class=Response,
    )
    async def delete_schedule(
        schedule_id: ScheduleId, request: Request, principal: JobsWriter, meta: Meta
    ) -> Response:
        """No tick runs after this; the jobs it started stay."""
        await _schedules(request).delete(principal, schedule_id, meta)
        return Response(status_code=204)

    @router.post("/{schedule_id}/pause", summary="Pause a schedule", responses=_NOT_FOUND)
    async def pause(
        schedule_id: ScheduleId, request: Request, principal: JobsWriter, meta: Meta
    ) -> SchedulePublic:
        """No tick runs until it is resumed."""
        return await _schedules(request).pause(principal, schedule_id, meta)

    @router.post("/{schedule_id}/resume", summary="Resume a schedule", responses=_NOT_FOUND)
    async def resume(
        schedule_id: ScheduleId, request: Request, principal: JobsWriter, meta: Meta
    ) -> SchedulePublic:
        """From the next tick after now; ticks missed while paused do not run."""
        return await _schedules(request).resume(principal, schedule_id, meta)

    return router
