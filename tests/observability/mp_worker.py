"""A stand-in server worker for the multiprocess metrics tests (run in a spawned process)."""

from __future__ import annotations

from multiprocessing.connection import Connection
from types import SimpleNamespace

from modelserve.types import RequestRecord, ServiceStatus


def serve(requests: int, depth: int, conn: Connection) -> None:
    """Count `requests` answered requests, report a queue depth, then wait to be told to exit."""
    from modelserve.observability import multiprocess
    from modelserve.observability.metrics import Metrics, MetricsRequestObserver
    from modelserve.observability.sampler import LiveSampler

    assert multiprocess.active(), "the worker must start in multiprocess mode"
    metrics = Metrics()
    observer = MetricsRequestObserver(metrics)
    for _ in range(requests):
        observer.on_request(
            RequestRecord(
                method="POST",
                route="/v1/models/{name}/predict",
                status=200,
                duration_s=0.001,
                request_id="r",
                model="iris",
                version="1",
            )
        )
    runtime = [
        SimpleNamespace(
            spec=SimpleNamespace(name="iris", version="1"),
            status=ServiceStatus.READY,
            engine=SimpleNamespace(queue_depth=depth),
            replicas=[],
        )
    ]
    LiveSampler(metrics, runtime).refresh()  # type: ignore[arg-type]
    conn.send("ready")
    if conn.recv() == "exit":
        multiprocess.mark_exited()
