"""Connection hygiene for modelserve's HTTP protocol: what a hostile or broken client can hold.

uvicorn's httptools protocol reads a request head of any size, waits for a head or a body as
long as the client likes, and accepts connections until the process runs out of file
descriptors. `ModelserveProtocol` (http/protocol.py) bounds all three with what lives here:

* `ConnectionLimits`: the limits, from `HttpConfig` (`MODELSERVE_HTTP__...`).
* `ConnectionGuard`: one per server (uvicorn's `ServerState`), holding a coarse clock, one
  periodic sweep over its connections that expires those past their deadline, and the
  connection cap. A connection only writes a deadline (a float) when its phase changes; no
  timer is armed or cancelled per request, which matters on the predict path.
* `raise_fd_limit`: the soft RLIMIT_NOFILE raised to the hard one, so that the cap, not the
  descriptor limit, is what binds.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import resource
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from modelserve.config import HttpConfig, Settings
from modelserve.errors import (
    HeadersTooLargeError,
    MalformedRequestError,
    ModelserveError,
    RequestTimeoutError,
)
from modelserve.http.errors import render_error

logger = logging.getLogger("modelserve.http")

# After an error answer sent while the client is still sending (413 for a body over the limit,
# 431), the server goes on reading and discarding up to this much, for up to this long, before
# it closes: a client that writes its whole request before reading (urllib, curl without
# Expect) would otherwise get a connection reset instead of the answer (nginx's lingering
# close). Discarding costs no memory; the bytes bound covers a body a few times the default
# 4 MiB limit (1 MiB did not: a 5 MiB urllib upload was still reset), the time bounds the rest.
# After a refused head (431, 400) only one more head's worth (`max_header_bytes`) is read: a
# client sending an oversized head by mistake still reads the answer, one streaming a
# 128 MiB header is cut after a few KiB instead of being read to the end.
LINGER_BYTES = 16 * 1024 * 1024
LINGER_S = 2.0
# Descriptors kept out of the connection cap for everything else a server opens: the
# database, model files, replica pipes, logs. At most a quarter of a small limit.
FD_RESERVE = 256
# The sweep runs at a quarter of the shortest timeout, between these bounds: deadlines are
# that coarse (a connection may live up to one tick past its timeout).
MIN_TICK_S = 0.01
MAX_TICK_S = 1.0
# Past the cap, this share of the cap is closed at once, so that a flood of new connections
# scans the others once per batch rather than once per accept.
EVICT_SHARE = 64

# Connection phases, compared on every `data_received`: plain ints.
HEAD = 0  # reading a request head (or waiting for the first byte of a new connection)
BODY = 1  # reading a request body
BUSY = 2  # request read, answer pending: the server is the one working, no deadline
IDLE = 3  # keep-alive, between requests
LINGER = 4  # answered with an error, discarding what the client still sends
CLOSED = 5

NEVER = math.inf


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one server applies to each of its connections."""

    max_header_line: int
    max_header_block: int
    header_timeout_s: float
    body_timeout_s: float
    body_min_bytes: int
    keep_alive_s: float
    max_connections: int
    # Answer one-input predicts in the protocol (ServerConfig.fast_protocol).
    fast_path: bool = True

    @classmethod
    def from_config(cls, http: HttpConfig, *, fast_path: bool = True) -> ConnectionLimits:
        """The limits `http` configures."""
        return cls(
            max_header_line=http.max_header_line_bytes,
            max_header_block=http.max_header_bytes,
            header_timeout_s=http.header_timeout_s,
            body_timeout_s=http.body_timeout_s,
            body_min_bytes=http.body_min_bytes,
            keep_alive_s=http.keep_alive_timeout_s,
            max_connections=http.max_connections,
            fast_path=fast_path,
        )

    @classmethod
    def for_app(cls, app: Any) -> ConnectionLimits:
        """The limits of the modelserve app behind uvicorn's wrappers (its `state.settings`),
        or the defaults for any other ASGI app (the raw-ASGI benchmark ceiling)."""
        for _ in range(8):
            settings = getattr(getattr(app, "state", None), "settings", None)
            if isinstance(settings, Settings):
                return cls.from_config(settings.http, fast_path=settings.server.fast_protocol)
            inner = getattr(app, "app", None)
            if inner is None or inner is app:
                break
            app = inner
        return cls.from_config(HttpConfig())

    @property
    def tick_s(self) -> float:
        """How often the sweep runs."""
        shortest = min(self.header_timeout_s, self.body_timeout_s, self.keep_alive_s, LINGER_S)
        return min(MAX_TICK_S, max(MIN_TICK_S, shortest / 4))


