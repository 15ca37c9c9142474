"""Live figures for the console: request rate, latency percentiles and errors per model version.

Read from this process's Prometheus metrics (`observability/metrics.py`; with `--workers N`,
the sum over every worker, as `/metrics` shows it), not from the prediction log, so they work
with the log off. Each read keeps a snapshot of the cumulative counters (at most one a second,
`HISTORY` of them); a figure is the difference between the newest snapshot and the oldest one
inside the window, so it describes the last minute, not the process's lifetime. Percentiles are
interpolated inside histogram buckets the way Prometheus' `histogram_quantile` does.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from modelserve.observability import multiprocess
from modelserve.observability.metrics import LATENCY_BUCKETS, Metrics

WINDOW_S = 60.0
HISTORY = 240
MIN_GAP_S = 1.0
# One page asks for many models' figures: they share a reading this fresh.
FRESH_S = 0.1
REQUESTS = "modelserve_model_requests"
DURATION = "modelserve_model_request_duration_seconds"
BOUNDS = (*LATENCY_BUCKETS, math.inf)

Key = tuple[str, str]  # (model, version)


@dataclass(frozen=True, slots=True)
class Totals:
    """Cumulative counts of one model version at one moment."""

    requests: float
    errors: float  # answered with a 5xx
    buckets: tuple[float, ...]  # cumulative latency histogram, one count per bound in BOUNDS


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every version's totals at one moment, and their sums per model and overall (summed once
    here: charts read every snapshot of the history)."""

    at: float  # monotonic seconds
    wall: float  # epoch seconds, for charts
    totals: Mapping[Key, Totals]
    models: Mapping[str, Totals]
    overall: Totals

    @classmethod
    def of(cls, at: float, wall: float, totals: Mapping[Key, Totals]) -> Snapshot:
        """A snapshot of `totals`, with its sums."""
        names = {model for model, _ in totals}
        models = {name: _sum(totals, name) for name in names}
        return cls(at, wall, totals, models, _sum(totals, None))

    def model(self, name: str | None) -> Totals:
        """One model's totals over its versions (`None`: every model)."""
        if name is None:
            return self.overall
        return self.models.get(name, _EMPTY)


@dataclass(frozen=True, slots=True)
class Rates:
    """What happened between two snapshots. None: nothing to measure (no requests, or only one
    snapshot so far)."""

    seconds: float
    requests: float
    rps: float | None
    p50_ms: float | None
    p99_ms: float | None
    error_rate: float | None


NO_RATES = Rates(0.0, 0.0, None, None, None, None)
_EMPTY = Totals(0.0, 0.0, tuple(0.0 for _ in BOUNDS))


def quantile(q: float, buckets: tuple[float, ...]) -> float | None:
    """The q-quantile (seconds) of a cumulative histogram, interpolated within its bucket."""
    total = buckets[-1]
    if total <= 0:
        return None
    rank = q * total
    below = 0.0
    for index, count in enumerate(buckets):
        if count >= rank:
            lower = BOUNDS[index - 1] if index > 0 else 0.0
            upper = BOUNDS[index]
            if math.isinf(upper):
                return lower
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (upper - lower) * share
        below = count
    return None


def difference(newer: Totals, older: Totals, seconds: float) -> Rates:
    """The figures of the interval between two totals of one version."""
    requests = max(0.0, newer.requests - older.requests)
    if seconds <= 0:
        return NO_RATES
    buckets = tuple(max(0.0, a - b) for a, b in zip(newer.buckets, older.buckets, strict=True))
    p50 = quantile(0.5, buckets)
    p99 = quantile(0.99, buckets)
    return Rates(
        seconds=seconds,
        requests=requests,
        rps=requests / seconds,
        p50_ms=p50 * 1000 if p50 is not None else None,
        p99_ms=p99 * 1000 if p99 is not None else None,
        error_rate=(max(0.0, newer.errors - older.errors) / requests) if requests else None,
    )


