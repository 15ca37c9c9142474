"""Wire schemas of batch jobs and their uploads: Create / Public / ListPublic per resource.

Timestamps are UTC and serialized with `Z` whatever the database hands back (SQLite returns
naive datetimes, PostgreSQL aware ones). States are the values of `modelserve.jobs.states`
(a test keeps the two in step).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# Same rules as model names and version labels of served models (`service/spec.py`).
MODEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
OBJECT_ID_PATTERN = r"^[0-9a-f]{32}$"
SHA256_PATTERN = r"^[0-9a-f]{64}$"
# Printable, no control characters: keys are echoed in lists and logs.
KEY_PATTERN = r"^[!-~]{1,200}$"
# A relative path of plain names: no leading slash, no backslashes, no control characters.
INPUT_PATH_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*){0,15}$"
MAX_CHUNK_SIZE = 100_000
MAX_PRIORITY = 100

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


def _as_utc(value: dt.datetime) -> dt.datetime:
    # A naive value is the UTC it was written as (every writer uses `utcnow()`).
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


UtcTimestamp = Annotated[dt.datetime, AfterValidator(_as_utc)]
_READ = ConfigDict(from_attributes=True)
_WRITE = ConfigDict(extra="forbid")


class DataFormat(enum.StrEnum):
    """File formats of job inputs and results."""

    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


MEDIA_TYPES: dict[DataFormat, str] = {
    DataFormat.JSONL: "application/x-ndjson",
    DataFormat.CSV: "text/csv; charset=utf-8",
    DataFormat.PARQUET: "application/vnd.apache.parquet",
}


# -- uploads ---------------------------------------------------------------------------------


class UploadPublic(BaseModel):
    """A resumable upload: send parts at `size` until all is there, then complete it."""

    model_config = _READ

    id: str
    state: Literal["open", "complete"]
    size: int = Field(description="Bytes received so far: the offset of the next part.")
    sha256: str | None = Field(None, description="SHA-256 of the whole file, once complete.")
    max_bytes: int = Field(description="Largest whole upload.")
    max_part_bytes: int = Field(description="Largest part (one request body).")
    created_at: UtcTimestamp
    completed_at: UtcTimestamp | None = None


class UploadComplete(BaseModel):
    """Finish an upload; give the file's SHA-256 to have it checked."""

    model_config = _WRITE

    sha256: str | None = Field(None, pattern=SHA256_PATTERN)


# -- jobs ------------------------------------------------------------------------------------


class JobInput(BaseModel):
    """Where a job's rows come from: a completed upload, or a file in the server's input
    folder (`jobs.input_dir`), read when the job is submitted. Exactly one of the two."""

    model_config = _WRITE

    upload_id: str | None = Field(
        None, pattern=OBJECT_ID_PATTERN, description="A completed upload."
    )
    path: str | None = Field(
        None,
        pattern=INPUT_PATH_PATTERN,
        description="A file under the server's `jobs.input_dir` (relative, no `..`); copied"
        " into a new upload at submit, so each run of a schedule reads the file as it is then.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> JobInput:
        if (self.upload_id is None) == (self.path is None):
            raise ValueError("give exactly one of upload_id and path")
        if self.path is not None and ".." in self.path.split("/"):
            raise ValueError("path must stay inside the input folder (no `..`)")
        return self


class JobCreate(BaseModel):
    """Run a served model over every row of an uploaded file."""

    model_config = _WRITE

    model: str = Field(pattern=MODEL_PATTERN, description="A served model's name.")
    version: str | None = Field(
        None,
        pattern=VERSION_PATTERN,
        description="A loaded version's label, or the serving alias (`production`); the"
        " version serving unpinned requests when absent. Resolved once, at submit.",
    )
    input: JobInput
    format: DataFormat = Field(description="Format of the uploaded file.")
    output_format: DataFormat | None = Field(
        None, description="Results format; `format` if absent."
    )
    chunk_size: int | None = Field(
        None, ge=1, le=MAX_CHUNK_SIZE, description="Rows per chunk (the unit of checkpointing)."
    )
    priority: int = Field(
        0, ge=-MAX_PRIORITY, le=MAX_PRIORITY, description="Higher runs first, among jobs."
    )
    idempotency_key: str | None = Field(
        None,
        pattern=KEY_PATTERN,
        description="The same key from the same owner gives back the same job (200).",
    )


class JobRows(BaseModel):
    """Row counts of a job."""

    total: int
    done: int = Field(description="Rows with a result.")
    failed: int = Field(description="Rows without one (listed by /errors).")
    remaining: int


class JobChunks(BaseModel):
    """Chunk counts of a job."""

    total: int
    failed: int = Field(description="Chunks that kept failing; `retry` runs them again.")


class JobPublic(BaseModel):
    """A job, its state and progress."""

    id: str
    model: str
    version: str = Field(description="The version every chunk runs on.")
    version_requested: str | None
    state: JobStateName
    format: DataFormat
    output_format: DataFormat
    chunk_size: int
    priority: int
    upload_id: str
    idempotency_key: str | None
    rows: JobRows
    chunks: JobChunks
    rate_rows_per_s: float | None = Field(
        description="Rows finished per second since the job started."
    )
    eta_s: float | None = Field(description="Seconds left at that rate, while it runs.")
    created_at: UtcTimestamp
    started_at: UtcTimestamp | None
    finished_at: UtcTimestamp | None


class JobsPublic(BaseModel):
    """A page of jobs, newest first."""

    data: list[JobPublic]
    count: int
    limit: int
    offset: int


class JobErrorPublic(BaseModel):
    """A row that has no result, and why."""

    model_config = _READ

    row: int = Field(description="Row number in the input, from 0 (CSV: after the header).")
    code: str
    message: str
    details: Any = None


class JobErrorsPublic(BaseModel):
    """A page of failed rows, by row number; pass `next_after_row` as `after_row` for more."""

    data: list[JobErrorPublic]
    next_after_row: int | None
