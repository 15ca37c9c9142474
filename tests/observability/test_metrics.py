"""Metrics: what the observers count, bounded labels, pending counts and live gauges."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram

from modelserve.observability import metrics as metrics_module
from modelserve.observability.metrics import LATENCY_BUCKETS, Metrics, MetricsRequestObserver
from modelserve.observability.pending import PendingHistogram
from modelserve.observability.sampler import LiveSampler
from modelserve.types import Principal, RequestRecord, ServiceStatus

PREDICT = "/v1/models/{name}/predict"


def record(**overrides: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "method": "POST",
        "route": PREDICT,
        "status": 200,
        "duration_s": 0.003,
        "request_id": "r1",
        "model": "iris",
        "version": "2",
    }
    fields.update(overrides)
    return RequestRecord(**fields)


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    metrics.flush()
    return metrics.registry.get_sample_value(name, labels)


def test_requests_are_counted_by_route_template_status_and_model() -> None:
    m = Metrics()
    observer = MetricsRequestObserver(m)
    for _ in range(3):
        observer.on_request(record())
    observer.on_request(record(status=503, duration_s=0.2))
    observer.on_request(record(method="GET", route="/v1/models", model=None, version=None))

    http = "modelserve_http_requests_total"
    assert value(m, http, method="POST", route=PREDICT, status="200") == 3
    assert value(m, http, method="POST", route=PREDICT, status="503") == 1
    assert value(m, http, method="GET", route="/v1/models", status="200") == 1
    model = "modelserve_model_requests_total"
    assert value(m, model, model="iris", version="2", status="200") == 3
    assert value(m, model, model="iris", version="2", status="503") == 1
    duration = "modelserve_model_request_duration_seconds"
    assert value(m, duration + "_count", model="iris", version="2") == 4
    assert value(m, duration + "_sum", model="iris", version="2") == pytest.approx(0.209)
    assert value(m, duration + "_bucket", model="iris", version="2", le="0.005") == 3


def test_clients_cannot_mint_label_values() -> None:
    m = Metrics()
    observer = MetricsRequestObserver(m)
    # An unknown model name never gets a version from the fast path: no model series.
    observer.on_request(record(status=404, model=None, version=None))
    observer.on_request(record(method="PROPFIND", route=""))
    assert (
        value(m, "modelserve_model_requests_total", model="iris", version="2", status="404") is None
    )
    http = "modelserve_http_requests_total"
    assert value(m, http, method="other", route="unmatched", status="200") == 1


def test_http_series_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_HTTP_SERIES", 2)
    m = Metrics()
    observer = MetricsRequestObserver(m)
    for index in range(5):
        observer.on_request(record(route=f"/r{index}", model=None, version=None))
    m.flush()
    samples = [
        s for s in next(iter(m.http_requests.collect())).samples if s.name.endswith("_total")
    ]
    assert {s.labels["route"] for s in samples} == {"/r0", "/r1", "other"}
    assert sum(s.value for s in samples) == 5


def test_engine_events_per_model_version() -> None:
    m = Metrics()
    engine = m.engine_observer(SimpleNamespace(name="iris", version="2"))  # type: ignore[arg-type]
    engine.on_batch(8, 0.004, 0.02)
    engine.on_batch(2, 0.0001, 0.01)
    engine.on_shed(5)
    engine.on_expired("queue")
    engine.on_expired("running")
    engine.on_error("PredictionError")
    labels = {"model": "iris", "version": "2"}
    assert value(m, "modelserve_inference_items_total", **labels) == 10
    assert value(m, "modelserve_batch_size_count", **labels) == 2
    assert value(m, "modelserve_batch_size_bucket", **labels, le="2.0") == 1
    assert value(m, "modelserve_inference_duration_seconds_sum", **labels) == pytest.approx(0.03)
    assert value(m, "modelserve_queue_wait_seconds_bucket", **labels, le="0.0005") == 1
    assert value(m, "modelserve_shed_items_total", **labels) == 5
    assert value(m, "modelserve_deadline_exceeded_total", **labels, where="queue") == 1
    assert value(m, "modelserve_deadline_exceeded_total", **labels, where="running") == 1
    assert value(m, "modelserve_inference_errors_total", **labels, kind="PredictionError") == 1
    # The same version shares one set of children.
    assert m.engine_observer(SimpleNamespace(name="iris", version="2")) is engine  # type: ignore[arg-type]


def test_pending_histogram_matches_observe() -> None:
    registry = CollectorRegistry()
    direct = Histogram("direct", "d", buckets=LATENCY_BUCKETS, registry=registry)
    bulk = Histogram("bulk", "b", buckets=LATENCY_BUCKETS, registry=registry)
    pending = PendingHistogram(bulk)
    rng = random.Random(7)
    amounts = [rng.choice([0.0, 0.001, 30.0, 31.0]) for _ in range(50)]
    amounts += [rng.expovariate(20) for _ in range(500)]
    for amount in amounts:
        direct.observe(amount)
        pending.observe(amount)
    pending.flush()
    pending.flush()  # a second flush with nothing pending changes nothing

    def samples(name: str) -> dict[str, float]:
        family = next(f for f in registry.collect() if f.name == name)
        return {s.name.removeprefix(name) + str(s.labels): s.value for s in family.samples}

    direct_samples, bulk_samples = samples("direct"), samples("bulk")
    assert direct_samples.keys() == bulk_samples.keys()
    for key, expected in direct_samples.items():
        assert bulk_samples[key] == pytest.approx(expected), key


def test_pending_counts_reach_the_registry_only_when_flushed() -> None:
    m = Metrics()
    MetricsRequestObserver(m).on_request(record())
    http = "modelserve_http_requests_total"
    labels = {"method": "POST", "route": PREDICT, "status": "200"}
    assert m.registry.get_sample_value(http, labels) == 0
    m.flush()
    assert m.registry.get_sample_value(http, labels) == 1


class FakeReplica:
    def __init__(self, busy: bool) -> None:
        self.busy = busy


def deployed(name: str, version: str, status: ServiceStatus, depth: int, busy: int) -> Any:
    engine = SimpleNamespace(queue_depth=depth) if status is ServiceStatus.READY else None
    return SimpleNamespace(
        spec=SimpleNamespace(name=name, version=version),
        status=status,
        engine=engine,
        replicas=[FakeReplica(i < busy) for i in range(2)],
    )


def test_live_gauges_follow_the_runtime_and_forget_retired_versions() -> None:
    m = Metrics()
    runtime = [
        deployed("iris", "1", ServiceStatus.READY, depth=7, busy=1),
        deployed("iris", "2", ServiceStatus.FAILED, depth=0, busy=0),
    ]
    sampler = LiveSampler(m, runtime)  # type: ignore[arg-type]
    sampler.sample()
    one, two = {"model": "iris", "version": "1"}, {"model": "iris", "version": "2"}
    assert value(m, "modelserve_queue_depth", **one) == 7
    assert value(m, "modelserve_replicas", **one) == 2
    assert value(m, "modelserve_replicas_busy", **one) == 1
    assert value(m, "modelserve_model_ready", **one) == 1
    assert value(m, "modelserve_model_ready", **two) == 0
    assert value(m, "modelserve_model_failed", **two) == 1
    assert value(m, "modelserve_replicas", **two) == 0

    runtime.pop()  # version 2 retired
    sampler.sample()
    assert value(m, "modelserve_model_failed", **two) is None
    assert value(m, "modelserve_queue_depth", **one) == 7


def test_process_gauges_are_sampled() -> None:
    m = Metrics()
    LiveSampler(m).sample()
    rss = value(m, "modelserve_process_resident_memory_bytes")
    fds = value(m, "modelserve_process_open_fds")
    assert rss is not None and rss > 10 * 1024 * 1024
    assert fds is not None and fds >= 3
    assert (value(m, "modelserve_process_cpu_seconds_total") or 0) > 0


def test_names_follow_prometheus_conventions() -> None:
    m = Metrics()
    for family in m.registry.collect():
        assert family.name.startswith("modelserve_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples)
        if "duration" in family.name or "wait" in family.name:
            assert family.name.endswith("_seconds"), family.name
        assert family.documentation, family.name


def test_a_principal_never_becomes_a_label() -> None:
    m = Metrics()
    principal = Principal(
        kind="api_key",
        subject="key-1",
        owner_id="u1",
        role="member",
        scopes=frozenset({"predict:*"}),
        rate_key="key-1",
    )
    MetricsRequestObserver(m).on_request(record(principal=principal))
    m.flush()
    from prometheus_client import generate_latest

    assert b"key-1" not in generate_latest(m.registry)
