"""Structured logs: one pipeline for structlog and stdlib records, redacted; the access log."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve.config import ObservabilityConfig
from modelserve.observability import access_log, tracing
from modelserve.observability.access_log import AccessLogObserver
from modelserve.observability.logging import (
    configure_logging,
    resolve_format,
    uvicorn_log_config,
)
from modelserve.types import Principal, RequestRecord
from tests.observability.conftest import CapturedLogs

SECRET_KEY = "ms_0123456789ab_" + "k" * 43
PRINCIPAL = Principal(
    kind="api_key",
    subject="key-42",
    owner_id="u1",
    role="member",
    scopes=frozenset({"predict:*"}),
    rate_key="key-42",
)


def lines(logs: CapturedLogs) -> list[dict[str, Any]]:
    return [json.loads(line) for line in logs.text().splitlines() if line.strip()]


def request(**overrides: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "method": "POST",
        "route": "/v1/models/{name}/predict",
        "status": 200,
        "duration_s": 0.0123456,
        "request_id": "req-1",
        "principal": PRINCIPAL,
        "model": "iris",
        "version": "3",
    }
    fields.update(overrides)
    return RequestRecord(**fields)


@pytest.mark.parametrize(
    ("fmt", "mode", "expected"),
    [("auto", "prod", "json"), ("auto", "dev", "console"), ("json", "dev", "json")],
)
def test_auto_format_is_json_in_production(fmt: str, mode: str, expected: str) -> None:
    assert resolve_format(ObservabilityConfig(log_format=fmt), mode) == expected  # type: ignore[arg-type]


def test_structlog_and_stdlib_records_share_one_redacted_json_pipeline(
    json_logs: CapturedLogs,
) -> None:
    structlog.get_logger("modelserve.auth").warning(
        "login failed", username="bob", password="hunter2-hunter2"
    )
    logging.getLogger("uvicorn.error").info("client sent Authorization: Bearer %s", SECRET_KEY)
    try:
        raise ConnectionError("postgresql://app:db-pass-123@db/modelserve refused")
    except ConnectionError:
        logging.getLogger("sqlalchemy.pool").exception("connection failed")

    login, uvicorn_line, sql = lines(json_logs)
    assert login["event"] == "login failed" and login["password"] == "[REDACTED]"
    assert login["level"] == "warning" and login["timestamp"].endswith("Z")
    assert uvicorn_line["logger"] == "uvicorn.error" and uvicorn_line["level"] == "info"
    assert sql["logger"] == "sqlalchemy.pool" and "Traceback" in sql["exception"]
    text = json_logs.text()
    for secret in ("hunter2-hunter2", SECRET_KEY, "db-pass-123"):
        assert secret not in text


def test_uvicorns_own_access_log_stays_off_unless_asked_for() -> None:
    captured = CapturedLogs()
    configure_logging(fmt="json", stream=captured.stream)
    assert not logging.getLogger("uvicorn.access").hasHandlers()  # uvicorn checks exactly this
    configure_logging(fmt="json", stream=captured.stream, uvicorn_access=True)
    access = logging.getLogger("uvicorn.access")
    assert access.hasHandlers()
    access.info(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.1:5", "GET", f"/x?api_key={SECRET_KEY}", "1.1", 200
    )
    assert SECRET_KEY not in captured.text()
    assert "api_key=[REDACTED]" in captured.text()
    configure_logging(fmt="json", stream=captured.stream)


def test_uvicorn_log_config_routes_records_through_the_pipeline(
    json_logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logging.config.dictConfig(uvicorn_log_config(fmt="json", level="info"))
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    record = json.loads(stream.getvalue().splitlines()[-1])
    assert record["event"] == "Started server process [42]"
    assert record["logger"] == "uvicorn.error"
    assert not logging.getLogger("uvicorn.access").hasHandlers()


def test_one_access_line_per_request(json_logs: CapturedLogs) -> None:
    observer = AccessLogObserver()
    observer.on_request(request())
    observer.on_request(
        request(status=422, model=None, version=None, principal=None, error_code="invalid_input")
    )
    ok, bad = lines(json_logs)
    assert ok == {
        "event": "request",
        "level": "info",
        "logger": "modelserve.access",
        "timestamp": ok["timestamp"],
        "request_id": "req-1",
        "method": "POST",
        "route": "/v1/models/{name}/predict",
        "status": 200,
        "duration_ms": 12.346,
        "principal": "key-42",
        "principal_kind": "api_key",
        "model": "iris",
        "version": "3",
    }
    assert bad["status"] == 422 and bad["error"] == "invalid_input"
    assert "model" not in bad and "principal" not in bad


def test_access_lines_carry_the_trace_id(
    json_logs: CapturedLogs, spans: InMemorySpanExporter
) -> None:
    observer = AccessLogObserver()
    trace = tracing.start_request("POST", "/v1/models/{name}/predict", [])
    assert trace is not None
    observer.on_request(request())
    trace.finish(200)
    (line,) = lines(json_logs)
    assert line["trace_id"] == trace.trace_id


def test_a_client_chosen_request_id_cannot_smuggle_a_credential(json_logs: CapturedLogs) -> None:
    AccessLogObserver().on_request(request(request_id=SECRET_KEY))
    (line,) = lines(json_logs)
    assert line["request_id"] == "[REDACTED]"


def test_lines_are_written_in_batches(
    json_logs: CapturedLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(access_log, "MAX_PENDING", 3)
    observer = AccessLogObserver()
    buffer = json_logs.stream.buffer
    assert isinstance(buffer, io.BytesIO)
    observer.on_request(request())
    observer.on_request(request())
    assert buffer.getvalue() == b""  # queued, not yet written
    observer.on_request(request())
    assert buffer.getvalue().count(b"\n") == 3
    observer.on_request(request())
    observer.flush()
    assert buffer.getvalue().count(b"\n") == 4


def test_access_lines_respect_the_level() -> None:
    captured = CapturedLogs()
    configure_logging(fmt="json", level="warning", stream=captured.stream)
    AccessLogObserver().on_request(request())
    assert captured.text() == ""
    configure_logging(fmt="json", stream=captured.stream)


def test_console_format_is_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    configure_logging(fmt="console", stream=stream)
    AccessLogObserver().on_request(request())
    structlog.get_logger("x").info("hello", token="abc123secret")
    text = stream.getvalue()
    assert "request" in text and "route=/v1/models/{name}/predict" in text
    assert "abc123secret" not in text
