"""Job rows as the API shows them: counts, rate, ETA, UTC timestamps."""

from __future__ import annotations

import datetime as dt

from modelserve.db.base import utcnow
from modelserve.db.tables.jobs import JobRow
from modelserve.jobs.states import JobState
from modelserve.schemas.jobs import DataFormat, JobChunks, JobPublic, JobRows


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A database timestamp as aware UTC (SQLite hands back naive ones, written as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def progress(row: JobRow, now: dt.datetime) -> tuple[float | None, float | None]:
    """(rows finished per second since the start, seconds left at that rate while running)."""
    started = aware(row.started_at)
    finished = row.rows_done + row.rows_failed
    if started is None or finished == 0:
        return None, None
    elapsed = ((aware(row.finished_at) or now) - started).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = finished / elapsed
    if row.state != JobState.RUNNING:
        return round(rate, 3), None
    return round(rate, 3), round((row.total_rows - finished) / rate, 1)


def job_public(row: JobRow, *, now: dt.datetime | None = None) -> JobPublic:
    """One job."""
    rate, eta = progress(row, now or utcnow())
    remaining = max(0, row.total_rows - row.rows_done - row.rows_failed)
    key = row.idempotency_scope.partition(":")[2] if row.idempotency_scope else None
    created = aware(row.created_at)
    assert created is not None
    return JobPublic(
        id=row.id,
        model=row.model,
        version=row.version,
        version_requested=row.version_requested,
        state=JobState(row.state).value,
        format=DataFormat(row.input_format),
        output_format=DataFormat(row.output_format),
        chunk_size=row.chunk_size,
        priority=row.priority,
        upload_id=row.upload_id,
        idempotency_key=key,
        rows=JobRows(
            total=row.total_rows,
            done=row.rows_done,
            failed=row.rows_failed,
            remaining=remaining,
        ),
        chunks=JobChunks(total=row.chunks_total, failed=row.chunks_failed),
        rate_rows_per_s=rate,
        eta_s=eta,
        created_at=created,
        started_at=aware(row.started_at),
        finished_at=aware(row.finished_at),
    )
