"""Scheduled jobs: list, pause, resume, delete (after a confirmation page).

The same `JobSchedules` calls as GET /v1/schedules and POST .../pause, .../resume and DELETE
/v1/schedules/{id}, with their scopes (`jobs:read`, `jobs:write`): members see their own
schedules, admins everyone's; each change is audited by the service. Schedules are created
through the API or the CLI (their job names an upload or an input-folder file). On a server
without the jobs service these pages do not exist (404).
"""

from __future__ import annotations

from starlette.responses import Response

from modelserve.console.jobs import jobs_of
from modelserve.console.pipeline import ConsoleNotFoundError, Visit
from modelserve.jobs.schedules import JobSchedules

PAGE_SIZE = 50
NOTICES = {
    "paused": "Schedule paused: no tick runs until it is resumed.",
    "resumed": "Schedule resumed: it runs from its next tick.",
    "deleted": "Schedule deleted; the jobs it started stay.",
}


def schedules_of(visit: Visit) -> JobSchedules:
    """The app's schedules service; 404 when this server runs no jobs."""
    jobs_of(visit)  # the same 404 as the jobs pages
    schedules: JobSchedules | None = getattr(visit.request.app.state, "job_schedules", None)
    if schedules is None:
        raise ConsoleNotFoundError("scheduled jobs are not enabled on this server")
    return schedules


def _offset(visit: Visit) -> int:
    text = visit.request.query_params.get("offset", "0")
    return min(int(text), 1_000_000) if text.isdigit() else 0


def _schedule_id(visit: Visit) -> str:
    return str(visit.request.path_params["schedule_id"])


async def schedules_page(visit: Visit) -> Response:
    """GET /console/schedules?offset=."""
    principal = await visit.require("jobs:read")
    offset = _offset(visit)
    page = await schedules_of(visit).list(principal, limit=PAGE_SIZE, offset=offset)
    return visit.render(
        "schedules.html",
        nav="schedules",
        page=page,
        offset=offset,
        page_size=PAGE_SIZE,
        can_write=visit.principal.has_scope("jobs:write"),
        notice=NOTICES.get(visit.request.query_params.get("done", "")),
    )


async def pause(visit: Visit) -> Response:
    """POST /console/schedules/{schedule_id}/pause."""
    principal = await visit.require("jobs:write")
    await schedules_of(visit).pause(principal, _schedule_id(visit), visit.meta)
    return visit.redirect("/schedules", done="paused")


async def resume(visit: Visit) -> Response:
    """POST /console/schedules/{schedule_id}/resume."""
    principal = await visit.require("jobs:write")
    await schedules_of(visit).resume(principal, _schedule_id(visit), visit.meta)
    return visit.redirect("/schedules", done="resumed")


async def confirm_delete(visit: Visit) -> Response:
    """GET /console/schedules/{schedule_id}/delete: what goes, and a button."""
    principal = await visit.require("jobs:write")
    schedule = await schedules_of(visit).get(principal, _schedule_id(visit))
    return visit.render("confirm_schedule.html", nav="schedules", schedule=schedule)


async def delete(visit: Visit) -> Response:
    """POST /console/schedules/{schedule_id}/delete."""
    principal = await visit.require("jobs:write")
    await schedules_of(visit).delete(principal, _schedule_id(visit), visit.meta)
    return visit.redirect("/schedules", done="deleted")