class Guarded(Protocol):
    """What the guard needs of a connection (ModelserveProtocol)."""

    phase: int
    deadline: float
    # Order of arrival, set by the guard: ties between equal deadlines go to the oldest
    # (uvloop's clock only moves once per loop pass).
    serial: int

    def expire(self) -> None:
        """Called by the sweep once `deadline` has passed."""
        ...

    def eviction_rank(self) -> int | None:
        """How readily it may be closed for a new connection: 0 when that loses no request
        (idle, or still in its head), 1 for a body behind its minimum rate, None: never."""
        ...

    def evict(self) -> None:
        """Close it to make room for a new connection."""
        ...


def fd_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (a large number where there is none)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (before, after). Worker processes
    inherit it. Never fails: a limit that cannot be raised stays as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == soft:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):  # e.g. macOS refuses RLIM_INFINITY
        return soft, soft
    return soft, hard


def connection_cap(requested: int, fds: int) -> int:
    """The connection cap that applies: `requested`, lowered to leave FD_RESERVE descriptors
    (at most a quarter of a small limit) for everything else."""
    return max(1, min(requested, fds - min(FD_RESERVE, fds // 4)))


class ConnectionGuard:
    """One server's connections: a coarse clock, one periodic sweep and the cap."""

    def __init__(self, loop: Any, limits: ConnectionLimits) -> None:
        self.loop = loop
        self.limits = limits
        self.cap = connection_cap(limits.max_connections, fd_limit())
        if self.cap < limits.max_connections:
            logger.warning(
                "connection cap lowered from %d to %d by the file-descriptor limit",
                limits.max_connections,
                self.cap,
            )
        # Read by connections instead of calling loop.time() on every phase change; at most
        # one tick behind while connections are open.
        self.now: float = loop.time()
        self._tick = limits.tick_s
        self._members: set[Guarded] = set()
        self._sweeping: Any = None
        self._serial = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._members)

    def count(self, phase: int) -> int:
        """Connections in `phase` (HEAD, BODY...): for diagnostics and tests."""
        return sum(1 for c in self._members if c.phase == phase)

    def admit(self, conn: Guarded) -> None:
        """Track a new connection; past the cap, close the connections that lose least."""
        self.now = self.loop.time()
        self._serial += 1
        conn.serial = self._serial
        members = self._members
        members.add(conn)
        if self._sweeping is None:
            self._sweeping = self.loop.call_at(self.now + self._tick, self._sweep)
        if len(members) > self.cap:
            self._evict(conn)

    def forget(self, conn: Guarded) -> None:
        """Stop tracking a connection (closed, or handed to another protocol)."""
        self._members.discard(conn)

    def _evict(self, newcomer: Guarded) -> None:
        count = len(self._members) - self.cap + max(1, self.cap // EVICT_SHARE) - 1
        candidates: Iterable[tuple[int, float, int, Guarded]] = (
            (rank, c.deadline, c.serial, c)
            for c in self._members
            if c is not newcomer and (rank := c.eviction_rank()) is not None
        )
        # Idle connections and heads first, then bodies behind their minimum rate (a slow-body
        # flood must not lock new clients out until the body timeout); within each, soonest
        # deadline first (what the sweep would close first anyway), oldest on ties.
        victims = [found[3] for found in heapq.nsmallest(count, candidates)]
        if not victims:
            # Every other connection has a request in progress: the newcomer goes.
            victims = [newcomer]
        for conn in victims:
            self._members.discard(conn)
            conn.evict()
        self.evicted += len(victims)

    def _sweep(self) -> None:
        now = self.now = self.loop.time()
        expired = [c for c in self._members if c.deadline <= now]
        for conn in expired:
            try:
                conn.expire()
            except Exception:  # one broken connection must not stop the sweep for all
                logger.exception("expiring a connection failed")
        if self._members:
            self._sweeping = self.loop.call_at(now + self._tick, self._sweep)
        else:
            self._sweeping = None


_GUARDS: weakref.WeakKeyDictionary[Any, ConnectionGuard] = weakref.WeakKeyDictionary()
# When the server on a loop began its graceful shutdown (uvicorn asks every open connection to
# shut down first thing): what the app's lifespan shutdown may still spend is measured from it.
_SHUTDOWN_BEGAN: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


def grace_left(graceful_timeout_s: float) -> float:
    """Seconds left of `graceful_timeout_s` since the server on the running loop began shutting
    down; all of it when no connection was open then (or the server is not modelserve's
    protocol). uvicorn waits up to the graceful timeout for connections before the lifespan
    shutdown runs, so a drain there must not wait as long again."""
    loop = asyncio.get_running_loop()
    began = _SHUTDOWN_BEGAN.get(loop)
    if began is None:
        return graceful_timeout_s
    return max(0.0, graceful_timeout_s - (loop.time() - began))


def shutdown_began() -> bool:
    """True once the server on the running loop began its graceful shutdown (streams in
    flight then finish within what is left of the graceful timeout, see `grace_left`)."""
    return asyncio.get_running_loop() in _SHUTDOWN_BEGAN


def guard_for(server_state: Any, loop: Any, app: Any) -> ConnectionGuard:
    """The guard of the server whose shared state is `server_state` (made on first use)."""
    guard = _GUARDS.get(server_state)
    if guard is None:
        guard = _GUARDS[server_state] = ConnectionGuard(loop, ConnectionLimits.for_app(app))
    return guard


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; `GuardedProtocol._refusal` says why."""


class _AppTransport:
    """The transport an ASGI request-response cycle writes to: the real one, except that
    `close()` becomes a lingering close while the request body is still arriving (a 413
    decided from Content-Length, before the body was read)."""

    __slots__ = ("_protocol", "_transport", "is_closing", "write")

    def __init__(self, protocol: GuardedProtocol, transport: Any) -> None:
        self._protocol = protocol
        self._transport = transport
        # Bound once: the ASGI path's writes cost no extra call.
        self.write = transport.write
        self.is_closing = transport.is_closing

    def close(self) -> None:
        self._protocol.close_after_answer()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HttpToolsProtocol with the limits of `ConnectionLimits` applied.

    Each connection is in one phase (HEAD, BODY, BUSY, IDLE, LINGER) with one deadline, both
    plain attributes written on phase changes; the server's `ConnectionGuard` sweeps them.
    Head bytes are counted in `data_received` (request line included) and the parser is never
    fed past `max_header_block`; lines are checked in the parser callbacks. Errors found here
    are answered with the project's JSON error body (`render_error`), never uvicorn's text.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard_for(self.server_state, self.loop, self.app)
        self.limits = limits = self.guard.limits
        self.phase = HEAD
        self.deadline = NEVER
        self.serial = 0
        # Head bytes still allowed; heads completed so far (to tell, after feeding part of a
        # chunk, whether the head in progress ended inside it).
        self._head_room = limits.max_header_block
        self._heads = 0
        # Body bytes since the body's deadline was last pushed back.
        self._body_seen = 0
        self._linger_left = 0
        self._refusal: ModelserveError | None = None
        self._app_transport: _AppTransport | None = None

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        # A new connection's head clock starts now: one that sends nothing is cut too.
        self.deadline = self.loop.time() + self.limits.header_timeout_s
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.phase = CLOSED
        self.guard.forget(self)
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown begins (called for every open connection)."""
        _SHUTDOWN_BEGAN.setdefault(self.loop, self.loop.time())
        super().shutdown()

    def handle_websocket_upgrade(self) -> None:
        # The transport goes to another protocol: no longer ours to expire or evict.
        self.phase = CLOSED
        self.guard.forget(self)
        super().handle_websocket_upgrade()

    def data_received(self, data: bytes) -> None:
        # Replaces uvicorn's (which also cancels the keep-alive timer this class never arms).
        phase = self.phase
        if phase == IDLE:
            # The next request on a keep-alive connection: its head clock starts now.
            phase = self.phase = HEAD
            self.deadline = self.guard.now + self.limits.header_timeout_s
            self._head_room = self.limits.max_header_block
        if phase == HEAD:
            room = self._head_room - len(data)
            if room < 0:
                self._feed_past_room(data)
                return
            self._head_room = room
        elif phase == BODY:
            self._body_seen += len(data)
        elif phase >= LINGER:
            self._discard(data)
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            refusal, self._refusal = self._refusal, None
            self.refuse(refusal or MalformedRequestError(_parse_error_message(exc)))
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _feed_past_room(self, data: bytes) -> None:
        # The chunk holds more than the head may still take: feed only what it may, and see
        # whether the head ended inside that part (the rest is then body or the next request).
        room, heads = self._head_room, self._heads
        if room > 0:
            self._feed(data[:room])
        if self.phase >= LINGER or self.parser is None or self.transport.is_closing():
            return
        if self._heads == heads:
            limit = self.limits.max_header_block
            self.refuse(HeadersTooLargeError(f"request head is over the {limit}-byte limit"))
            return
        self.data_received(data[room:])

    # -- parser callbacks (uvicorn's, with the line limit) ----------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase != HEAD:
            # A pipelined request right after the previous one, in the same chunk.
            self.phase = HEAD
            self.deadline = self.guard.now + self.limits.header_timeout_s
            self._head_room = self.limits.max_header_block

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_header_line:
            self._refuse_line("request line")

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) > self.limits.max_header_line:
            self._refuse_line("header line")
        # What uvicorn's on_header does, inline: it runs for every header of every request.
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def _refuse_line(self, what: str) -> None:
        limit = self.limits.max_header_line
        self._refusal = HeadersTooLargeError(f"a {what} is over the {limit}-byte limit")
        raise _Refused

    def on_headers_complete(self) -> None:
        # uvicorn's first (it makes the request's cycle): when it raises (a request target that
        # is not ASCII), the phase is still HEAD and the error is this head's, not the body's.
        super().on_headers_complete()
        self._heads += 1
        self.phase = BODY
        self.deadline = self.guard.now + self.limits.body_timeout_s
        self._body_seen = 0

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:
            # Answered before its body was read (a 401, say): the connection is idle now.
            self._become_idle()
        else:
            self.phase = BUSY
            self.deadline = NEVER
        super().on_message_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        transport = self._app_transport
        if transport is None:
            transport = self._app_transport = _AppTransport(self, self.transport)
        cycle.transport = transport
        super()._start_asgi_task(cycle, app)

    def on_response_complete(self) -> None:
        # uvicorn's, without its keep-alive timer: the sweep closes idle connections.
        self.server_state.total_requests += 1
        if self.phase >= LINGER or self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        elif self.phase == BUSY:
            self._become_idle()

    def _become_idle(self) -> None:
        self.phase = IDLE
        self.deadline = self.guard.now + self.limits.keep_alive_s

    # -- the guard's side ------------------------------------------------------------------

    def expire(self) -> None:
        """The sweep found this connection past its deadline."""
        phase, now, cycle = self.phase, self.guard.now, self.cycle
        if phase == HEAD:
            if cycle is not None and not cycle.response_complete:
                # A pipelined head behind a request still being answered: not its turn yet.
                self.deadline = now + self.limits.header_timeout_s
            elif self._head_room == self.limits.max_header_block:
                self._close()  # nothing sent: nothing to answer
            else:
                self.refuse(
                    RequestTimeoutError("the request head was not received in time"),
                    linger=False,
                )
        elif phase == BODY:
            if self._body_seen >= self.limits.body_min_bytes or self.flow.read_paused:
                # Progressing, or waiting for the app to take what it sent: more time.
                self._body_seen = 0
                self.deadline = now + self.limits.body_timeout_s
            else:
                self.refuse(
                    RequestTimeoutError("the request body was not received in time"),
                    linger=False,
                )
        elif phase == BUSY:
            self.deadline = NEVER
        else:  # IDLE, LINGER
            self._close()

    def eviction_rank(self) -> int | None:
        """0: closing this connection loses no request (idle, lingering, or a head with no
        answer pending); 1: a body not yet at its minimum rate in this window, unanswered;
        None: a request in progress, or a body keeping its rate."""
        phase = self.phase
        if phase == HEAD:
            cycle = self.cycle
            return 0 if cycle is None or cycle.response_complete else None
        if phase in (IDLE, LINGER):
            return 0
        if (
            phase == BODY
            and self._body_seen < self.limits.body_min_bytes
            and not self.flow.read_paused
            and not self.cycle.response_started
        ):
            return 1
        return None

    def evict(self) -> None:
        """Closed to make room for a new connection."""
        self._close()

    def _close(self) -> None:
        self.phase = CLOSED
        self.deadline = NEVER
        self.transport.close()

    # -- answering errors ------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        # uvicorn's plain-text 400, in case an uvicorn path still calls it.
        self.refuse(MalformedRequestError(msg))

    def refuse(self, exc: ModelserveError, *, linger: bool = True) -> None:
        """Answer `exc` with the JSON error body and close: after a short lingering read (one
        more head's worth) when the client may still be sending (`linger`), at once
        otherwise."""
        if self.phase >= LINGER or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None:
            if self.phase != BODY:
                if not cycle.response_complete:
                    # The error is in what follows a request still being answered: that answer
                    # goes out and closes the connection; nothing more is read.
                    cycle.keep_alive = False
                    self.flow.pause_reading()
                    self.phase = BUSY
                    self.deadline = NEVER
                    return
            elif cycle.response_started:
                # This request is answered, or half: a second answer would be taken for the
                # next request's.
                self._close()
                return
            else:
                # The app is still reading this request: it is answered here instead.
                cycle.response_started = cycle.response_complete = cycle.disconnected = True
                cycle.message_event.set()
        status, headers, body = render_error(exc, None)
        logger.info("refused a request: %d %s", status, exc.message)
        parts = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            parts += (name, b": ", value, b"\r\n")
        parts += (
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
            body,
        )
        self.transport.write(b"".join(parts))
        if linger:
            self._linger(self.limits.max_header_block)
        else:
            self._close()

    def close_after_answer(self) -> None:
        """Close once an ASGI answer is out: a lingering close while the request body is
        still arriving, so that the client reads the answer instead of a reset."""
        cycle = self.cycle
        if self.phase == BODY and cycle is not None and cycle.more_body:
            self._linger(LINGER_BYTES)
        else:
            self.transport.close()

    def _linger(self, most: int) -> None:
        transport = self.transport
        self.phase = LINGER
        self.deadline = self.guard.now + LINGER_S
        self._linger_left = most
        self.flow.resume_reading()
        if transport.can_write_eof():
            # Our side is done (FIN after the answer); the client's keeps being read.
            transport.write_eof()
        else:  # TLS cannot half-close
            transport.close()

    def _discard(self, data: bytes) -> None:
        if self.phase == LINGER:
            self._linger_left -= len(data)
            if self._linger_left <= 0:
                self._close()


def _parse_error_message(exc: Exception) -> str:
    cause = exc.__context__
    if isinstance(cause, UnicodeError):
        return "Invalid HTTP request: the request target is not ASCII"
    if cause is not None or not str(exc):
        return "Invalid HTTP request"
    return f"Invalid HTTP request: {exc}"
