"""`MemoryJobQueue`: the `JobQueue` in a dict, for tests of runners and chunk processing;
`MemoryPublisher`: the `ChunkPublisher` into a list.

Same rules as the database queue: a lease is a token, every later call must present it, an
expired lease may be taken over, and a chunk is acked at most once. What was acked or failed is
kept in `results` and `failed` for the test to read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from modelserve.jobs.sql_queue import new_token
from modelserve.jobs.states import ChunkState
from modelserve.jobs.work import ChunkResult, ChunkTask, ChunkWork, Dispatch, Lease


@dataclass
class _Entry:
    work: ChunkWork
    state: ChunkState = ChunkState.PENDING
    attempts: int = 0
    token: str | None = None
    expires: float = 0.0
    due: float = 0.0
    error: str | None = None


class MemoryJobQueue:
    """Chunks in memory, with leases on a (fake-able) monotonic clock."""

    def __init__(self, *, lease_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.lease_s = lease_s
        self._clock = clock
        self._entries: dict[ChunkTask, _Entry] = {}
        self.results: dict[ChunkTask, ChunkResult] = {}
        self.failed: dict[ChunkTask, tuple[str, str]] = {}

    def state(self, task: ChunkTask) -> ChunkState:
        """Where a chunk is."""
        return self._entries[task].state

    def cancel(self, job_id: str) -> None:
        """Cancel a job's unfinished chunks (their leases stop being honoured)."""
        for task, entry in self._entries.items():
            if task.job_id == job_id and entry.state in (ChunkState.PENDING, ChunkState.RUNNING):
                entry.state, entry.token = ChunkState.CANCELLED, None

    async def enqueue(self, works: Sequence[ChunkWork]) -> None:
        for work in works:
            self._entries.setdefault(work.task, _Entry(work))

    def _leasable(self, entry: _Entry, now: float) -> bool:
        if entry.state is ChunkState.PENDING:
            return entry.due <= now
        return entry.state is ChunkState.RUNNING and entry.expires < now

    def _take(self, entry: _Entry, now: float) -> Lease:
        entry.state, entry.token = ChunkState.RUNNING, new_token()
        entry.expires = now + self.lease_s
        entry.attempts += 1
        return Lease(entry.work, entry.token, entry.attempts)

    async def lease(self, *, servable: Collection[tuple[str, str]], limit: int) -> list[Lease]:
        now = self._clock()
        leases: list[Lease] = []
        for entry in self._entries.values():
            if len(leases) >= limit:
                break
            if (entry.work.model, entry.work.version) in servable and self._leasable(entry, now):
                leases.append(self._take(entry, now))
        return leases

    async def lease_chunk(self, task: ChunkTask) -> Lease | None:
        entry = self._entries.get(task)
        now = self._clock()
        return self._take(entry, now) if entry and self._leasable(entry, now) else None

    def _mine(self, lease: Lease) -> _Entry | None:
        entry = self._entries.get(lease.work.task)
        ok = entry and entry.state is ChunkState.RUNNING and entry.token == lease.token
        return entry if ok else None

    async def renew(self, lease: Lease) -> bool:
        entry = self._mine(lease)
        if entry is not None:
            entry.expires = self._clock() + self.lease_s
        return entry is not None

    async def ack(self, lease: Lease, result: ChunkResult) -> bool:
        entry = self._mine(lease)
        if entry is None:
            return False
        entry.state, entry.token = ChunkState.DONE, None
        self.results[lease.work.task] = result
        return True

    async def fail(self, lease: Lease, *, code: str, error: str) -> bool:
        entry = self._mine(lease)
        if entry is None:
            return False
        entry.state, entry.token, entry.error = ChunkState.FAILED, None, error
        self.failed[lease.work.task] = (code, error)
        return True

    async def retry_later(self, lease: Lease, *, error: str, delay_s: float) -> bool:
        entry = self._mine(lease)
        if entry is None:
            return False
        entry.state, entry.token, entry.error = ChunkState.PENDING, None, error
        entry.due = self._clock() + delay_s
        return True

    async def release(self, lease: Lease) -> None:
        entry = self._mine(lease)
        if entry is not None:
            entry.state, entry.token, entry.due = ChunkState.PENDING, None, 0.0
            entry.attempts -= 1

    async def depth(self) -> int:
        return sum(e.state is ChunkState.PENDING for e in self._entries.values())


class MemoryPublisher:
    """`ChunkPublisher` into a list; `down` makes every publish raise (a broker outage)."""

    def __init__(self) -> None:
        self.sent: list[Dispatch] = []
        self.down = False

    def publish(self, dispatches: Sequence[Dispatch]) -> None:
        if self.down:
            raise ConnectionRefusedError("the broker is down")
        self.sent.extend(dispatches)
