"""Prometheus metrics of one server process, and the observers that feed them.

Every metric is created by `Metrics` on its own registry (nothing at import time). Observers
resolve their label children once per (model, version) or (method, route, status) and keep
them, and add to pending Python numbers that `Metrics.flush` pushes into prometheus_client in
bulk (see `pending.py`): a request costs a dict lookup and a few additions, not four locked
metric updates. Under `serve --workers N` the values live in per-process files (prometheus_client's
multiprocess mode, see `observability/multiprocess.py`) and `/metrics` sums them.

Label values are bounded by construction: routes are templates, models and versions are the
served ones, methods and error kinds are capped. A client cannot mint new series.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter as Tally
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from modelserve.batcher.observer import ExpiredWhere
from modelserve.observability.pending import PendingCounter, PendingHistogram, PendingSet

if TYPE_CHECKING:
    from modelserve.service.spec import ServiceSpec
    from modelserve.types import RequestRecord

# Seconds. Sub-millisecond buckets matter: small models answer in well under a millisecond.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Seconds; a chunk is hundreds to thousands of rows.
JOB_CHUNK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Caps on distinct label sets an observer creates; past them, values go to an "other" series.
MAX_HTTP_SERIES = 2000
MAX_ERROR_KINDS = 50
OTHER = "other"
UNMATCHED_ROUTE = "unmatched"

MODEL_LABELS = ("model", "version")


class Metrics:
    """Every modelserve metric, on one registry. Build one per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # `_created` series double the exposition for no use on a server's own counters.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        http = ("method", "route", "status")
        self.http_requests = Counter(
            "modelserve_http_requests", "HTTP requests answered.", http, registry=r
        )
        self.http_duration = Histogram(
            "modelserve_http_request_duration_seconds",
            "Time from the request's arrival to its answer.",
            http,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_requests = Counter(
            "modelserve_model_requests",
            "Predict requests answered per model version.",
            (*MODEL_LABELS, "status"),
            registry=r,
        )
        self.model_duration = Histogram(
            "modelserve_model_request_duration_seconds",
            "Predict request latency per model version, arrival to answer.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "modelserve_queue_wait_seconds",
            "Time the oldest item of each batch waited in the queue.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "modelserve_batch_size",
            "Items per batch handed to predict.",
            MODEL_LABELS,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_duration = Histogram(
            "modelserve_inference_duration_seconds",
            "Time predict took per batch.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_items = Counter(
            "modelserve_inference_items", "Items predicted.", MODEL_LABELS, registry=r
        )
        self.inference_errors = Counter(
            "modelserve_inference_errors",
            "Failed batches or items, by error kind.",
            (*MODEL_LABELS, "kind"),
            registry=r,
        )
        self.shed = Counter(
            "modelserve_shed_items",
            "Items refused with 503 because the model's queue was full.",
            MODEL_LABELS,
            registry=r,
        )
        self.isolation_reruns = Counter(
            "modelserve_batch_isolation_reruns",
            "Extra predict calls that re-ran part of a failed batch to isolate the failing items.",
            MODEL_LABELS,
            registry=r,
        )
        self.deadline_exceeded = Counter(
            "modelserve_deadline_exceeded",
            "Items that passed their deadline (504), still queued or while running.",
            (*MODEL_LABELS, "where"),
            registry=r,
        )
        # Live gauges: under several workers, "livesum"/"livemin" drop a dead worker's values.
        self.queue_depth = Gauge(
            "modelserve_queue_depth",
            "Items waiting for a batch.",
            MODEL_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.replicas = Gauge(
            "modelserve_replicas",
            "Loaded replicas.",
            MODEL_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.replicas_busy = Gauge(
            "modelserve_replicas_busy",
            "Replicas running a batch right now.",
            MODEL_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.model_ready = Gauge(
            "modelserve_model_ready",
            "1 when the version is ready in every live worker, else 0.",
            MODEL_LABELS,
            multiprocess_mode="livemin",
            registry=r,
        )
        self.model_failed = Gauge(
            "modelserve_model_failed",
            "1 when the version failed to load in some live worker, else 0.",
            MODEL_LABELS,
            multiprocess_mode="livemax",
            registry=r,
        )
        self.process_rss = Gauge(
            "modelserve_process_resident_memory_bytes",
            "Resident memory of each server process.",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.process_open_fds = Gauge(
            "modelserve_process_open_fds",
            "Open file descriptors of each server process.",
            multiprocess_mode="liveall",
            registry=r,
        )
        self.process_cpu = Counter(
            "modelserve_process_cpu_seconds",
            "CPU time (user + system) of the server processes, including exited ones.",
            registry=r,
        )
        self.predlog_rows = Counter(
            "modelserve_predlog_rows",
            "Prediction-log rows written, or dropped because the write queue was full.",
            ("outcome",),
            registry=r,
        )
        self.build_info = Gauge(
            "modelserve_build_info",
            "Always 1; the modelserve release as a label.",
            ("release",),
            multiprocess_mode="livemax",
            registry=r,
        )
        self.job_rows = Counter(
            "modelserve_job_rows",
            "Job rows finished, by outcome (succeeded: a result; failed: an error row).",
            ("model", "outcome"),
            registry=r,
        )
        self.job_row_failures = Counter(
            "modelserve_job_row_failures",
            "Job rows without a result, by error code.",
            ("model", "code"),
            registry=r,
        )
        self.job_chunk_duration = Histogram(
            "modelserve_job_chunk_duration_seconds",
            "Time to run one job chunk, from its lease to its checkpoint.",
            ("model",),
            buckets=JOB_CHUNK_BUCKETS,
            registry=r,
        )
        self.job_queue_depth = Gauge(
            "modelserve_job_queue_depth",
            "Job chunks waiting to run (in the shared database: every process sees the same).",
            multiprocess_mode="livemax",
            registry=r,
        )
        # Streamed answers (predict_stream): how soon the first chunk, how many, how many open.
        self.stream_first_chunk = Histogram(
            "modelserve_stream_first_chunk_seconds",
            "Time from a streamed request's arrival to its first chunk.",
            MODEL_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stream_chunks = Counter(
            "modelserve_stream_chunks_total",
            "Chunks sent on streamed answers (its rate is chunks/s).",
            MODEL_LABELS,
            registry=r,
        )
        self.streams_open = Gauge(
            "modelserve_streams_open",
            "Streamed answers in flight.",
            MODEL_LABELS,
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cache_lookups = Counter(
            "modelserve_cache_lookups",
            "Requests to cached models, by how they were answered: hit (from the cache), miss"
            " (by the model), shared (by an identical request's model call), bypass (no-cache).",
            ("model", "outcome"),
            registry=r,
        )
        self.cache_evictions = Counter(
            "modelserve_cache_evictions",
            "Answers dropped from the in-process cache: size (over a budget), ttl, purge.",
            ("model", "reason"),
            registry=r,
        )
        self.cache_bytes = Gauge(
            "modelserve_cache_bytes",
            "Bytes of answers held by the in-process cache (summed over workers).",
            ("model",),
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cache_redis_errors = Counter(
            "modelserve_cache_redis_errors",
            "Redis cache operations given up (each a miss, never a client error): timeout,"
            " error, open (circuit breaker), oversize (answer over the per-entry cap).",
            ("kind",),
            registry=r,
        )
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self.pending = PendingSet()
        self.jobs = JobMetrics(self)
        self.cache = CacheMetrics(self)

    def flush(self) -> None:
        """Push the observers' pending counts into the metrics (on the event loop)."""
        self.pending.flush()

    def model(self, name: str, version: str) -> ModelMetrics:
        """The pre-bound metrics of one model version (made once, then shared)."""
        key = (name, version)
        bound = self._models.get(key)
        if bound is None:
            bound = self._models[key] = ModelMetrics(self, name, version)
        return bound

    def engine_observer(self, spec: ServiceSpec) -> ModelMetrics:
        """`ObserverFactory` for `ModelRuntime`: the engine observer of one loaded version."""
        return self.model(spec.name, spec.version)

    def forget_model(self, name: str, version: str) -> None:
        """Drop a retired version's live series (its counters stay: they are history)."""
        self._models.pop((name, version), None)
        live = (
            self.queue_depth,
            self.replicas,
            self.replicas_busy,
            self.model_ready,
            self.model_failed,
        )
        for gauge in live:
            # Under several workers `remove` only forgets the series in this process: its last
            # value stays in the shared multiprocess file and keeps being exported. NaN first,
            # so what stays reads "no value" (a comparison such as `== 0` in an alert is
            # false for it), never a stale 0 for "not ready".
            gauge.labels(name, version).set(math.nan)
            with contextlib.suppress(KeyError):
                gauge.remove(name, version)


class JobMetrics:
    """The job runner's observer (`jobs.processing.JobObserver`) and queue-depth gauge.

    Models are served ones and error codes come from the error table (capped like the engine's
    error kinds), so no label value comes from a client."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._codes: set[tuple[str, str]] = set()

    def _code(self, model: str, code: str) -> str:
        if (model, code) not in self._codes:
            if len(self._codes) >= MAX_ERROR_KINDS:
                return OTHER
            self._codes.add((model, code))
        return code

    def on_chunk(self, model: str, duration_s: float, done: int, failed: Sequence[str]) -> None:
        """A chunk was checkpointed with `done` results and these failed rows' codes."""
        metrics = self._metrics
        metrics.job_chunk_duration.labels(model).observe(duration_s)
        if done:
            metrics.job_rows.labels(model, "succeeded").inc(done)
        if failed:
            metrics.job_rows.labels(model, "failed").inc(len(failed))
            for code, count in Tally(failed).items():
                metrics.job_row_failures.labels(model, self._code(model, code)).inc(count)

    def on_chunk_failed(self, model: str, code: str, rows: int) -> None:
        """A chunk was given up: its `rows` failed with `code`."""
        self._metrics.job_rows.labels(model, "failed").inc(rows)
        self._metrics.job_row_failures.labels(model, self._code(model, code)).inc(rows)

    def set_queue_depth(self, chunks: int) -> None:
        """Chunks waiting to run."""
        self._metrics.job_queue_depth.set(chunks)


class CacheMetrics:
    """The prediction cache's observer (`modelserve.cache.CacheObserver`).

    Models are served ones and outcomes, reasons and kinds are fixed sets: no label value
    comes from a client. Lookups are counted on the hot path: pending counters."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lookups: dict[tuple[str, str], PendingCounter] = {}

    def on_lookup(self, model: str, outcome: str) -> None:
        """A cached model's request was answered this way."""
        key = (model, outcome)
        child = self._lookups.get(key)
        if child is None:
            metrics = self._metrics
            child = self._lookups[key] = metrics.pending.counter(
                metrics.cache_lookups.labels(model, outcome)
            )
        child.inc()

    def on_evicted(self, model: str, reason: str, count: int) -> None:
        """Answers left the in-process cache."""
        self._metrics.cache_evictions.labels(model, reason).inc(count)

    def on_bytes(self, model: str, delta: int) -> None:
        """The in-process cache of the model grew (or shrank)."""
        self._metrics.cache_bytes.labels(model).inc(delta)

    def on_redis_error(self, kind: str) -> None:
        """A Redis operation was given up."""
        self._metrics.cache_redis_errors.labels(kind).inc()


class ModelMetrics:
    """Label children of one model version; the `EngineObserver` the batching engine calls."""

    __slots__ = (
        "_batch_size",
        "_errors",
        "_errors_family",
        "_expired",
        "_inference",
        "_items",
        "_labels",
        "_pending",
        "_queue_wait",
        "_requests",
        "_requests_family",
        "_reruns",
        "_shed",
        "duration",
        "model",
        "version",
    )

    def __init__(self, metrics: Metrics, model: str, version: str) -> None:
        self.model = model
        self.version = version
        labels = (model, version)
        self._labels = labels
        pending = metrics.pending
        self._pending = pending
        self._queue_wait = pending.histogram(metrics.queue_wait.labels(*labels))
        self._batch_size = pending.histogram(metrics.batch_size.labels(*labels))
        self._inference = pending.histogram(metrics.inference_duration.labels(*labels))
        self._items = pending.counter(metrics.inference_items.labels(*labels))
        # Rare events: straight into the metric.
        self._shed = metrics.shed.labels(*labels)
        self._reruns = metrics.isolation_reruns.labels(*labels)
        self._expired = {
            where: metrics.deadline_exceeded.labels(*labels, where)
            for where in ("queue", "running")
        }
        self._errors_family = metrics.inference_errors
        self._errors: dict[str, Any] = {}
        self._requests_family = metrics.model_requests
        self._requests: dict[int, PendingCounter] = {}
        self.duration = pending.histogram(metrics.model_duration.labels(*labels))

    # -- EngineObserver --------------------------------------------------------------------

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        """A batch finished."""
        self._batch_size.observe(size)
        self._queue_wait.observe(queue_wait_s)
        self._inference.observe(run_s)
        self._items.inc(size)

    def on_shed(self, count: int) -> None:
        """Items were refused because the queue was full."""
        self._shed.inc(count)

    def on_expired(self, where: ExpiredWhere) -> None:
        """An item passed its deadline."""
        child = self._expired.get(where)
        if child is not None:
            child.inc()

    def on_error(self, kind: str) -> None:
        """A batch or item failed."""
        child = self._errors.get(kind)
        if child is None:
            if len(self._errors) >= MAX_ERROR_KINDS:
                kind = OTHER
            child = self._errors[kind] = self._errors_family.labels(*self._labels, kind)
        child.inc()

    def on_rerun(self) -> None:
        """Part of a failed batch was run again to isolate its failing items."""
        self._reruns.inc()

    # -- per request -----------------------------------------------------------------------

    def requests(self, status: int) -> PendingCounter:
        """The pending request counter of this version for one status."""
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = self._pending.counter(
                self._requests_family.labels(*self._labels, str(status))
            )
        return child

    def on_response(self, status: int, duration_s: float) -> None:
        """A predict request for this version was answered."""
        self.requests(status).inc()
        self.duration.observe(duration_s)


class _Series:
    """The pending children one kind of answered request adds to."""

    __slots__ = ("http_count", "http_time", "model_count", "model_time")

    def __init__(
        self,
        http_count: PendingCounter,
        http_time: PendingHistogram,
        model_count: PendingCounter | None,
        model_time: PendingHistogram | None,
    ) -> None:
        self.http_count = http_count
        self.http_time = http_time
        self.model_count = model_count
        self.model_time = model_time


class MetricsRequestObserver:
    """The `RequestObserver` that counts and times every answered request."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # (route, status, model, version, method) -> its series: one lookup per request.
        self._series: dict[tuple[str, int, str | None, str | None, str], _Series] = {}
        self._http: dict[tuple[str, str, int], tuple[PendingCounter, PendingHistogram]] = {}

    def on_request(self, record: RequestRecord) -> None:
        """Count one answered request (HTTP series, and the model's when it has one)."""
        key = (record.route, record.status, record.model, record.version, record.method)
        series = self._series.get(key)
        if series is None:
            series = self._bind(key)
        duration = record.duration_s
        series.http_count.value += 1
        series.http_time.observe(duration)
        model_count = series.model_count
        if model_count is not None:
            model_count.value += 1
            series.model_time.observe(duration)  # type: ignore[union-attr]

    # Streams (http/streaming.py): a few calls per stream, straight into the metrics.

    def on_stream_open(self, model: str, version: str) -> None:
        """A streamed answer started (its headers are about to be written)."""
        self._metrics.streams_open.labels(model, version).inc()

    def on_stream_first_chunk(self, model: str, version: str, seconds: float) -> None:
        """A stream's first chunk came, `seconds` after its request arrived."""
        self._metrics.stream_first_chunk.labels(model, version).observe(seconds)

    def on_stream_chunk(self, model: str, version: str) -> None:
        """A stream's chunk came (counted as it comes, so the rate is live)."""
        self._metrics.stream_chunks.labels(model, version).inc()

    def on_stream_close(self, model: str, version: str) -> None:
        """A streamed answer ended."""
        self._metrics.streams_open.labels(model, version).dec()

    def _bind(self, key: tuple[str, int, str | None, str | None, str]) -> _Series:
        route, status, model, version, method = key
        http_count, http_time = self._http_children(method, route, status)
        model_count = model_time = None
        # A version is set only once the name resolved to a served model, so unknown names
        # from clients never become label values.
        if model is not None and version is not None:
            bound = self._metrics.model(model, version)
            model_count, model_time = bound.requests(status), bound.duration
        series = _Series(http_count, http_time, model_count, model_time)
        if len(self._series) < MAX_HTTP_SERIES:
            self._series[key] = series
        return series

    def _http_children(
        self, method: str, route: str, status: int
    ) -> tuple[PendingCounter, PendingHistogram]:
        key = (method, route, status)
        children = self._http.get(key)
        if children is not None:
            return children
        method = method if method in KNOWN_METHODS else OTHER
        route = route or UNMATCHED_ROUTE
        if len(self._http) >= MAX_HTTP_SERIES:
            route = OTHER
        labels = (method, route, str(status))
        pending = self._metrics.pending
        children = (
            pending.counter(self._metrics.http_requests.labels(*labels)),
            pending.histogram(self._metrics.http_duration.labels(*labels)),
        )
        if len(self._http) < MAX_HTTP_SERIES:
            self._http[key] = children
        return children
