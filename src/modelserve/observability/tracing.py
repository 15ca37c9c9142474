"""OpenTelemetry tracing: off unless the standard `OTEL_*` variables configure an exporter.

`configure_tracing()` reads only the standard variables: `OTEL_SDK_DISABLED`,
`OTEL_TRACES_EXPORTER` (`otlp`, `console`, `none`), `OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT` and
the rest of the OTLP exporter's own variables, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_BSP_*`. With none of them set, nothing is created and the
fast path pays one module-attribute check (`tracing.enabled`) per request.

When on, each predict request is one trace (W3C `traceparent` from the client is honoured): a
SERVER span with children for auth, body, validation, queue wait and predict, the predict span
linked to a span for the batch that ran it, which itself links every request in the batch.
FastAPI's native telemetry traces the other routes through the same provider. Every span passes
the redaction step (`RedactingSpanExporter`) before any exporter sees it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.span import format_trace_id

from modelserve.observability.redaction import REDACTED, redactor

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Span as SdkSpan

    from modelserve.types import Principal

logger = logging.getLogger("modelserve.observability")

SCOPE = "modelserve"
DEFAULT_SERVICE_NAME = "modelserve"

enabled: bool = False
"""True while tracing is configured; the fast path checks it before touching anything else."""

# Called once per finished batch with the RequestTrace (or None) of each item and the run time.
BatchTracer = Callable[[Sequence[object], float], None]

_provider: TracerProvider | None = None
_tracer: trace.Tracer | None = None
_current_trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "modelserve_trace_id", default=None
)


class _Pipeline(SpanProcessor):
    """The provider's one processor; reconfiguring swaps what it delegates to.

    OpenTelemetry lets a process set its global provider once, so the provider stays and only
    the export pipeline behind it changes (tests install an in-memory exporter this way).
    """

    def __init__(self) -> None:
        self.inner: SpanProcessor | None = None

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        inner = self.inner
        if inner is not None:
            inner.on_end(span)

    def shutdown(self) -> None:
        inner, self.inner = self.inner, None
        if inner is not None:
            inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        inner = self.inner
        return True if inner is None else inner.force_flush(timeout_millis)


_pipeline = _Pipeline()


def _scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    scrubbed: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if redactor.is_sensitive_key(key):
            scrubbed[key] = REDACTED
        elif isinstance(value, str):
            scrubbed[key] = redactor.text(value)
        elif isinstance(value, tuple | list) and any(isinstance(v, str) for v in value):
            scrubbed[key] = tuple(redactor.text(v) if isinstance(v, str) else v for v in value)
        else:
            scrubbed[key] = value
    return scrubbed


def redact_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span with names, attributes, events and links scrubbed."""
    status = span.status
    if status.description:
        status = Status(status.status_code, redactor.text(status.description))
    return ReadableSpan(
        name=redactor.text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_scrub_attributes(span.attributes),
        events=[Event(e.name, _scrub_attributes(e.attributes), e.timestamp) for e in span.events],
        links=[Link(link.context, _scrub_attributes(link.attributes)) for link in span.links],
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class RedactingSpanExporter(SpanExporter):
    """Passes scrubbed copies of spans to the real exporter (S8, S14)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([redact_span(s) for s in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def exporters_from_env(environ: Mapping[str, str] | None = None) -> list[SpanExporter]:
    """The span exporters the standard OTEL_* variables ask for (empty: tracing off)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [n for n in names if n]
    if not names:
        # The SDK's default exporter is OTLP, but only an explicit endpoint turns it on here:
        # a server must not start sending spans to localhost:4318 because nobody said not to.
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        names = ["otlp"] if endpoint else []
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "none":
            return []
        if name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
            )
            if protocol and protocol != "http/protobuf":
                logger.warning("OTLP protocol %r is not installed; using http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        else:
            logger.warning("OTEL_TRACES_EXPORTER %r is not supported; ignored", name)
    return exporters


def configure_tracing(
    *,
    exporters: Iterable[SpanExporter] | None = None,
    simple: bool = False,
    environ: Mapping[str, str] | None = None,
) -> bool:
    """Turn tracing on when configured; return whether it is on.

    `exporters` replaces what the environment asks for (tests pass an InMemorySpanExporter);
    `simple` exports each span as it ends instead of in batches.
    """
    global enabled, _provider, _tracer
    chosen = list(exporters) if exporters is not None else exporters_from_env(environ)
    _pipeline.shutdown()
    if not chosen:
        enabled = False
        return False
    if _provider is None:
        env = os.environ if environ is None else environ
        name = env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
        _provider = TracerProvider(resource=Resource.create({"service.name": name}))
        _provider.add_span_processor(_pipeline)
        trace.set_tracer_provider(_provider)
        _tracer = _provider.get_tracer(SCOPE)
    processors: list[SpanProcessor] = [
        (SimpleSpanProcessor if simple else BatchSpanProcessor)(RedactingSpanExporter(e))
        for e in chosen
    ]
    _pipeline.inner = processors[0] if len(processors) == 1 else _Fanout(processors)
    enabled = True
    return True


def shutdown_tracing() -> None:
    """Flush and stop exporting (the provider stays installed, recording nothing)."""
    global enabled
    enabled = False
    _pipeline.force_flush()
    _pipeline.shutdown()


class _Fanout(SpanProcessor):
    def __init__(self, processors: Sequence[SpanProcessor]) -> None:
        self._processors = processors

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        for p in self._processors:
            p.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        for p in self._processors:
            p.on_end(span)

    def shutdown(self) -> None:
        for p in self._processors:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


def current_trace_id() -> str | None:
    """The trace id (32 hex digits) of the request being handled, for logs and error bodies."""
    if not enabled:
        return None
    trace_id = _current_trace_id.get()
    if trace_id is not None:
        return trace_id
    context = trace.get_current_span().get_span_context()
    return format_trace_id(context.trace_id) if context.is_valid else None


class _HeaderGetter(Getter[Sequence[tuple[bytes, bytes]]]):
    """Reads W3C trace headers from raw ASGI header pairs."""

    def get(self, carrier: Sequence[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in carrier if k == wanted]
        return found or None

    def keys(self, carrier: Sequence[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_GETTER = _HeaderGetter()


# Phases the fast path marks, in order. The engine phase (queued, then in a batch) is split
# into `queue_wait` and `predict` spans at the batch's start, and `predict` links to the batch.
PHASE_AUTH = "auth"
PHASE_READ_BODY = "read_body"
PHASE_VALIDATION = "validation"
PHASE_ENGINE = "engine"


class RequestTrace:
    """The trace of one predict request; exists only while tracing is enabled.

    The fast path calls `mark(phase)` as each phase ends (spans are made afterwards from the
    marks, so a phase costs one clock read) and `finish(...)` once the answer is sent.
    """

    __slots__ = ("_batch", "_ctx", "_last", "_phases", "_token", "context", "span", "trace_id")

    def __init__(self, tracer: trace.Tracer, method: str, route: str, headers: Any) -> None:
        parent = propagate.extract(headers, getter=_GETTER)
        self.span = tracer.start_span(
            f"{method} {route}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "http.route": route},
        )
        self.context: SpanContext = self.span.get_span_context()
        self.trace_id = format_trace_id(self.context.trace_id)
        self._ctx = trace.set_span_in_context(self.span, parent)
        self._token = _current_trace_id.set(self.trace_id)
        self._last = time_ns()
        self._phases: list[tuple[str, int, int]] = []
        self._batch: tuple[SpanContext, int, int] | None = None

    def mark(self, phase: str) -> None:
        """The phase `phase` ended now (it began at the previous mark or at the start)."""
        now = time_ns()
        self._phases.append((phase, self._last, now))
        self._last = now

    def set_batch(self, batch: SpanContext, started_ns: int, ended_ns: int) -> None:
        """The batch that ran this request (set by `record_batch`)."""
        self._batch = (batch, started_ns, ended_ns)

    def finish(
        self,
        status: int,
        *,
        request_id: str | None = None,
        model: str | None = None,
        version: str | None = None,
        principal: Principal | None = None,
        error_code: str | None = None,
        route: tuple[str, str] | None = None,
    ) -> None:
        """End the request's span and emit its phase spans.

        `route` is (method, route template) when the route was only known after the span began.
        """
        tracer = _tracer
        try:
            if tracer is not None and self.span.is_recording():
                self._emit_phases(tracer)
            span = self.span
            if route is not None:
                span.update_name(f"{route[0]} {route[1]}")
                span.set_attribute("http.route", route[1])
            span.set_attribute("http.response.status_code", status)
            if request_id is not None:
                span.set_attribute("modelserve.request_id", request_id)
            if model is not None:
                span.set_attribute("modelserve.model", model)
            if version is not None:
                span.set_attribute("modelserve.version", version)
            if principal is not None:
                # The credential's id (key or user id), never the credential itself.
                span.set_attribute("modelserve.principal", principal.subject)
            if error_code is not None:
                span.set_attribute("error.type", error_code)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
            span.end()
        finally:
            # Finished from another context: nothing to restore there.
            with contextlib.suppress(ValueError):
                _current_trace_id.reset(self._token)

    def _emit_phases(self, tracer: trace.Tracer) -> None:
        for name, start, end in self._phases:
            if name == PHASE_ENGINE and self._batch is not None:
                batch, batch_start, batch_end = self._batch
                split = min(max(start, batch_start), end)
                tracer.start_span("queue_wait", context=self._ctx, start_time=start).end(split)
                predict = tracer.start_span(
                    "predict", context=self._ctx, start_time=split, links=[Link(batch)]
                )
                predict.end(max(split, min(end, batch_end)))
            else:
                tracer.start_span(name, context=self._ctx, start_time=start).end(end)


def start_request(method: str, route: str, headers: Any) -> RequestTrace | None:
    """Begin a request's trace (None when tracing is off). `headers` are ASGI header pairs."""
    tracer = _tracer
    if not enabled or tracer is None:
        return None
    return RequestTrace(tracer, method, route, headers)


def batch_tracer(model: str, version: str) -> BatchTracer:
    """`record_batch` bound to one model version, for the batching engine to call per batch."""

    def trace_batch(traces: Sequence[object], run_s: float) -> None:
        if enabled:
            record_batch(traces, model=model, version=version, run_s=run_s)

    return trace_batch


def record_batch(
    traces: Sequence[object], *, model: str, version: str, run_s: float
) -> SpanContext | None:
    """One span for a batch that just finished, linked to every traced request in it.

    Call once per batch, when it finishes, with the RequestTrace (or None) of each item; each
    request's predict span will link back to the batch span.
    """
    tracer = _tracer
    members = [t for t in traces if isinstance(t, RequestTrace)]
    if not enabled or tracer is None or not members:
        return None
    ended = time_ns()
    started = ended - int(run_s * 1e9)
    span = tracer.start_span(
        f"batch {model}",
        context=Context(),  # a root of its own: it belongs to no single request
        kind=SpanKind.INTERNAL,
        start_time=started,
        links=[Link(t.context) for t in members],
        attributes={
            "modelserve.model": model,
            "modelserve.version": version,
            "modelserve.batch_size": len(traces),
        },
    )
    span.end(ended)
    context = span.get_span_context()
    for member in members:
        member.set_batch(context, started, ended)
    return context
