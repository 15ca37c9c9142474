"""Tracing: off unless configured, one trace per request, batch spans linked both ways."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from modelserve.observability import tracing
from modelserve.observability.redaction import REDACTED
from modelserve.types import Principal

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()
ROUTE = "/v1/models/{name}/predict"
PRINCIPAL = Principal(
    kind="api_key",
    subject="key-7",
    owner_id="u1",
    role="member",
    scopes=frozenset({"predict:*"}),
    rate_key="key-7",
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, [OTLPSpanExporter]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, [OTLPSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "console"}, [ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, [OTLPSpanExporter, ConsoleSpanExporter]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}, []),
    ],
)
def test_exporters_come_only_from_the_standard_variables(
    env: dict[str, str], expected: list[type]
) -> None:
    assert [type(e) for e in tracing.exporters_from_env(env)] == expected


def test_unsupported_exporters_are_named_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "modelserve.observability"):
        assert tracing.exporters_from_env({"OTEL_TRACES_EXPORTER": "zipkin"}) == []
    assert "zipkin" in caplog.text


def test_off_costs_nothing_and_records_nothing() -> None:
    assert tracing.configure_tracing(environ={}) is False
    assert tracing.enabled is False
    assert tracing.start_request("POST", ROUTE, []) is None
    assert tracing.current_trace_id() is None
    assert tracing.record_batch([None], model="m", version="1", run_s=0.1) is None


def by_name(spans: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in spans.get_finished_spans()}


def test_one_trace_per_request_with_a_span_per_phase(spans: InMemorySpanExporter) -> None:
    first = tracing.start_request("POST", ROUTE, [(b"traceparent", TRACEPARENT)])
    second = tracing.start_request("POST", ROUTE, [])
    assert first is not None and second is not None
    assert first.trace_id == TRACE_ID  # the client's trace continues
    assert tracing.current_trace_id() == second.trace_id
    for request in (first, second):
        request.mark("auth")
        request.mark("read_body")
        request.mark("validation")
    batch = tracing.record_batch([first, None, second], model="iris", version="2", run_s=0.002)
    assert batch is not None
    for request in (first, second):
        request.mark("engine")
    second.finish(503, model="iris", version="2", error_code="overloaded")
    first.finish(200, request_id="r-1", model="iris", version="2", principal=PRINCIPAL)

    finished = spans.get_finished_spans()
    mine = [s for s in finished if s.context.trace_id == int(TRACE_ID, 16)]
    names = sorted(s.name for s in mine)
    assert names == sorted(
        ["POST " + ROUTE, "auth", "read_body", "validation", "queue_wait", "predict"]
    )
    server = next(s for s in mine if s.kind is SpanKind.SERVER)
    assert server.parent is not None and server.parent.span_id == 0x00F067AA0BA902B7
    children = [s for s in mine if s is not server]
    assert all(
        s.parent is not None and s.parent.span_id == server.context.span_id for s in children
    )
    assert server.attributes is not None
    assert server.attributes["modelserve.principal"] == "key-7"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["modelserve.request_id"] == "r-1"

    batch_span = next(s for s in finished if s.name == "batch iris")
    assert batch_span.parent is None  # a trace of its own
    linked = {link.context.trace_id for link in batch_span.links}
    assert linked == {first.context.trace_id, second.context.trace_id}
    assert batch_span.attributes is not None and batch_span.attributes["modelserve.batch_size"] == 3
    predict = next(s for s in mine if s.name == "predict")
    assert [link.context.span_id for link in predict.links] == [batch.span_id]

    failed = next(
        s for s in finished if s.kind is SpanKind.SERVER and s.context.trace_id != int(TRACE_ID, 16)
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["error.type"] == "overloaded"


def test_without_batch_information_the_engine_is_one_span(spans: InMemorySpanExporter) -> None:
    request = tracing.start_request("POST", ROUTE, [])
    assert request is not None
    request.mark("engine")
    request.finish(200)
    assert {"engine", "POST " + ROUTE} <= set(by_name(spans))


def test_spans_pass_the_redaction_step(spans: InMemorySpanExporter) -> None:
    provider_tracer = tracing._tracer
    assert provider_tracer is not None
    secret = "ms_0123456789ab_" + "s" * 43
    with provider_tracer.start_as_current_span(
        "GET /v1/models",
        attributes={
            "url.query": f"api_key={secret}&page=2",
            "http.request.header.authorization": ("Bearer abc.def.ghi",),
        },
    ) as span:
        span.add_event("note", {"detail": f"key {secret} refused"})
    exported = by_name(spans)["GET /v1/models"]
    assert exported.attributes is not None
    assert exported.attributes["url.query"] == f"api_key={REDACTED}&page=2"
    assert exported.attributes["http.request.header.authorization"] == REDACTED
    assert secret not in str(exported.events[0].attributes)


def test_a_bound_batch_tracer_for_the_engine(spans: InMemorySpanExporter) -> None:
    trace_batch = tracing.batch_tracer("iris", "2")
    request = tracing.start_request("POST", ROUTE, [])
    assert request is not None
    trace_batch([request], 0.001)
    request.mark("engine")
    request.finish(200)
    assert {"batch iris", "queue_wait", "predict"} <= set(by_name(spans))
