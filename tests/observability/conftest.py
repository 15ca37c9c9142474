"""Fixtures of the observability tests: an in-memory span exporter, captured logs."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve.observability import tracing
from modelserve.observability.logging import configure_logging


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, exporting (through the redaction step) to memory, for one test."""
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(exporters=[exporter], simple=True)
    try:
        yield exporter
    finally:
        tracing.shutdown_tracing()


class CapturedLogs:
    """Everything the process logged, as the bytes a log shipper would read."""

    def __init__(self) -> None:
        self.stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)

    def text(self) -> str:
        from modelserve.observability.access_log import flush_all

        flush_all()
        self.stream.flush()
        buffer = self.stream.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode("utf-8")


@pytest.fixture
def json_logs() -> Iterator[CapturedLogs]:
    """JSON logging into memory for one test; the previous configuration comes back after."""
    captured = CapturedLogs()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, structlog.get_config())
    configure_logging(fmt="json", level="info", stream=captured.stream)
    try:
        yield captured
    finally:
        handlers, level, config = saved
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        structlog.configure(**config)
