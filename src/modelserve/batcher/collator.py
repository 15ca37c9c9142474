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
