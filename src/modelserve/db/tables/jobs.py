"""Tables of batch jobs: uploads and their parts, jobs, their chunks, and failed rows.

The `job_chunks` rows are the queue: a chunk is leased by writing a random token and an expiry
into it, and finished by one UPDATE that checks the token, so a worker whose lease was taken
over can never finish the chunk a second time. A finished chunk points at its results, one
immutable blob in the artifact store (JSON lines keyed by row number): the blob is written
first and the pointer, the chunk's state, its failed rows and the job's counters are written
in one transaction after it, so a crash between the two leaves an orphan blob, never a row
counted twice (docs/jobs.md, "Durability").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelserve.db.base import Base, Timestamped


class JobUploadRow(Timestamped, Base):
    """A resumable upload: parts are appended in order until it is completed."""

    __tablename__ = "job_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # "open" while parts arrive, "complete" once it may feed jobs (never changes again).
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class JobUploadPartRow(Base):
    """One part of an upload: the bytes at `offset`, stored as a blob."""

    __tablename__ = "job_upload_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("job_uploads.id", ondelete="CASCADE"), primary_key=True
    )
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)


class JobRow(Timestamped, Base):
    """One batch job: what to run, over which upload, its state and progress counters."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_owner_id_state", "owner_id", "state"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner_id: Mapped[str | None] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(128))
    # "<owner>:<key>": unique, so one owner's key names one job (NULL: no key given).
    idempotency_scope: Mapped[str | None] = mapped_column(String(300), unique=True)
    # SHA-256 of the submitted parameters: the same key with other parameters is a conflict.
    request_digest: Mapped[str] = mapped_column(String(64), nullable=False)
    model: Mapped[str] = mapped_column(String(63), nullable=False)
    # As asked (None, an alias or a label) and as resolved at submit (the label every chunk
    # runs on, so one job never mixes versions).
    version_requested: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    upload_id: Mapped[str] = mapped_column(
        ForeignKey("job_uploads.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    input_format: Mapped[str] = mapped_column(String(16), nullable=False)
    output_format: Mapped[str] = mapped_column(String(16), nullable=False)
    chunk_size: Mapped[int] = mapped_column(Integer, nullable=False)
    priority: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    total_rows: Mapped[int] = mapped_column(BigInteger, nullable=False)
    rows_done: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    rows_failed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    chunks_total: Mapped[int] = mapped_column(Integer, nullable=False)
    chunks_failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # What the runner needs besides the chunk's span: CSV columns, the model's input field
    # types (for CSV cells), its output columns (for CSV and Parquet results).
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class JobChunkRow(Base):
    """A range of a job's rows: the unit of leasing, checkpointing and retry."""

    __tablename__ = "job_chunks"
    __table_args__ = (Index("ix_job_chunks_state_next_attempt_at", "state", "next_attempt_at"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    row_start: Mapped[int] = mapped_column(BigInteger, nullable=False)
    row_end: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # Where the rows are in the input (JSON lines and CSV; Parquet reads by row number).
    byte_start: Mapped[int | None] = mapped_column(BigInteger)
    byte_end: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    result_sha256: Mapped[str | None] = mapped_column(String(64))
    rows_done: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rows_failed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Celery mode: when a message for this chunk was last handed to the broker. NULL on a
    # pending chunk means none was (the broker was down at submit, or the chunk was
    # requeued): the server's outbox relay publishes it (jobs/outbox.py).
    published_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class JobErrorRow(Base):
    """A row that produced no result, and why (validation, the model, or its chunk failing)."""

    __tablename__ = "job_errors"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    row: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chunk_index: Mapped[int] = mapped_column(Integer, nullable=False)
    code: Mapped[str] = mapped_column(String(64), nullable=False)
    message: Mapped[str] = mapped_column(String(1000), nullable=False)
    details: Mapped[Any] = mapped_column(JSON, nullable=True)
