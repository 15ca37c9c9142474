"""modelserve's HTTP/1.1 protocol: uvicorn's httptools protocol, with predict requests answered
without an ASGI task.

For a microsecond model most of a request's cost is the ASGI round trip, not the model: uvicorn
starts a task per request, the app runs as a chain of coroutines, and the answer goes out as two
ASGI messages and two socket writes. This protocol holds a one-input predict request (POST,
declared Content-Length within uvicorn's read buffer, no `Expect: 100-continue`) until its body
is complete and hands it to the app's `serve_now`, which validates, queues and, for an inline
model, answers before returning; the status line, headers and body then go out in one write.
A request still waiting for its batch is answered from the engine future's callback, without a
task either.

Everything else, and any predict request `serve_now` declines (a credential not cached yet,
tracing on, CORS configured, a batch request), takes uvicorn's ordinary path with the complete
body, so behaviour is the same; only the cost differs. Pipelining, keep-alive, `Connection:
close`, graceful shutdown and uvicorn's concurrency limit keep working because the held request
uses uvicorn's own request-response cycle and completion callback.

It also holds the server's own against hostile clients (http/connections.py): a head over
`max_header_line_bytes`/`max_header_bytes` gets 431 before more is read; a head or body sent
too slowly gets 408; an idle keep-alive connection is closed; past `max_connections` the
oldest idle or still-dribbling connections are closed first; parse errors are answered with the
JSON error body; and an error answered while the client is still sending is followed by a
lingering close, so that a client writing its whole body before reading still reads it.

`modelserve serve` always uses it (see `protocol_class`), with the predict fast path switched
by `ServerConfig.fast_protocol`; it relies on uvicorn internals, so it is checked against the
installed uvicorn and the CLI falls back to plain "httptools" (none of the above) when they
differ.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelserve.http.connections import GuardedProtocol

logger = logging.getLogger("modelserve.http")

# uvicorn pauses reading past this many buffered body bytes until the app consumes them, so a
# held request must never need more (its body could then never complete).
MAX_HELD_BODY = 65536
MAX_UNWRAP = 8


class FastApp(Protocol):
    """What the protocol needs from the application (ModelserveApp has both)."""

    def wants_now(self, scope: Any) -> Any:
        """The route to hold this request for and pass to `serve_now`, or None."""
        ...

    def serve_now(self, scope: Any, route: Any, body: bytes, respond: Any) -> bool:
        """Serve it without a task; False when it needs the ASGI path."""
        ...


def find_fast_app(app: Any) -> FastApp | None:
    """The ModelserveApp behind uvicorn's wrappers (ASGI-3 adapter, proxy headers, message
    logger), or None for any other application."""
    for _ in range(MAX_UNWRAP):
        if hasattr(app, "serve_now") and hasattr(app, "wants_now"):
            found: FastApp = app
            return found
        inner = getattr(app, "app", None)
        if inner is None or inner is app:
            return None
        app = inner
    return None


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The Content-Length of a request, -1 when absent, invalid or chunked."""
    length = -1
    for name, value in headers:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
        elif name == b"transfer-encoding":
            return -1
    return length


# uvicorn[standard] brings httptools. What the subclass overrides or calls, checked by
# `protocol_class` before use: these are uvicorn internals, not its public API.
_NEEDED = (
    "_start_asgi_task",
    "on_message_begin",
    "on_headers_complete",
    "on_message_complete",
    "on_response_complete",
    "connection_made",
    "connection_lost",
    "handle_websocket_upgrade",
    "send_400_response",
    "on_url",
    "on_header",
    "_should_upgrade",
    "_unsupported_upgrade_warning",
)


def protocol_class() -> type[Any] | None:
    """The protocol class for uvicorn's `http` setting, or None when the installed uvicorn
    lacks what it builds on (the caller then uses plain "httptools")."""
    if not all(hasattr(HttpToolsProtocol, name) for name in _NEEDED):
        logger.warning(
            "this uvicorn's httptools protocol is not the one expected: predict fast path off"
        )
        return None
    return ModelserveProtocol


class ModelserveProtocol(GuardedProtocol):
    """uvicorn's HttpToolsProtocol with connection limits (GuardedProtocol), answering
    one-input predict requests without a task."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fast = find_fast_app(self.app) if self.limits.fast_path else None
        # The request waiting for the rest of its body, and its route.
        self._held: Any = None
        self._held_route: Any = None
        # True while uvicorn's completion callback runs from `_respond`: it may start the
        # next pipelined request, which must then take the ASGI path (a task), or a long
        # pipeline answered synchronously would recurse once per request.
        self._completing = False

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        fast = self._fast
        if (
            fast is not None
            and app is self.app  # not uvicorn's 503 for `limit_concurrency`
            and not cycle.waiting_for_100_continue
            # A client not reading its answers: the ASGI path waits for the buffer to
            # drain, and uvicorn stops reading further requests meanwhile.
            and not self.flow.write_paused
            and not self._completing
            and 0 <= _declared_length(cycle.scope["headers"]) <= MAX_HELD_BODY
            and (route := fast.wants_now(cycle.scope)) is not None
        ):
            if cycle.more_body:
                # Served from on_message_complete.
                self._held, self._held_route = cycle, route
                return
            if self._serve(cycle, route):
                return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        held = self._held
        if held is not None and held is self.cycle:
            self._held = None
            if self.flow.write_paused or not self._serve(held, self._held_route):
                super()._start_asgi_task(held, self.app)

    def connection_lost(self, exc: Exception | None) -> None:
        self._held = None
        super().connection_lost(exc)

    def _serve(self, cycle: Any, route: Any) -> bool:
        fast = self._fast
        assert fast is not None

        def respond(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
            self._respond(cycle, status, headers, body)

        try:
            return fast.serve_now(cycle.scope, route, bytes(cycle.body), respond)
        except Exception:
            # A bug of ours must not reach httptools, which would answer 400 and close the
            # connection: unanswered, the request goes on through the ASGI path.
            logger.exception("predict fast path failed")
            return bool(cycle.response_complete)

    def _respond(
        self, cycle: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        # What uvicorn's cycle.send does for a start and a complete body, as one write.
        if cycle.response_complete:
            return
        cycle.response_started = cycle.response_complete = True
        cycle.message_event.set()
        transport = self.transport
        if cycle.disconnected or transport.is_closing():
            return
        keep_alive = cycle.keep_alive
        closing = False
        parts = [STATUS_LINE[status]]
        for name, value in cycle.default_headers:
            parts += (name, b": ", value, b"\r\n")
        for name, value in headers:
            if name == b"connection" and b"close" in value.lower():
                keep_alive = False
                closing = True
            parts += (name, b": ", value, b"\r\n")
        if not keep_alive:
            cycle.keep_alive = False
            if not closing:
                parts.append(b"connection: close\r\n")
        parts += (b"\r\n", body)
        transport.write(b"".join(parts))
        if not keep_alive:
            transport.close()
        self._completing = True
        try:
            cycle.on_response()
        finally:
            self._completing = False
