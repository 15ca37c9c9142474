"""States of jobs and chunks, as `str` enums with the transitions each allows.

    job:    queued -> running -> succeeded | failed      queued | running -> cancelled
            succeeded | failed -> queued                 (retry of the failed chunks)
    chunk:  pending -> running -> done | failed          running -> pending (retry, lease lost)
            pending | running -> cancelled               failed -> pending (job retry)

A job is `succeeded` when every chunk finished and at least one produced results (rows that
failed validation or the model are reported, they never fail a job); `failed` when every
chunk failed. Writers check a transition with `JobState.check` before they make it.
"""

from __future__ import annotations

import enum

from modelserve.errors import ConflictError


class JobState(enum.StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True once nothing more will run (until a retry)."""
        return self in FINISHED_JOB_STATES

    def can_become(self, target: JobState) -> bool:
        """Whether `target` is an allowed next state."""
        return target in _JOB_TRANSITIONS[self]

    def check(self, target: JobState, *, what: str) -> None:
        """ConflictError (409) naming the state when `target` is not allowed next."""
        if not self.can_become(target):
            raise ConflictError(
                f"cannot {what} a job that is {self.value}",
                details={"state": self.value},
            )


_JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}
    ),
    JobState.SUCCEEDED: frozenset({JobState.QUEUED}),
    JobState.FAILED: frozenset({JobState.QUEUED}),
    JobState.CANCELLED: frozenset(),
}
FINISHED_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class ChunkState(enum.StrEnum):
    """Where one chunk is."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def can_become(self, target: ChunkState) -> bool:
        """Whether `target` is an allowed next state."""
        return target in _CHUNK_TRANSITIONS[self]


_CHUNK_TRANSITIONS: dict[ChunkState, frozenset[ChunkState]] = {
    ChunkState.PENDING: frozenset({ChunkState.RUNNING, ChunkState.CANCELLED}),
    ChunkState.RUNNING: frozenset(
        {ChunkState.DONE, ChunkState.FAILED, ChunkState.PENDING, ChunkState.CANCELLED}
    ),
    ChunkState.DONE: frozenset(),
    ChunkState.FAILED: frozenset({ChunkState.PENDING}),
    ChunkState.CANCELLED: frozenset(),
}
UNFINISHED_CHUNK_STATES = frozenset({ChunkState.PENDING, ChunkState.RUNNING})


def final_job_state(*, chunks_total: int, chunks_failed: int) -> JobState:
    """The state of a job all of whose chunks finished."""
    return JobState.FAILED if chunks_failed >= chunks_total else JobState.SUCCEEDED
