"""Counts kept in plain Python numbers on the hot path, pushed into Prometheus in bulk.

A prometheus_client `inc` or `observe` takes a lock (and under several workers writes a
memory-mapped file): about 1-2 us each, four or more per request. Observers run on the event
loop only, so they can add to unlocked Python numbers instead (a fraction of a microsecond)
and `flush` the totals into the real metric children, also on the loop: before every scrape
this process answers and every second in the background (so other workers' scrapes see them).

`flush` must run on the same thread as the increments (the event loop); it is not thread-safe
by design, which is what makes the increments cheap.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any


class PendingCounter:
    """Increments for one counter child, pushed by `flush`."""

    __slots__ = ("_child", "value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add to the pending total."""
        self.value += amount

    def flush(self) -> None:
        """Push the pending total into the counter."""
        value = self.value
        if value:
            self.value = 0.0
            self._child.inc(value)


class PendingHistogram:
    """Observations for one histogram child, bucketed here and pushed by `flush`.

    Writes the child's bucket and sum values directly (prometheus_client has no bulk API);
    `tests/observability/test_metrics.py` checks the result against `observe`.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        """Record one observation (same bucket rule as prometheus_client: amount <= bound)."""
        self._counts[bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def flush(self) -> None:
        """Push pending bucket counts and sum into the histogram."""
        counts = self._counts
        if not any(counts):
            return
        self._counts = [0] * len(counts)
        total, self._sum = self._sum, 0.0
        child = self._child
        child._sum.inc(total)
        buckets = child._buckets
        for index, count in enumerate(counts):
            if count:
                buckets[index].inc(count)


class PendingSet:
    """Every pending value of one Metrics object, flushed together."""

    def __init__(self) -> None:
        self._items: list[PendingCounter | PendingHistogram] = []

    def counter(self, child: Any) -> PendingCounter:
        """A pending counter for `child`, flushed with the rest."""
        pending = PendingCounter(child)
        self._items.append(pending)
        return pending

    def histogram(self, child: Any) -> PendingHistogram:
        """A pending histogram for `child`, flushed with the rest."""
        pending = PendingHistogram(child)
        self._items.append(pending)
        return pending

    def flush(self) -> None:
        """Push everything pending (call on the event loop)."""
        for item in self._items:
            item.flush()
