"""HTTP routes of batch jobs (`/v1/jobs/...`) and of their uploads (`/v1/uploads/...`), and
their place in the app.

Translation only: each handler names its scope (`jobs:read`, `jobs:write`) and calls one
method of `modelserve.jobs`, which decides visibility (others' jobs are 404). Upload parts are
raw request bodies under the ordinary body limit; results stream from a thread.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    MalformedBodyError,
    PayloadTooLargeError,
    RateLimitedError,
    ResourceNotFoundError,
    ServiceNotFoundError,
    UnsupportedMediaError,
)
from modelserve.http.deps import Meta, require_scope
from modelserve.http.error_docs import error_responses
from modelserve.jobs.service import Jobs
from modelserve.jobs.states import JobState
from modelserve.jobs.uploads import JobUploads
from modelserve.schemas.jobs import (
    MEDIA_TYPES,
    OBJECT_ID_PATTERN,
    DataFormat,
    JobCreate,
    JobErrorsPublic,
    JobPublic,
    JobsPublic,
    UploadComplete,
    UploadPublic,
)
from modelserve.types import Principal

PREFIX = "/v1/jobs"
UPLOADS_PREFIX = "/v1/uploads"
MAX_OFFSET = 1_000_000
MAX_UPLOAD_OFFSET = 2**53
# Running chunks get this long to finish when the server stops; the rest are given back.
STOP_TIMEOUT_S = 2.0

JobsReader = Annotated[Principal, require_scope("jobs:read")]
JobsWriter = Annotated[Principal, require_scope("jobs:write")]
JobId = Annotated[str, Path(pattern=OBJECT_ID_PATTERN, description="A job id (32 hex digits).")]
UploadId = Annotated[
    str, Path(pattern=OBJECT_ID_PATTERN, description="An upload id (32 hex digits).")
]
Limit = Annotated[int, Query(ge=1, description="Page size; larger values are clamped.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]

_NOT_FOUND = error_responses(ResourceNotFoundError)
_CHANGE = error_responses(ResourceNotFoundError, ConflictError)


def _jobs(request: Request) -> Jobs:
    return cast(Jobs, request.app.state.jobs)


def _uploads(request: Request) -> JobUploads:
    return _jobs(request).uploads


def _page(request: Request, limit: int) -> int:
    return min(limit, _jobs(request).config.max_page_size)


def _results_content() -> dict[str, Any]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {media.split(";")[0]: dict(binary) for media in MEDIA_TYPES.values()}


def build_uploads_router() -> APIRouter:
    """The resumable uploads that feed jobs, under `/v1/uploads` (its own path: under
    `/v1/jobs/` it would share a path pattern with `/v1/jobs/{job_id}`)."""
    router = APIRouter(prefix=UPLOADS_PREFIX, tags=["jobs"])

    @router.post("", status_code=201, summary="Start a resumable upload")
    async def create_upload(request: Request, principal: JobsWriter) -> UploadPublic:
        """Then send the file in parts (`PUT`) and complete it; a job reads it by its id."""
        return await _uploads(request).create(principal)

    @router.get("/{upload_id}", summary="Describe an upload", responses=_NOT_FOUND)
    async def get_upload(
        upload_id: UploadId, request: Request, principal: JobsReader
    ) -> UploadPublic:
        """`size` is where the next part starts (resume there after a broken connection)."""
        return await _uploads(request).get(principal, upload_id)

    @router.put(
        "/{upload_id}",
        summary="Append a part to an upload",
        responses=error_responses(
            ResourceNotFoundError,
            ConflictError,
            InvalidInputError,
            PayloadTooLargeError,
            UnsupportedMediaError,
        ),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "minLength": 1}}
                },
            }
        },
    )
    async def put_part(
        upload_id: UploadId,
        request: Request,
        principal: JobsWriter,
        offset: Annotated[
            int,
            Query(ge=0, le=MAX_UPLOAD_OFFSET, description="Where the part starts: the `size`."),
        ],
    ) -> UploadPublic:
        """The raw bytes of the next part as the body (at most `max_part_bytes`); 409 when
        `offset` is not where the upload ends (its `size`)."""
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media.startswith("multipart/"):
            raise UnsupportedMediaError("send the part as the raw request body, not multipart")
        try:
            return await _uploads(request).put_part(principal, upload_id, offset, request.stream())
        except ClientDisconnect:
            raise MalformedBodyError("the part was interrupted; send it again") from None

    @router.post(
        "/{upload_id}/complete",
        summary="Complete an upload",
        responses=error_responses(ResourceNotFoundError, ConflictError, InvalidInputError),
    )
    async def complete_upload(
        upload_id: UploadId,
        request: Request,
        principal: JobsWriter,
        body: UploadComplete | None = None,
    ) -> UploadPublic:
        """With `sha256`, the upload is completed only when the bytes have that digest."""
        digest = body.sha256 if body is not None else None
        return await _uploads(request).complete(principal, upload_id, digest)

    return router


def build_jobs_router() -> APIRouter:
    """Every job route; the app's state must hold `jobs`."""
    router = APIRouter(prefix=PREFIX, tags=["jobs"])

    @router.post(
        "",
        status_code=202,
        summary="Submit a job",
        responses={
            200: {"model": JobPublic, "description": "The job this idempotency key names."},
            **error_responses(
                ResourceNotFoundError,
                ServiceNotFoundError,
                ConflictError,
                InvalidInputError,
                RateLimitedError,
            ),
        },
    )
    async def submit(
        body: JobCreate, request: Request, response: Response, principal: JobsWriter, meta: Meta
    ) -> JobPublic:
        """Run a served model over every row of a completed upload. 202 with the new job;
        200 with the existing one when this owner already sent the same `idempotency_key`.
        429 with Retry-After past the owner's limits of active jobs or queued rows."""
        job, created = await _jobs(request).submit(principal, body, meta)
        if not created:
            response.status_code = 200
        return job

    @router.get("", summary="List jobs")
    async def list_jobs(
        request: Request,
        principal: JobsReader,
        state: Annotated[JobState | None, Query(description="Only jobs in this state.")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> JobsPublic:
        """Your jobs (an admin's: everyone's), newest first."""
        return await _jobs(request).list(
            principal, state=state, limit=_page(request, limit), offset=offset
        )

    @router.get("/{job_id}", summary="Describe a job", responses=_NOT_FOUND)
    async def get_job(job_id: JobId, request: Request, principal: JobsReader) -> JobPublic:
        """State, row counts, rate, ETA and UTC timestamps."""
        return await _jobs(request).get(principal, job_id)

    @router.post("/{job_id}/cancel", summary="Cancel a job", responses=_CHANGE)
    async def cancel(
        job_id: JobId, request: Request, principal: JobsWriter, meta: Meta
    ) -> JobPublic:
        """No chunk starts after this and a running one is not recorded; finished chunks'
        results stay downloadable. 409 for a job that already finished."""
        return await _jobs(request).cancel(principal, job_id, meta)

    @router.post("/{job_id}/retry", summary="Retry a job's failed chunks", responses=_CHANGE)
    async def retry(
        job_id: JobId, request: Request, principal: JobsWriter, meta: Meta
    ) -> JobPublic:
        """Only the chunks that kept failing run again; 409 when there are none."""
        return await _jobs(request).retry(principal, job_id, meta)

    @router.get(
        "/{job_id}/results",
        summary="Download a job's results",
        response_class=StreamingResponse,
        responses={
            200: {"content": _results_content(), "description": "Results in row order."},
            **_NOT_FOUND,
        },
    )
    async def results(
        job_id: JobId,
        request: Request,
        principal: JobsReader,
        format: Annotated[
            DataFormat | None, Query(description="The job's `output_format` when absent.")
        ] = None,
    ) -> StreamingResponse:
        """Every finished chunk's results in row order, each keyed by its row number (a
        running or cancelled job's so far). Rows without a result are in `/errors`."""
        chosen, pieces = await _jobs(request).results(principal, job_id, format)
        extension = chosen.value
        return StreamingResponse(
            pieces,
            media_type=MEDIA_TYPES[chosen],
            headers={"content-disposition": f'attachment; filename="job-{job_id}.{extension}"'},
        )

    @router.get("/{job_id}/errors", summary="List a job's failed rows", responses=_NOT_FOUND)
    async def errors(
        job_id: JobId,
        request: Request,
        principal: JobsReader,
        after_row: Annotated[int, Query(ge=-1, le=2**53, description="Rows after this one.")] = -1,
        limit: Limit = 100,
    ) -> JobErrorsPublic:
        """Row number, error code and message of every row without a result, by row."""
        return await _jobs(request).errors(
            principal, job_id, after_row=after_row, limit=_page(request, limit)
        )

    return router
