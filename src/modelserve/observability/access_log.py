"""The access log: one structured line per answered request, cheap enough for every request.

Each line holds the request id, trace id (when tracing), method, route template, status,
latency, principal id and kind (the key or user id, never a credential), model, version and
error code. The fields are the server's own except the request id, which a client may choose,
so only that one is scrubbed and the generic redaction pass is skipped.

In JSON mode each line is rendered at once, in the same shape as every other JSON log line
(`event`, `level`, `logger`, `timestamp`, ...): the part that repeats between requests of one
kind (route, status, model, version, principal) is rendered with orjson once and kept, so a
line costs one bytes format. Lines are queued as bytes (which the garbage collector does not
track, so a queue does not make it run more often); the observability ticker writes the queue
with one system call every `MAX_DELAY_S` (and at shutdown and exit).
At a line per request, structlog's per-call processor chain and a write per line were most of a
small model's observability budget. A process killed outright loses at most its last
`MAX_DELAY_S` of access lines. In console (development) mode each line goes through the
ordinary pipeline at once.
"""

from __future__ import annotations

import atexit
import contextlib
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
from modelserve.observability.request_ids import is_made_here, loggable

if TYPE_CHECKING:
    from modelserve.types import RequestRecord

ACCESS_LOGGER = "modelserve.access"
MAX_DELAY_S = 0.25
# Past this many queued lines a request writes the queue itself.
MAX_PENDING = 2048
MAX_SHARED = 4096

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
        self._lines: list[bytes] = []
        # Records are queued on the event loop; `flush` may also run at exit from another
        # thread, so swapping the queue takes the lock.
        self._lock = threading.Lock()
        self._second = -1
        self._prefix = b""
        self._shared: dict[tuple[Any, ...], bytes] = {}
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
            # Development: the ordinary pipeline, redaction step included.
            self._log.info("request", **self.fields(record))
            return
        # Everything but the time, request id, latency and trace id repeats from request to
        # request: that part of the line is rendered once per kind of request and kept.
        principal = record.principal
        key = (
            record.route,
            record.status,
            record.model,
            record.version,
            record.method,
            record.error_code,
            principal.subject if principal is not None else None,
            principal.kind if principal is not None else None,
        )
        shared = self._shared.get(key)
        if shared is None:
            shared = self._render_shared(key, record)
        at = time.time()
        second = int(at)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)).encode()
        request_id = record.request_id
        # Ids made here are 32 hex digits (nothing to escape or scrub); a client's id was
        # refused if the redactor would change it (request_ids.accept), and is checked again.
        if is_made_here(request_id):
            quoted = b'"%s"' % request_id.encode()
        else:
            quoted = orjson.dumps(loggable(request_id))
        trace = b""
        trace_id = record.trace_id
        if trace_id is None and tracing.enabled:
            trace_id = tracing.current_trace_id()
        if trace_id is not None:
            trace = b',"trace_id":"%s"' % trace_id.encode()
        lines = self._lines
        lines.append(
            b'{"event":"request","level":"info","logger":"modelserve.access",'
            b'"timestamp":"%s.%06dZ","request_id":%s,"duration_ms":%.3f%s%s}'
            % (
                self._prefix,
                int((at - second) * 1e6),
                quoted,
                record.duration_s * 1000.0,
                shared,
                trace,
            )
        )
        if len(lines) >= MAX_PENDING:
            self.flush()

    def _render_shared(self, key: tuple[Any, ...], record: RequestRecord) -> bytes:
        fields = self.fields(record)
        del fields["request_id"], fields["duration_ms"]
        fields.pop("trace_id", None)
        shared = b"," + orjson.dumps(fields)[1:-1]
        if len(self._shared) < MAX_SHARED:  # bounded: principals are many on a busy server
            self._shared[key] = shared
        return shared

    def __del__(self) -> None:
        # An observer dropped without a final flush (an app torn down early) keeps its lines.
        with contextlib.suppress(Exception):
            self.flush()

    def flush(self) -> None:
        """Write every queued line now (the ticker calls this every MAX_DELAY_S)."""
        with self._lock:
            lines, self._lines = self._lines, []
        if not lines or self._file is None:
            return
        try:
            self._file.write(b"\n".join(lines) + b"\n")
            self._file.flush()
        except (OSError, ValueError):  # stream closed at exit: nothing left to do
            pass

    @staticmethod
    def fields(record: RequestRecord) -> dict[str, Any]:
        """The fields of one access line (those that do not apply are left out)."""
        fields: dict[str, Any] = {
            "request_id": loggable(record.request_id),
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
        if record.trace_id is not None:
            fields["trace_id"] = record.trace_id
        return fields
