"""Wire schemas of scheduled jobs: Create / Public / ListPublic.

A schedule is a cron expression (five fields, read in `timezone`) and a job template: the body
of `POST /v1/jobs` without its idempotency key (each run's key is made of the schedule and the
tick). Timestamps are UTC with `Z`, as everywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelserve.schemas.jobs import (
    MAX_CHUNK_SIZE,
    MAX_PRIORITY,
    MODEL_PATTERN,
    VERSION_PATTERN,
    DataFormat,
    JobInput,
    UtcTimestamp,
)

# Printable, no control characters (names are listed and logged).
SCHEDULE_NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,100}$"
# Five cron fields of cron's own characters (cronsim checks the rest).
CRON_PATTERN = r"^[0-9A-Za-z*/,?#LW -]{9,100}$"
# An IANA zone name, e.g. "UTC", "Europe/Paris", "America/Argentina/Buenos_Aires".
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$"

ScheduleStateName = Literal["active", "paused"]
_WRITE = ConfigDict(extra="forbid")


class JobTemplate(BaseModel):
    """The job a schedule submits at each tick (a job's body without `idempotency_key`)."""

    model_config = _WRITE

    model: str = Field(pattern=MODEL_PATTERN, description="A served model's name.")
    version: str | None = Field(
        None,
        pattern=VERSION_PATTERN,
        description="A loaded version, or none: the version serving unpinned requests at"
        " each tick.",
    )
    input: JobInput
    format: DataFormat
    output_format: DataFormat | None = None
    chunk_size: int | None = Field(None, ge=1, le=MAX_CHUNK_SIZE)
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)


class ScheduleCreate(BaseModel):
    """Submit `job` at every time `cron` names, in `timezone`."""

    model_config = _WRITE

    name: str = Field(pattern=SCHEDULE_NAME_PATTERN, description="A label of yours.")
    cron: str = Field(
        pattern=CRON_PATTERN,
        description="Five fields: minute hour day-of-month month day-of-week"
        " (`0 3 * * *`: every day at 03:00).",
        examples=["0 3 * * *"],
    )
    timezone: str = Field(
        "UTC", pattern=TIMEZONE_PATTERN, description="IANA time zone the fields are read in."
    )
    job: JobTemplate


class SchedulePublic(BaseModel):
    """A schedule, when it runs next and how its last run went."""

    id: str
    name: str
    cron: str
    timezone: str
    state: ScheduleStateName
    job: JobTemplate
    next_run_at: UtcTimestamp | None = Field(description="None while paused.")
    last_run_at: UtcTimestamp | None = Field(description="The last tick that ran.")
    last_job_id: str | None = Field(description="The job the last tick submitted.")
    last_error: str | None = Field(description="Why the last tick submitted no job.")
    created_at: UtcTimestamp


class SchedulesPublic(BaseModel):
    """A page of schedules, oldest first."""

    data: list[SchedulePublic]
    count: int
    limit: int
    offset: int
