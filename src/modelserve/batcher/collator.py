"""Pure batch-forming rules: when a batch closes and which queued items go into it.

No asyncio and no clock in here, so the rules are tested with plain numbers.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, eq=False)
class Pending:
    """One queued item and the future its caller awaits."""

    item: Any
    future: asyncio.Future[Any]
    arrived: float
    deadline: float
    # Loop time when the item was taken into a batch; None while queued.
    taken_at: float | None = field(default=None)
    # The request's trace when tracing is on (opaque here; see BatchTrace).
    trace: object | None = field(default=None)


def close_at(
    *, queued: int, max_batch: int, first_arrival: float, max_wait_s: float
) -> float | None:
    """When the batch now forming must close, or None to close it at once.

    A batch closes as soon as it is full, or `max_wait_s` after its first item arrived: the wait
    is measured from the first arrival, not from when a replica became free, so items that
    waited for a busy replica go out immediately.
    """
    if queued >= max_batch or max_wait_s <= 0:
        return None
    return first_arrival + max_wait_s


class WaitGate:
    """Whether an item alone in the queue should wait `max_wait` for company.

    Waiting pays only when other requests arrive during the window. Under a trickle (one client
    at a time, each sending its next request after the last answer) no window ever gains an
    item, and every request would pay the whole wait in latency. After `futile_limit` windows
    in a row closed with their first item alone, a lone item goes out at once; one in
    `probe_every` still waits, to notice company arriving again. Any batch of more than one
    item turns waiting back on.
    """

    __slots__ = ("_futile", "_skipped", "futile_limit", "probe_every")

    def __init__(self, futile_limit: int = 2, probe_every: int = 16) -> None:
        self.futile_limit = futile_limit
        self.probe_every = probe_every
        self._futile = 0
        self._skipped = 0

    def should_wait(self) -> bool:
        """Ask once per lone item whose window is open: wait for company, or go out now?"""
        if self._futile < self.futile_limit:
            return True
        self._skipped += 1
        return self._skipped % self.probe_every == 0

    def record(self, size: int, waited: bool) -> None:
        """A batch of `size` items closed; `waited` when its window ran out."""
        if size > 1:
            self._futile = 0
        elif waited:
            self._futile += 1


def drop_dead_head(queue: deque[Pending]) -> None:
    """Remove items at the head whose caller stopped waiting (deadline passed or cancelled)."""
    while queue and queue[0].future.done():
        queue.popleft()


def take_batch(queue: deque[Pending], max_batch: int, now: float) -> list[Pending]:
    """Pop up to `max_batch` live items in arrival order; items already answered are skipped."""
    batch: list[Pending] = []
    while queue and len(batch) < max_batch:
        pending = queue.popleft()
        if pending.future.done():
            continue
        pending.taken_at = now
        batch.append(pending)
    return batch
