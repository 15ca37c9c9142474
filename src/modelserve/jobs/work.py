"""The runner seam: what crosses between the queue and whoever runs chunks.

`JobQueue` is where chunks wait and how a worker takes one (a lease), keeps it (renew) and
gives it back: finished (`ack`), to retry later (`retry_later`), given up (`fail`) or unstarted
(`release`). `SqlJobQueue` keeps the queue in the database (the default, embedded runner);
`MemoryJobQueue` is the in-memory fake the tests use. `ChunkRunner` runs one named chunk; the
Celery task (`jobs/celery_app.py`) calls it with nothing but a job id and a chunk index.
`ChunkPublisher` hands `Dispatch`es (a chunk, its queue, a delay) to a broker: Celery's in
`celery_app.py`, `MemoryPublisher` in tests.

Everything here is a frozen dataclass of plain values: it may cross a process or a broker as
JSON, never as a pickle.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One chunk of one job: all a remote worker needs to be told."""

    job_id: str
    index: int


@dataclass(frozen=True, slots=True)
class InputPart:
    """One part of a job's uploaded input: `size` bytes at `offset`, stored as blob `sha256`."""

    offset: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class ChunkWork:
    """Everything needed to run one chunk, read once when it is leased."""

    task: ChunkTask
    model: str
    version: str
    input_format: str
    row_start: int
    row_end: int
    byte_start: int | None
    byte_end: int | None
    parts: tuple[InputPart, ...]
    # CSV header, and the input's field kinds ("number", "boolean", ...) for CSV cells.
    columns: tuple[str, ...] = ()
    field_kinds: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def rows(self) -> int:
        """How many rows the chunk holds."""
        return self.row_end - self.row_start


@dataclass(frozen=True, slots=True)
class Lease:
    """A chunk held by one worker until `token` is acked, given back, or expires."""

    work: ChunkWork
    token: str
    attempt: int


@dataclass(frozen=True, slots=True)
class RowFailure:
    """A row that produced no result."""

    row: int
    code: str
    message: str
    details: Any = None


@dataclass(frozen=True, slots=True)
class ChunkResult:
    """What a finished chunk produced: its results blob (None when no row succeeded)."""

    result_sha256: str | None
    rows_done: int
    failures: tuple[RowFailure, ...] = ()


class JobQueue(Protocol):
    """Chunks waiting to run, and their leases."""

    async def enqueue(self, works: Sequence[ChunkWork]) -> None:
        """Make chunks available to workers (after their job was stored)."""
        ...

    async def lease(self, *, servable: Collection[tuple[str, str]], limit: int) -> list[Lease]:
        """Up to `limit` chunks of jobs on a (model, version) in `servable`, best first."""
        ...

    async def lease_chunk(self, task: ChunkTask) -> Lease | None:
        """That one chunk, if it is waiting (or its lease expired); None otherwise."""
        ...

    async def renew(self, lease: Lease) -> bool:
        """Keep the lease; False when it is lost (expired and taken, or the job cancelled)."""
        ...

    async def ack(self, lease: Lease, result: ChunkResult) -> bool:
        """Record the chunk's results and failed rows at once; False if the lease was lost."""
        ...

    async def retry_later(self, lease: Lease, *, error: str, delay_s: float) -> bool:
        """Give the chunk back to run again after `delay_s` (a transient failure)."""
        ...

    async def fail(self, lease: Lease, *, code: str, error: str) -> bool:
        """Give up on the chunk: every one of its rows is recorded as failed with `code`."""
        ...

    async def release(self, lease: Lease) -> None:
        """Give an unfinished chunk back at once, this attempt not counted (shutting down)."""
        ...

    async def depth(self) -> int:
        """Chunks waiting to run."""
        ...


class ChunkRunner(Protocol):
    """Runs one named chunk to its end: leased, processed, acked (or retried, or failed)."""

    async def run(self, task: ChunkTask) -> bool:
        """True when this call finished the chunk; False when it was not leasable."""
        ...


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One broker message: run `task`, taken from `queue`, not before `countdown_s` from now."""

    task: ChunkTask
    queue: str
    countdown_s: float = 0.0


class ChunkPublisher(Protocol):
    """Sends chunk messages to workers (blocking: call it from a thread)."""

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        """Send every message, or raise: a caller marks nothing published after a raise."""
        ...
