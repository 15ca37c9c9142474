"""Trace ids reach the access log and error bodies of the real app (create_app), end to end."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from modelserve import Settings
from tests.observability.conftest import CapturedLogs
from tests.observability.services import Scorer
from tests.support.client import serving


def access_lines(logs: CapturedLogs) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in logs.text().splitlines() if line.strip()]
    return [p for p in parsed if p.get("logger") == "modelserve.access"]


def server_spans(spans: InMemorySpanExporter) -> dict[str, Any]:
    """Server spans by request id."""
    return {
        s.attributes["modelserve.request_id"]: s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.SERVER and s.attributes and "modelserve.request_id" in s.attributes
    }


def test_predict_and_route_requests_carry_their_trace_id(
    json_logs: CapturedLogs, spans: InMemorySpanExporter
) -> None:
    with serving([Scorer], Settings(mode="prod")) as client:
        ok = client.post("/v1/models/scorer/predict", json={"x": [1.0, 2.0]})
        bad = client.post("/v1/models/scorer/predict", json={"x": "nope"})
        missing = client.get("/v1/models/nope")
    assert ok.status_code == 200, ok.text
    assert bad.status_code == 422 and missing.status_code == 404

    by_request_id = server_spans(spans)
    predict_span = by_request_id[ok.headers["x-request-id"]]
    route_span = by_request_id[missing.headers["x-request-id"]]
    assert predict_span.name == "POST /v1/models/{name}/predict"
    assert route_span.name == "GET /v1/models/{name}"
    route_trace = format(route_span.context.trace_id, "032x")
    assert route_span.attributes is not None
    assert route_span.attributes["http.route"] == "/v1/models/{name}"

    # Error bodies name the trace, on the fast path and on FastAPI routes alike.
    assert len(bad.json()["error"]["trace_id"]) == 32
    assert missing.json()["error"]["trace_id"] == route_trace

    lines = access_lines(json_logs)
    by_request = {line["request_id"]: line for line in lines}
    ok_line = by_request[ok.headers["x-request-id"]]
    assert ok_line["trace_id"] == format(predict_span.context.trace_id, "032x")
    assert by_request[bad.headers["x-request-id"]]["trace_id"] == bad.json()["error"]["trace_id"]
    assert by_request[missing.headers["x-request-id"]]["trace_id"] == route_trace


def test_no_trace_id_without_tracing(json_logs: CapturedLogs) -> None:
    with serving([Scorer], Settings(mode="prod")) as client:
        bad = client.post("/v1/models/scorer/predict", json={"x": "nope"})
    assert "trace_id" not in bad.json()["error"]
    assert all("trace_id" not in line for line in access_lines(json_logs))


def test_a_served_predict_request_has_phase_spans_linked_to_its_batch(
    spans: InMemorySpanExporter,
) -> None:
    with serving([Scorer], Settings(mode="prod")) as client:
        ok = client.post("/v1/models/scorer/predict", json={"x": [1.0, 2.0]})
    assert ok.status_code == 200
    server = server_spans(spans)[ok.headers["x-request-id"]]
    children = [
        s
        for s in spans.get_finished_spans()
        if s.parent is not None and s.parent.span_id == server.context.span_id
    ]
    names = [s.name for s in sorted(children, key=lambda s: s.start_time or 0)]
    assert names == ["read_body", "validation", "queue_wait", "predict"]
    (batch,) = [s for s in spans.get_finished_spans() if s.name == "batch scorer"]
    predict = next(s for s in children if s.name == "predict")
    assert [link.context.span_id for link in predict.links] == [batch.context.span_id]
    assert [link.context.trace_id for link in batch.links] == [server.context.trace_id]
