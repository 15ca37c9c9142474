"""Structured logs with structlog: JSON in production, readable lines in development.

One pipeline for everything: modelserve's own events (structlog) and stdlib records from
uvicorn, SQLAlchemy and the rest (through structlog's `ProcessorFormatter`) get the same
timestamp, level, logger name, trace id and the same redaction step, then one renderer.
Exceptions are rendered to text *before* redaction, so a secret in an exception message is
scrubbed too; tracebacks never show local variables.

The access log itself (one line per request) is `observability/access_log.py`.
"""

from __future__ import annotations

import logging
import logging.config
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TextIO

import orjson
import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from modelserve.observability import tracing
from modelserve.observability.redaction import redactor

if TYPE_CHECKING:
    from modelserve.config import ObservabilityConfig

LogFormat = Literal["json", "console"]
# Loggers whose own handlers would bypass the pipeline: route them to the root handler.
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "sqlalchemy", "alembic")
# uvicorn writes its own access line whenever this logger has a handler (even through
# propagation), with client addresses and raw paths; ours replaces it unless asked for.
UVICORN_ACCESS = "uvicorn.access"


def resolve_format(config: ObservabilityConfig, mode: str) -> LogFormat:
    """The log format for a settings object: `auto` is JSON in prod mode, console in dev."""
    if config.log_format == "auto":
        return "json" if mode == "prod" else "console"
    return config.log_format


@dataclass(frozen=True, slots=True)
class LogOutput:
    """Where and how this process logs, as `configure_logging` last set it."""

    fmt: LogFormat
    binary: BinaryIO | None  # the byte stream under the text stream, for JSON lines
    level: int


output = LogOutput("console", None, logging.INFO)
"""The current log output; read by the access log when it binds its logger."""


def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: scrub credentials from every key and value of an event."""
    return redactor.mapping(event_dict)


class UtcTimestamp:
    """structlog processor: ISO 8601 UTC timestamps, formatting the date part once a second.

    `TimeStamper(fmt="iso")` builds a datetime per event; an access log line per request makes
    that a measurable share of the line's cost.
    """

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        """The current time, e.g. 2026-11-26T01:46:34.133984Z."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1e6):06d}Z"

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        event_dict["timestamp"] = self.now()
        return event_dict


def add_trace_id(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the current request's trace id, when tracing is on."""
    if tracing.enabled and "trace_id" not in event_dict:
        trace_id = tracing.current_trace_id()
        if trace_id is not None:
            event_dict["trace_id"] = trace_id
    return event_dict


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def dumps_bytes(obj: Any, **_: Any) -> bytes:
    """orjson serializer for structlog's JSONRenderer (anything unknown becomes its str)."""
    return orjson.dumps(obj, default=str)


def _foreign_chain() -> list[Processor]:
    """Processors for stdlib records, before the shared renderer."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        add_trace_id,
        structlog.processors.format_exc_info,
        redact_event,
        # After redaction: the timestamp is ours and holds ':' (which would send it through
        # the redactor's substitutions for nothing).
        UtcTimestamp(),
    ]


def _native_chain() -> list[Processor]:
    """Processors for modelserve's structlog events, before the shared renderer."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_trace_id,
        structlog.processors.format_exc_info,
        redact_event,
        UtcTimestamp(),
    ]


def _renderer(fmt: LogFormat, stream: TextIO, *, to_bytes: bool) -> Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer(serializer=dumps_bytes if to_bytes else _dumps)
    return structlog.dev.ConsoleRenderer(
        colors=stream.isatty(),
        # Rich's default traceback shows locals, which may hold credentials.
        exception_formatter=structlog.dev.plain_traceback,
    )


def processor_formatter(fmt: LogFormat = "json", stream: TextIO | None = None) -> logging.Formatter:
    """A stdlib Formatter that runs foreign records through the same pipeline."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_foreign_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _renderer(fmt, stream or sys.stderr, to_bytes=False),
        ],
    )


def configure_logging(
    *,
    fmt: LogFormat,
    level: str = "info",
    stream: TextIO | None = None,
    uvicorn_access: bool = False,
) -> None:
    """Configure structlog and the stdlib root logger for this process (idempotent).

    `uvicorn_access` keeps uvicorn's own access lines (through the same redaction); off, the
    access log is modelserve's alone (one structured line per request, route templates only).
    """
    stream = stream if stream is not None else sys.stderr
    numeric = logging.getLevelNamesMapping()[level.upper()]
    binary = getattr(stream, "buffer", None) if fmt == "json" else None
    factory: Any = (
        structlog.BytesLoggerFactory(binary)
        if binary is not None
        else structlog.WriteLoggerFactory(stream)
    )
    global output
    output = LogOutput(fmt, binary, numeric)
    structlog.configure(
        processors=[*_native_chain(), _renderer(fmt, stream, to_bytes=binary is not None)],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        # modelserve logs little outside the access log, which binds its own logger once; not
        # caching keeps module-level loggers following a reconfiguration.
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(processor_formatter(fmt, stream))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_modelserve", False):
            root.removeHandler(old)
    handler._modelserve = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in (*FOREIGN_LOGGERS, "modelserve"):
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
    access = logging.getLogger(UVICORN_ACCESS)
    access.handlers.clear()
    access.propagate = uvicorn_access


def uvicorn_log_config(*, fmt: LogFormat, level: str = "info") -> dict[str, Any]:
    """A `log_config` for uvicorn that sends its records through the same pipeline.

    uvicorn applies it in every worker process, so the workers' own uvicorn lines are
    structured and redacted like everything else.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "modelserve": {
                "()": "modelserve.observability.logging.processor_formatter",
                "fmt": fmt,
            }
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "modelserve",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            **{
                name: {"handlers": [], "level": level.upper(), "propagate": True}
                for name in (*FOREIGN_LOGGERS, "modelserve")
            },
            # SQLAlchemy sets its loggers to WARNING at import; at INFO it logs every
            # statement (`database.echo` is the switch for that).
            "sqlalchemy": {"handlers": [], "level": "WARNING", "propagate": True},
            UVICORN_ACCESS: {"handlers": [], "propagate": False},
        },
        "root": {"handlers": ["default"], "level": level.upper()},
    }
