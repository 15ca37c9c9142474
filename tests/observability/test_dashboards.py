"""The Grafana dashboard and the alert rules only use metrics that really exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client import generate_latest

from modelserve.config import ObservabilityConfig
from modelserve.observability.metrics import JobMetrics, Metrics, MetricsRequestObserver
from modelserve.observability.predlog import PredictionLog
from modelserve.observability.sampler import LiveSampler
from modelserve.types import RequestRecord, ServiceStatus

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
METRIC = re.compile(r"\b(modelserve_[a-z0-9_]+)")
# Series Prometheus itself adds; not ours to expose.
PROMETHEUS_OWN = {"up"}


def exposition() -> set[str]:
    """Every sample name a server exposes once each kind of event happened."""
    metrics = Metrics()
    metrics.build_info.labels("1.0").set(1)
    MetricsRequestObserver(metrics).on_request(
        RequestRecord("POST", "/p", 503, 0.1, "r", None, "m", "1", "overloaded")
    )
    engine = metrics.engine_observer(SimpleNamespace(name="m", version="1"))  # type: ignore[arg-type]
    engine.on_batch(2, 0.01, 0.02)
    engine.on_shed(1)
    engine.on_expired("queue")
    engine.on_error("PredictionError")
    log = PredictionLog(
        ObservabilityConfig(predlog_sample_rate=1.0, predlog_queue=1), metrics=metrics
    )
    for _ in range(2):
        log.offer(
            model="m",
            version="1",
            request_id="r",
            principal=None,
            status=200,
            latency_s=0.1,
            body=b"{}",
            output=b"{}",
        )
    runtime = [
        SimpleNamespace(
            spec=SimpleNamespace(name="m", version="1"),
            status=ServiceStatus.READY,
            engine=SimpleNamespace(queue_depth=0),
            replicas=[],
        )
    ]
    LiveSampler(metrics, runtime).refresh()  # type: ignore[arg-type]
    jobs = JobMetrics(metrics)
    jobs.on_chunk("m", 0.5, 9, ["invalid_input"])
    jobs.on_chunk_failed("m", "prediction_failed", 3)
    jobs.set_queue_depth(2)
    text = generate_latest(metrics.registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}


def dashboard_expressions() -> list[str]:
    data = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    found = [t["expr"] for p in data["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in data["templating"]["list"] if "definition" in v]
    return found


def alert_expressions() -> list[str]:
    data = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    return [rule["expr"] for group in data["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_used_exists(source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else alert_expressions()
    assert expressions
    exposed = exposition()
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used, "no modelserve metric referenced"
    missing = sorted(used - exposed)
    assert missing == [], f"{source} uses metrics the server does not expose: {missing}"


def test_every_exposed_family_appears_on_the_dashboard() -> None:
    used = {name for expr in dashboard_expressions() for name in METRIC.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exposition()}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert families - shown == set()


def test_alert_rules_are_complete() -> None:
    data = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    for rule in data["groups"][0]["rules"]:
        assert rule["alert"].startswith("Modelserve")
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        others = set(re.findall(r"\b([a-z_][a-z0-9_]*)\{", rule["expr"])) - PROMETHEUS_OWN
        assert all(name.startswith("modelserve_") for name in others), others
