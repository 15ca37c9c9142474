"""A `CacheObserver` that remembers what it was told, and a clock tests move by hand."""

from __future__ import annotations

from collections import Counter


class Recorder:
    """Counts what the cache reports (the metrics' calls, without Prometheus)."""

    def __init__(self) -> None:
        self.lookups: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        self.bytes = 0
        self.redis_errors: Counter[str] = Counter()

    def on_lookup(self, model: str, outcome: str) -> None:
        self.lookups[outcome] += 1

    def on_evicted(self, model: str, reason: str, count: int) -> None:
        self.evicted[reason] += count

    def on_bytes(self, model: str, delta: int) -> None:
        self.bytes += delta

    def on_redis_error(self, kind: str) -> None:
        self.redis_errors[kind] += 1


class Clock:
    """Monotonic seconds that move only when a test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
