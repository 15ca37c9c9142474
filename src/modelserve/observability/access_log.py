"""The access log: one structured line per answered request, cheap enough for every request.

Each line holds the request id, trace id (when tracing), method, route template, status,
latency, principal id and kind (the key or user id, never a credential), model, version and
error code. The fields are the server's own except the request id, which a client may choose,
so only that one is scrubbed and the generic redaction pass is skipped.

In JSON mode a request only queues its record and arrival time (a list append); the
observability ticker renders the queued records with orjson, in the same shape as every other
JSON log line (`event`, `level`, `logger`, `timestamp`, ...), and writes them with one system
call every `MAX_DELAY_S` (and at shutdown and exit). At a line per request, structlog's
per-call processor chain and a write per line were most of a small model's observability
budget. A process killed outright loses at most its last `MAX_DELAY_S` of access lines. In
console (development) mode each line goes through the ordinary pipeline at once.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, BinaryIO

import orjson
import structlog

from modelserve.observability import logging as obs_logging
from modelserve.observability import tracing
from modelserve.observability.metrics import KNOWN_METHODS
from modelserve.observability.redaction import redactor

if TYPE_CHECKING:
    from modelserve.types import RequestRecord

ACCESS_LOGGER = "modelserve.access"
MAX_DELAY_S = 0.25
# Past this many queued records a request renders and writes the queue itself.
MAX_PENDING = 4096

Queued = tuple["RequestRecord", float, str | None]

_observers: weakref.WeakSet[AccessLogObserver] = weakref.WeakSet()


@atexit.register
def flush_all() -> None:
    """Write every queued access line of this process (also runs at interpreter exit)."""
    for observer in list(_observers):
        observer.flush()


def _ignore(record: RequestRecord) -> None:
    return None


class AccessLogObserver:
    """The `RequestObserver` writing one access-log line per answered request.

    Build it after `configure_logging`: it binds to the output configured then.
    """

    def __init__(self) -> None:
        output = obs_logging.output
        self._file: BinaryIO | None = None
        self._log: Any = None
        self._pending: list[Queued] = []
        # Records are queued on the event loop; `flush` may also run at exit from another
        # thread, so swapping the queue takes the lock.
        self._lock = threading.Lock()
        self._second = -1
        self._prefix = ""
        if output.level > logging.INFO:
            self.on_request = _ignore  # type: ignore[method-assign]
        elif output.fmt == "json" and output.binary is not None:
            self._file = output.binary
            _observers.add(self)
        else:
            self._log = structlog.get_logger(ACCESS_LOGGER).bind()

    def on_request(self, record: RequestRecord) -> None:
        """Log one answered request."""
        if self._file is None:
            self._log.info("request", **self.fields(record), **{obs_logging.PRE_REDACTED: True})
            return
        trace_id = tracing.current_trace_id() if tracing.enabled else None
        pending = self._pending
        pending.append((record, time.time(), trace_id))
        if len(pending) >= MAX_PENDING:
            self.flush()

    def flush(self) -> None:
        """Render and write every queued line now (the ticker calls this every MAX_DELAY_S)."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending or self._file is None:
            return
        lines = []
        for record, at, trace_id in pending:
            fields = self.fields(record)
            fields["event"] = "request"
            fields["level"] = "info"
            fields["logger"] = ACCESS_LOGGER
            if trace_id is not None:
                fields["trace_id"] = trace_id
            fields["timestamp"] = self._timestamp(at)
            lines.append(orjson.dumps(fields))
        try:
            self._file.write(b"\n".join(lines) + b"\n")
            self._file.flush()
        except (OSError, ValueError):  # stream closed at exit: nothing left to do
            pass

    def _timestamp(self, at: float) -> str:
        second = int(at)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((at - second) * 1e6):06d}Z"

    @staticmethod
    def fields(record: RequestRecord) -> dict[str, Any]:
        """The fields of one access line (those that do not apply are left out)."""
        request_id = record.request_id
        # Request ids are [A-Za-z0-9._:-]{1,128} (http/context.py): of the credential shapes
        # only a key (ms_), a JWT (eyJ) or a key:value pair fit, besides registered secrets.
        if redactor.has_secrets or "ms_" in request_id or "eyJ" in request_id or ":" in request_id:
            request_id = redactor.text(request_id)
        fields: dict[str, Any] = {
            "request_id": request_id,
            "method": record.method if record.method in KNOWN_METHODS else "OTHER",
            "route": record.route,
            "status": record.status,
            "duration_ms": round(record.duration_s * 1000.0, 3),
        }
        principal = record.principal
        if principal is not None:
            fields["principal"] = principal.subject
            fields["principal_kind"] = principal.kind
        if record.model is not None:
            fields["model"] = record.model
            fields["version"] = record.version
        if record.error_code is not None:
            fields["error"] = record.error_code
        return fields
