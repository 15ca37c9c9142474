"""Batch jobs: list with live progress, a job's page, cancel, retry, download its results.

The same `Jobs` calls as GET /v1/jobs[/{id}[/errors|/results]] and POST .../cancel and
.../retry, with their scopes (`jobs:read`, `jobs:write`): members see their own jobs, admins
everyone's; cancel and retry are audited by the service. Jobs are submitted through the API
or the CLI (uploads are resumable there); the console follows and manages them. On a server
without the jobs service these pages do not exist (404).
"""

from __future__ import annotations

from starlette.responses import Response, StreamingResponse

from modelserve.console.pipeline import ConsoleNotFoundError, Visit
from modelserve.errors import InvalidInputError
from modelserve.jobs.service import Jobs
from modelserve.jobs.states import JobState
from modelserve.schemas.jobs import MEDIA_TYPES, DataFormat

PAGE_SIZE = 50
ERROR_ROWS = 50
NOTICES = {
    "cancelled": "Job cancelled: no new chunk starts; finished results stay downloadable.",
    "retried": "Failed chunks queued again.",
}


def jobs_of(visit: Visit) -> Jobs:
    """The app's jobs service; 404 when this server has none."""
    jobs: Jobs | None = getattr(visit.request.app.state, "jobs", None)
    if jobs is None:
        raise ConsoleNotFoundError("batch jobs are not enabled on this server")
    return jobs


def _state(visit: Visit) -> JobState | None:
    text = visit.request.query_params.get("state", "")
    if not text:
        return None
    try:
        return JobState(text)
    except ValueError:
        raise InvalidInputError("unknown job state") from None


def _offset(visit: Visit) -> int:
    text = visit.request.query_params.get("offset", "0")
    return min(int(text), 1_000_000) if text.isdigit() else 0


async def _listing(visit: Visit, template: str) -> Response:
    principal = await visit.require("jobs:read")
    state = _state(visit)
    offset = _offset(visit)
    page = await jobs_of(visit).list(principal, state=state, limit=PAGE_SIZE, offset=offset)
    active = any(job.state in ("queued", "running") for job in page.data)
    return visit.render(
        template,
        nav="jobs",
        page=page,
        state=state.value if state is not None else "",
        states=[s.value for s in JobState],
        offset=offset,
        page_size=PAGE_SIZE,
        active=active,
        names=await visit.user_names(),
    )


async def jobs_page(visit: Visit) -> Response:
    """GET /console/jobs?state=&offset=."""
    return await _listing(visit, "jobs.html")


async def jobs_live(visit: Visit) -> Response:
    """GET /console/live/jobs: the list alone, polled while jobs are running."""
    return await _listing(visit, "_jobs_list.html")


async def job_page(visit: Visit) -> Response:
    """GET /console/jobs/{job_id}: progress, failed rows, actions."""
    principal = await visit.require("jobs:read")
    job_id = str(visit.request.path_params["job_id"])
    jobs = jobs_of(visit)
    job = await jobs.get(principal, job_id)
    errors = await jobs.errors(principal, job_id, after_row=-1, limit=ERROR_ROWS)
    return visit.render(
        "job.html",
        nav="jobs",
        job=job,
        errors=errors,
        formats=[f.value for f in DataFormat],
        can_write=visit.principal.has_scope("jobs:write"),
        notice=NOTICES.get(visit.request.query_params.get("done", "")),
    )


async def cancel_job(visit: Visit) -> Response:
    """POST /console/jobs/{job_id}/cancel."""
    principal = await visit.require("jobs:write")
    job_id = str(visit.request.path_params["job_id"])
    await jobs_of(visit).cancel(principal, job_id, visit.meta)
    return visit.redirect(f"/jobs/{job_id}", done="cancelled")


async def retry_job(visit: Visit) -> Response:
    """POST /console/jobs/{job_id}/retry."""
    principal = await visit.require("jobs:write")
    job_id = str(visit.request.path_params["job_id"])
    await jobs_of(visit).retry(principal, job_id, visit.meta)
    return visit.redirect(f"/jobs/{job_id}", done="retried")


async def download(visit: Visit) -> Response:
    """GET /console/jobs/{job_id}/results?format=: the results so far, as a file."""
    principal = await visit.require("jobs:read")
    job_id = str(visit.request.path_params["job_id"])
    text = visit.request.query_params.get("format", "")
    try:
        wanted = DataFormat(text) if text else None
    except ValueError:
        raise InvalidInputError("unknown format") from None
    chosen, pieces = await jobs_of(visit).results(principal, job_id, wanted)
    return StreamingResponse(
        pieces,
        media_type=MEDIA_TYPES[chosen],
        headers={"content-disposition": f'attachment; filename="job-{job_id}.{chosen.value}"'},
    )
