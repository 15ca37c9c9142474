"""Hooks the batching engine calls so metrics can watch it. Observers can never break inference."""

from __future__ import annotations

from typing import Literal, Protocol

ExpiredWhere = Literal["queue", "running"]


class EngineObserver(Protocol):
    """Receives engine events; every call is made on the event loop and must be cheap."""

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        """A batch of `size` items finished after waiting and running for the given times."""

    def on_shed(self, count: int) -> None:
        """`count` items were refused because the queue was full."""

    def on_expired(self, where: ExpiredWhere) -> None:
        """An item passed its deadline, still queued or while its batch was running."""

    def on_error(self, kind: str) -> None:
        """A batch or item failed; kind is the error class name."""

    def on_rerun(self) -> None:
        """Part of a failed batch was run again to isolate the failing items (optional: the
        engine calls it only on observers that have it)."""


class NullObserver:
    """Observer that records nothing (the default)."""

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        return None

    def on_shed(self, count: int) -> None:
        return None

    def on_expired(self, where: ExpiredWhere) -> None:
        return None

    def on_error(self, kind: str) -> None:
        return None

    def on_rerun(self) -> None:
        return None


class CountingObserver:
    """Observer that keeps plain counters; used by /v1/models stats and by tests."""

    def __init__(self) -> None:
        self.batches = 0
        self.items = 0
        self.shed = 0
        self.expired_in_queue = 0
        self.abandoned_running = 0
        self.errors: dict[str, int] = {}
        self.batch_sizes: dict[int, int] = {}
        self.reruns = 0

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        self.batches += 1
        self.items += size
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1

    def on_shed(self, count: int) -> None:
        self.shed += count

    def on_expired(self, where: ExpiredWhere) -> None:
        if where == "queue":
            self.expired_in_queue += 1
        else:
            self.abandoned_running += 1

    def on_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def on_rerun(self) -> None:
        self.reruns += 1
