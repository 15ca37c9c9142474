"""Observability: Prometheus metrics, OpenTelemetry traces, structured logs, Sentry, and the
sampled prediction log with its analytics. An engine: no FastAPI in here.
See docs/observability.md.

The app wires it through `Observability` (per app) and `configure_process` (per process);
the predict fast path uses `tracing` and `Observability.predlog` directly.
"""

from modelserve.observability.metrics import Metrics, MetricsRequestObserver, ModelMetrics
from modelserve.observability.stack import (
    Observability,
    configure_process,
    serve_metrics_port,
    shutdown_process,
)

__all__ = [
    "Metrics",
    "MetricsRequestObserver",
    "ModelMetrics",
    "Observability",
    "configure_process",
    "serve_metrics_port",
    "shutdown_process",
]