def read_totals(families: Iterable[Metric]) -> dict[Key, Totals]:
    """Per-version totals from collected metric families (others are ignored)."""
    requests: dict[Key, float] = {}
    errors: dict[Key, float] = {}
    buckets: dict[Key, dict[float, float]] = {}
    for family in families:
        if family.name == REQUESTS:
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                key = (sample.labels["model"], sample.labels["version"])
                requests[key] = requests.get(key, 0.0) + sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors[key] = errors.get(key, 0.0) + sample.value
        elif family.name == DURATION:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    key = (sample.labels["model"], sample.labels["version"])
                    bound = float(sample.labels["le"])
                    per = buckets.setdefault(key, {})
                    per[bound] = per.get(bound, 0.0) + sample.value
    return {
        key: Totals(
            requests=count,
            errors=errors.get(key, 0.0),
            buckets=tuple(buckets.get(key, {}).get(bound, 0.0) for bound in BOUNDS),
        )
        for key, count in requests.items()
    }


class LiveStats:
    """Snapshots of the metrics of one process, and the figures between them."""

    def __init__(
        self,
        metrics: Metrics | None,
        *,
        refresh: Callable[[], None] = lambda: None,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._metrics = metrics
        self._refresh = refresh
        self._window_s = window_s
        self._clock = clock
        self._wall = wall_clock
        # The zero point: figures before a second snapshot exist are since the console started.
        self._history: deque[Snapshot] = deque(
            [Snapshot.of(clock(), wall_clock(), {})], maxlen=HISTORY
        )
        self._current: Snapshot | None = None

    @property
    def enabled(self) -> bool:
        """False when metrics are off (MODELSERVE_OBSERVABILITY__METRICS_ENABLED=false)."""
        return self._metrics is not None

    def sample(self) -> Snapshot:
        """The totals now (read again when the last reading is older than FRESH_S), kept in
        the history when the last kept one is at least MIN_GAP_S old."""
        now = self._clock()
        current = self._current
        if self._metrics is None:
            return self._history[-1]
        if current is not None and now - current.at < FRESH_S:
            return current
        self._refresh()  # pending counts of this process into the metrics first
        current = Snapshot.of(now, self._wall(), read_totals(self._families(self._metrics)))
        self._current = current
        if now - self._history[-1].at >= MIN_GAP_S:
            self._history.append(current)
        return current

    def _families(self, metrics: Metrics) -> Iterable[Metric]:
        if multiprocess.active():
            return multiprocess.scrape_registry(metrics.registry).collect()
        # One process: only the two metrics used, not every HTTP series.
        return [*metrics.model_requests.collect(), *metrics.model_duration.collect()]

    def _baseline(self, newest: Snapshot) -> Snapshot:
        # The oldest snapshot inside the window; else the newest one before it (after a quiet
        # spell with no page views); else none (the figures are then unknown).
        older = [s for s in self._history if s is not newest and s.at < newest.at]
        for snapshot in older:
            if newest.at - snapshot.at <= self._window_s:
                return snapshot
        return older[-1] if older else newest

    def rates(self, model: str, versions: Iterable[str] | None = None) -> dict[str, Rates]:
        """Figures per version of `model` over the window (versions with traffic, or those
        named)."""
        newest = self.sample()
        older = self._baseline(newest)
        wanted = (
            set(versions) if versions is not None else {v for (m, v) in newest.totals if m == model}
        )
        seconds = newest.at - older.at
        return {
            version: difference(
                newest.totals.get((model, version), _EMPTY),
                older.totals.get((model, version), _EMPTY),
                seconds,
            )
            for version in sorted(wanted)
        }

    def combined(self, model: str) -> Rates:
        """Figures of all versions of `model` together over the window."""
        newest = self.sample()
        older = self._baseline(newest)
        return difference(newest.model(model), older.model(model), newest.at - older.at)

    def series(self, model: str | None) -> tuple[list[float], list[float | None]]:
        """(epoch seconds, requests per second) between consecutive snapshots, for a chart;
        `model` None: every model together."""
        self.sample()
        times: list[float] = []
        values: list[float | None] = []
        history = list(self._history)
        for before, after in itertools.pairwise(history):
            rates = difference(after.model(model), before.model(model), after.at - before.at)
            times.append(round(after.wall, 3))
            values.append(round(rates.rps, 3) if rates.rps is not None else None)
        return times, values


def _sum(totals: Mapping[Key, Totals], model: str | None) -> Totals:
    requests = errors = 0.0
    buckets = [0.0] * len(BOUNDS)
    for (name, _), value in totals.items():
        if model is not None and name != model:
            continue
        requests += value.requests
        errors += value.errors
        for index, count in enumerate(value.buckets):
            buckets[index] += count
    return Totals(requests, errors, tuple(buckets))
