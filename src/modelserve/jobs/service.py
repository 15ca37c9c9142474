"""`Jobs`: submit, list, show, cancel and retry batch jobs; read their results and failed rows.

Authorization of *who may call what* is the route's job (`jobs:read`, `jobs:write`); this
layer decides *what a caller may see*: their own jobs and uploads, or every one for admins
(others' are 404, never 403). A submit is checked before anything is stored: the model version
is resolved once (every chunk runs on it), the upload is read once to count its rows and cut
chunks (a file that cannot be read is a 422), and the owner's limits are checked (429).
Submit, cancel and retry write their audit line in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from typing import Any

import orjson

from modelserve.auth.audit import AuditEvent, AuditLog, RequestMeta
from modelserve.config import JobsConfig
from modelserve.db.base import utcnow
from modelserve.db.engine import Database
from modelserve.db.repos import Session
from modelserve.db.repos import jobs as repo
from modelserve.db.tables.jobs import JobRow
from modelserve.errors import (
    ConflictError,
    InvalidInputError,
    RateLimitedError,
    ResourceNotFoundError,
)
from modelserve.jobs.gateway import ModelGateway
from modelserve.jobs.inputs import InputPlan, open_parts, plan_input
from modelserve.jobs.outputs import iter_results, output_columns
from modelserve.jobs.rows import field_kinds
from modelserve.jobs.sql_queue import chunk_work
from modelserve.jobs.states import JobState
from modelserve.jobs.uploads import JobUploads, new_id
from modelserve.jobs.views import job_public
from modelserve.jobs.work import InputPart, JobQueue
from modelserve.registry.service import sees_everything
from modelserve.schemas.jobs import (
    DataFormat,
    JobCreate,
    JobErrorPublic,
    JobErrorsPublic,
    JobPublic,
    JobsPublic,
)
from modelserve.types import Principal

# When an owner is at a limit, try again after this long (jobs take a while to finish).
LIMIT_RETRY_AFTER_S = 30.0


class Jobs:
    """Batch job operations. One instance per process; safe to share between requests."""

    def __init__(
        self,
        database: Database,
        uploads: JobUploads,
        gateway: ModelGateway,
        queue: JobQueue,
        config: JobsConfig,
        *,
        audit: AuditLog | None = None,
    ) -> None:
        self.database = database
        self.uploads = uploads
        self.store = uploads.store
        self.gateway = gateway
        self.queue = queue
        self.config = config
        self.audit = audit

    async def job_row(
        self, session: Session, principal: Principal, job_id: str, *, lock: bool = False
    ) -> JobRow:
        """The caller's job (404 for others' and unknown ids alike); with `lock`, its row is
        locked (written first: see `db/repos/jobs.py`) for the rest of the transaction."""
        if lock:
            row = await repo.lock_job(session=session, job_id=job_id)
        else:
            row = await repo.get_job(session=session, job_id=job_id)
        if row is None or not (sees_everything(principal) or row.owner_id == principal.owner_id):
            raise ResourceNotFoundError(f"no job {job_id!r}")
        return row

    # -- submit ----------------------------------------------------------------------------

    async def submit(
        self, principal: Principal, body: JobCreate, meta: RequestMeta
    ) -> tuple[JobPublic, bool]:
        """Create a job (True), or give back the one this owner's idempotency key names."""
        digest = _digest(body)
        scope = None
        if body.idempotency_key is not None:
            scope = f"{principal.owner_id or '-'}:{body.idempotency_key}"
            existing = await self._existing(scope, digest)
            if existing is not None:
                return existing, False
        version = self.gateway.resolve_version(body.model, body.version)
        input_schema, output_schema = self.gateway.schemas(body.model, version)
        fmt = body.format
        chunk_size = body.chunk_size or self.config.chunk_size
        upload_id = body.input.upload_id
        if upload_id is None:  # a file in the input folder: copied into an upload now
            assert body.input.path is not None
            upload_id = await self.uploads.import_file(principal, body.input.path)
        async with self.database.session() as session:
            upload = await self.uploads.row(session, principal, upload_id)
            if upload.state != "complete":
                raise ConflictError("the upload is not complete yet; complete it first")
            parts = await self.uploads.parts(session, upload.id)
            await self._check_limits(session, principal, rows=0)
        plan = await asyncio.to_thread(self._plan, parts, fmt, chunk_size)
        if plan.total_rows == 0:
            raise InvalidInputError("the input holds no rows")
        meta_fields: dict[str, Any] = {
            "columns": list(plan.columns),
            "field_kinds": {k: list(v) for k, v in field_kinds(input_schema).items()},
            "output_columns": output_columns(output_schema),
        }
        fields = {
            "id": new_id(),
            "owner_id": principal.owner_id,
            "created_by": principal.subject,
            "idempotency_scope": scope,
            "request_digest": digest,
            "model": body.model,
            "version_requested": body.version,
            "version": version,
            "upload_id": upload.id,
            "input_format": fmt.value,
            "output_format": (body.output_format or fmt).value,
            "chunk_size": chunk_size,
            "priority": body.priority,
            "total_rows": plan.total_rows,
            "meta": meta_fields,
        }
        try:
            async with self.database.session() as session:
                await repo.lock_owner(
                    session=session, owner_id=principal.owner_id, upload_id=upload.id
                )
                await self._check_limits(session, principal, rows=plan.total_rows)
                row = await repo.create_job(session=session, fields=fields, chunks=plan.chunks)
                chunks = [chunk_work(row, i, c, parts) for i, c in enumerate(plan.chunks)]
                if self.audit is not None:
                    await self.audit.record(
                        session,
                        AuditEvent.JOB_SUBMITTED,
                        actor=principal,
                        meta=meta,
                        target_type="job",
                        target_id=row.id,
                        details={"model": row.model, "version": version, "rows": plan.total_rows},
                    )
                public = job_public(row)
        except ConflictError:
            if scope is not None:  # the same key, submitted concurrently: theirs won
                existing = await self._existing(scope, digest)
                if existing is not None:
                    return existing, False
            raise
        await self.queue.enqueue(chunks)
        return public, True

    async def _existing(self, scope: str, digest: str) -> JobPublic | None:
        async with self.database.session() as session:
            row = await repo.job_by_scope(session=session, scope=scope)
        if row is None:
            return None
        if row.request_digest != digest:
            raise ConflictError(
                "this idempotency key was used for a different job; use a new key",
                details={"job_id": row.id},
            )
        return job_public(row)

    async def _check_limits(self, session: Session, principal: Principal, *, rows: int) -> None:
        active, queued = await repo.owner_load(session=session, owner_id=principal.owner_id)
        if active >= self.config.max_active_jobs:
            raise RateLimitedError(
                f"you have {active} jobs queued or running, the most allowed;"
                " submit again when one finishes",
                retry_after_s=LIMIT_RETRY_AFTER_S,
                details={"max_active_jobs": self.config.max_active_jobs},
            )
        if queued + rows > self.config.max_queued_rows:
            raise RateLimitedError(
                f"{queued} of your rows are waiting and this job adds {rows}: over the"
                f" {self.config.max_queued_rows} allowed",
                retry_after_s=LIMIT_RETRY_AFTER_S,
                details={"max_queued_rows": self.config.max_queued_rows},
            )

    def _plan(self, parts: list[InputPart], fmt: DataFormat, chunk_size: int) -> InputPlan:
        with open_parts(self.store, parts) as stream:
            return plan_input(stream, fmt, chunk_size=chunk_size, max_rows=self.config.max_rows)

    # -- reading ---------------------------------------------------------------------------

    async def list(
        self, principal: Principal, *, state: JobState | None, limit: int, offset: int
    ) -> JobsPublic:
        """A page of the caller's jobs (every job for admins), newest first."""
        async with self.database.session() as session:
            rows, total = await repo.list_jobs(
                session=session,
                owner_id=principal.owner_id,
                all_owners=sees_everything(principal),
                state=state.value if state is not None else None,
                limit=limit,
                offset=offset,
            )
        now = utcnow()
        data = [job_public(r, now=now) for r in rows]
        return JobsPublic(data=data, count=total, limit=limit, offset=offset)

    async def get(self, principal: Principal, job_id: str) -> JobPublic:
        """One job with its progress."""
        async with self.database.session() as session:
            return job_public(await self.job_row(session, principal, job_id))

    async def results(
        self, principal: Principal, job_id: str, fmt: DataFormat | None
    ) -> tuple[DataFormat, Iterator[bytes]]:
        """The results so far, in row order (a running or cancelled job's finished chunks)."""
        async with self.database.session() as session:
            row = await self.job_row(session, principal, job_id)
            chunks = await repo.done_chunks(session=session, job_id=job_id)
        blobs = [c.result_sha256 for c in chunks if c.result_sha256 is not None]
        chosen = fmt or DataFormat(row.output_format)
        columns = (row.meta or {}).get("output_columns") or []
        return chosen, iter_results(self.store, blobs, chosen, columns)

    async def errors(
        self, principal: Principal, job_id: str, *, after_row: int, limit: int
    ) -> JobErrorsPublic:
        """A page of the job's failed rows, by row number."""
        async with self.database.session() as session:
            await self.job_row(session, principal, job_id)
            rows = await repo.list_errors(
                session=session, job_id=job_id, after_row=after_row, limit=limit
            )
        data = [JobErrorPublic.model_validate(r) for r in rows]
        return JobErrorsPublic(
            data=data, next_after_row=data[-1].row if len(data) == limit else None
        )

    # -- changes ---------------------------------------------------------------------------

    async def cancel(self, principal: Principal, job_id: str, meta: RequestMeta) -> JobPublic:
        """Stop a queued or running job: no new chunk starts, a running one is not recorded.
        The results of chunks that finished stay downloadable."""
        async with self.database.session() as session:
            row = await self.job_row(session, principal, job_id, lock=True)
            JobState(row.state).check(JobState.CANCELLED, what="cancel")
            await repo.cancel_chunks(session=session, job_id=job_id)
            await repo.set_job_state(
                session=session, job=row, state=JobState.CANCELLED, finished_at=utcnow()
            )
            await self._audit(session, AuditEvent.JOB_CANCELLED, principal, meta, row)
            return job_public(row)

    async def retry(self, principal: Principal, job_id: str, meta: RequestMeta) -> JobPublic:
        """Run a finished job's failed chunks again (its other results are kept)."""
        async with self.database.session() as session:
            row = await self.job_row(session, principal, job_id, lock=True)
            JobState(row.state).check(JobState.QUEUED, what="retry")
            if row.state == JobState.RUNNING or not row.chunks_failed:
                raise ConflictError(
                    "only a finished job with failed chunks can be retried",
                    details={"state": row.state, "failed_chunks": row.chunks_failed},
                )
            count = await repo.requeue_failed_chunks(session=session, job=row)
            await repo.set_job_state(
                session=session, job=row, state=JobState.QUEUED, finished_at=None
            )
            await self._audit(session, AuditEvent.JOB_RETRIED, principal, meta, row, chunks=count)
            public = job_public(row)
        await self.queue.enqueue([])
        return public

    async def _audit(
        self,
        session: Session,
        event: AuditEvent,
        principal: Principal,
        meta: RequestMeta,
        row: JobRow,
        **details: Any,
    ) -> None:
        if self.audit is not None:
            await self.audit.record(
                session,
                event,
                actor=principal,
                meta=meta,
                target_type="job",
                target_id=row.id,
                details={"model": row.model, **details},
            )


def _digest(body: JobCreate) -> str:
    """What makes two submits the same job (everything but the key itself)."""
    fields = body.model_dump(mode="json", exclude={"idempotency_key"})
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()
