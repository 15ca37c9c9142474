"""Connection hygiene of modelserve's HTTP protocol (http/connections.py) against hostile clients:
header size limits (431), head and body read timeouts (408), idle keep-alive, the connection
cap, JSON bodies for parse errors and the lingering close after an early 413.

Real uvicorn servers with the protocol class run in threads of this process, with limits and
timeouts shortened so that every case takes well under a second; clients are raw sockets (and
urllib, which writes a whole body before reading). No assertion is on a duration: a socket
timeout only turns a server that never answers into a failure instead of a hang.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from modelserve import HttpConfig, Settings, create_app
from modelserve.config import ServerConfig
from modelserve.http.connections import (
    _GUARDS,
    _SHUTDOWN_BEGAN,
    BODY,
    HEAD,
    LINGER_BYTES,
    ConnectionGuard,
    ConnectionLimits,
    connection_cap,
    grace_left,
    raise_fd_limit,
)
from modelserve.http.protocol import protocol_class
from tests.http.test_protocol import Double, Reader, connect, request
from tests.observability.support import serve_in_thread

BODY_LIMIT = 64 * 1024
LINE = 1024
BLOCK = 4096
SHORT_S = 0.3
CAP = 16
# How long a client waits for an answer before the test fails (never a measured figure).
PATIENCE_S = 10.0
PREDICT = "/v1/models/double/predict"


def strict_settings(**http: object) -> Settings:
    config = {
        "max_body_bytes": BODY_LIMIT,
        "max_header_line_bytes": LINE,
        "max_header_bytes": BLOCK,
        "header_timeout_s": SHORT_S,
        "body_timeout_s": SHORT_S,
        "keep_alive_timeout_s": SHORT_S,
    }
    config.update(http)
    return Settings(http=HttpConfig(**config))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(create_app(strict_settings(), [Double]), http=protocol_class()) as base:
        yield base


@pytest.fixture(scope="module")
def capped() -> Iterator[str]:
    # Timeouts long enough that only the cap can close anything during the test.
    settings = strict_settings(
        header_timeout_s=60.0, body_timeout_s=60.0, keep_alive_timeout_s=60.0, max_connections=CAP
    )
    with serve_in_thread(create_app(settings, [Double]), http=protocol_class()) as base:
        yield base


def answer(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    sock.settimeout(PATIENCE_S)
    status, headers, body = Reader(sock).response()
    return status, headers, json.loads(body)


def closed_silently(sock: socket.socket) -> bool:
    """True when the server closed the connection without sending anything."""
    sock.settimeout(PATIENCE_S)
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def stream_until_cut(sock: socket.socket, head: bytes, total: int) -> int:
    """Send `head`, then up to `total` bytes of header value in 64 KiB pieces; how many went
    out before the server closed the connection (`total` when it never did)."""
    piece = b"a" * 65536
    sent = 0
    try:
        sock.sendall(head)
        while sent < total:
            sock.sendall(piece)
            sent += len(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def assert_error(
    response: tuple[int, dict[str, str], dict[str, object]], status: int, code: str
) -> None:
    got, headers, body = response
    assert got == status, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code


# -- header limits -----------------------------------------------------------------------------


def test_a_header_line_over_the_limit_is_431(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(request("/livez", method="GET", headers=f"X-Big: {'a' * LINE}\r\n"))
        assert_error(answer(sock), 431, "headers_too_large")
        assert closed_silently(sock)


def test_a_request_line_over_the_limit_is_431(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(request("/livez?" + "q" * LINE, method="GET"))
        assert_error(answer(sock), 431, "headers_too_large")


def test_a_head_over_the_block_limit_is_431_before_it_ends(url: str) -> None:
    # Lines each under the line limit, together over the block limit, and no end of head:
    # the answer can only come back if the server stopped reading at the limit.
    filler = "".join(f"X-Filler-{i}: {'v' * 500}\r\n" for i in range(BLOCK // 500 + 1))
    with connect(url) as sock:
        sock.sendall(f"GET /livez HTTP/1.1\r\nHost: test\r\n{filler}".encode())
        assert_error(answer(sock), 431, "headers_too_large")


def test_a_head_twice_the_limit_sent_at_once_still_reads_its_431(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\nX-Huge: " + b"a" * (2 * BLOCK))
        assert_error(answer(sock), 431, "headers_too_large")


def test_a_streamed_huge_header_is_cut_and_the_server_serves_on(url: str) -> None:
    # The server stops reading at the limit (plus one more head's worth): a client streaming
    # 64 MiB of one header finds the connection closed long before the end, where uvicorn's
    # parser alone would read and buffer all of it.
    total = 64 * 1024 * 1024
    with connect(url) as sock:
        head = b"GET /livez HTTP/1.1\r\nHost: test\r\nX-Huge: "
        assert stream_until_cut(sock, head, total) < total
    with connect(url) as sock:
        sock.sendall(request(PREDICT, b'{"x": 2}'))
        assert answer(sock)[:1] == (200,)


def test_heads_within_the_limits_are_served_with_their_body_in_the_same_write(url: str) -> None:
    # One write holding a head under the limit and a body far over it: only the head counts.
    padded = b'{"x": 3}' + b" " * (BLOCK * 8)
    with connect(url) as sock:
        reader = Reader(sock)
        sock.sendall(request(PREDICT, padded, headers=f"X-Near: {'a' * (LINE - 16)}\r\n") * 2)
        for _ in range(2):
            status, _, body = reader.response()
            assert (status, body) == (200, b'{"y":6.0}')


# -- read timeouts and keep-alive ----------------------------------------------------------------


def test_a_head_sent_too_slowly_gets_408(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"GET /livez HTTP/1.1\r\nHost: test\r\n")  # and never the end of it
        assert_error(answer(sock), 408, "request_timeout")
        assert closed_silently(sock)


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(url: str) -> None:
    with connect(url) as sock:
        assert closed_silently(sock)


@pytest.mark.parametrize("path", [PREDICT, "/v1/models/double/predict/batch"], ids=["held", "asgi"])
def test_a_body_sent_too_slowly_gets_408(url: str, path: str) -> None:
    with connect(url) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"x"')
        assert_error(answer(sock), 408, "request_timeout")
        assert closed_silently(sock)


def test_a_body_left_unfinished_after_its_answer_is_cut_without_a_second_answer(
    url: str,
) -> None:
    # 405 comes back before the body is read; the body never completes. A 408 written after
    # it would be read as the answer to the client's next request.
    with connect(url) as sock:
        sock.sendall(b"POST /livez HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
        sock.settimeout(PATIENCE_S)
        assert Reader(sock).response()[0] == 405
        assert closed_silently(sock)


def test_a_chunked_body_without_its_last_chunk_gets_408(url: str) -> None:
    with connect(url) as sock:
        head = "POST /v1/models/double/predict HTTP/1.1\r\nHost: t\r\n"
        head += "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        sock.sendall(head.encode() + b'8\r\n{"x": 1}\r\n')  # no "0\r\n\r\n"
        assert_error(answer(sock), 408, "request_timeout")


def test_an_idle_keep_alive_connection_is_closed_after_its_answer(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(request(PREDICT, b'{"x": 1}'))
        assert answer(sock)[0] == 200
        assert closed_silently(sock)


# -- the connection cap --------------------------------------------------------------------------


def capped_guard() -> ConnectionGuard:
    return next(g for g in list(_GUARDS.values()) if g.limits.max_connections == CAP)


def wait_for(condition: Callable[[], bool]) -> None:
    """Poll until the server holds the state the test sets up (a guard against hanging, not a
    measured time)."""
    deadline = time.monotonic() + PATIENCE_S
    while not condition():
        assert time.monotonic() < deadline, "the server never reached the state under test"
        time.sleep(0.01)


def fill_to_the_cap(url: str, send: bytes | None, phase: int) -> list[socket.socket]:
    """CAP connections, the server's own count checked before each next one (so that none is
    closed yet and their order of arrival is the order of this list)."""
    guard = capped_guard()
    wait_for(lambda: len(guard) == 0)  # what earlier tests opened is gone
    hogs: list[socket.socket] = []
    for index in range(CAP):
        hog = connect(url)
        hogs.append(hog)
        if send is not None and index % 2 == 0:
            hog.sendall(send)
        wait_for(lambda: len(guard) == len(hogs) and guard.count(phase) == len(hogs))
    return hogs


def test_past_the_cap_the_oldest_idle_connection_makes_room(capped: str) -> None:
    # Every other one dribbles a head, the rest sent nothing: both kinds are fair game.
    hogs = fill_to_the_cap(capped, b"GET /livez HTTP/1.1\r\n", HEAD)
    try:
        for path, body in (("/livez", None), (PREDICT, b'{"x": 5}')):
            with connect(capped) as sock:
                sock.sendall(request(path, body, method="GET" if body is None else "POST"))
                assert answer(sock)[0] == 200
        # The first newcomer pushed the oldest one out (the second may have found room left
        # by the first's close).
        assert closed_silently(hogs[0])
    finally:
        for hog in hogs:
            hog.close()


def test_past_the_cap_slow_bodies_make_room_too(capped: str) -> None:
    # Every connection is inside a body, one byte of a thousand sent: with nothing idle to
    # close, the slowest bodies go before the newcomer does.
    partial = request("/v1/models/double/predict/batch", b"{" + b" " * 999)[:-999]
    guard = capped_guard()
    wait_for(lambda: len(guard) == 0)
    hogs: list[socket.socket] = []
    try:
        for _ in range(CAP):
            hogs.append(connect(capped))
            hogs[-1].sendall(partial)
            wait_for(lambda: guard.count(BODY) == len(hogs))
        for path, body in (("/livez", None), (PREDICT, b'{"x": 5}')):
            with connect(capped) as sock:
                sock.sendall(request(path, body, method="GET" if body is None else "POST"))
                assert answer(sock)[0] == 200
        assert closed_silently(hogs[0])
    finally:
        for hog in hogs:
            hog.close()


def test_the_cap_stays_below_the_descriptor_limit() -> None:
    assert connection_cap(10_000, 1_048_576) == 10_000
    assert connection_cap(10_000, 1024) == 768
    assert connection_cap(10_000, 40) == 30
    before, after = raise_fd_limit()
    assert after >= before


def test_a_guard_without_connections_stops_sweeping() -> None:
    class Loop:
        def __init__(self) -> None:
            self.armed = 0

        def time(self) -> float:
            return 0.0

        def call_at(self, when: float, callback: object) -> object:
            self.armed += 1
            return object()

    loop = Loop()
    guard = ConnectionGuard(loop, ConnectionLimits.from_config(HttpConfig()))
    guard._sweep()
    assert loop.armed == 0  # nothing to watch: no timer left behind


# -- protocol errors in the JSON body -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"GET /livez/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /v1/models/double/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /livez HTTP/1.1\r\nHost: t\r\nX-Bad: a\rb\r\n\r\n",
    ],
    ids=["utf8-path", "cl-and-te", "garbage", "bare-cr"],
)
def test_parse_errors_are_answered_with_the_json_error_body(url: str, raw: bytes) -> None:
    with connect(url) as sock:
        sock.sendall(raw)
        assert_error(answer(sock), 400, "malformed_request")


def test_a_parse_error_behind_a_pipelined_request_leaves_its_answer_intact(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(request(PREDICT, b'{"x": 4}') + b"NOT HTTP\r\n\r\n")
        reader = Reader(sock)
        sock.settimeout(PATIENCE_S)
        status, _, body = reader.response()
        assert (status, body) == (200, b'{"y":8.0}')


# -- the lingering close after an early 413 -------------------------------------------------------


# More than loopback's socket buffers hold (a few MiB): without a lingering close the server's
# close resets the connection while the client is still writing.
UPLOAD = 12 * 1024 * 1024


def test_a_client_that_writes_its_whole_body_first_reads_the_413(url: str) -> None:
    # urllib sends the head and the whole body before it reads anything.
    body = b'{"x": 1}' + b" " * UPLOAD
    sent = urllib.request.Request(
        url + "/v1/models/double/predict/batch",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(sent, timeout=PATIENCE_S)
    assert refused.value.code == 413
    assert json.loads(refused.value.read())["error"]["code"] == "payload_too_large"


def test_a_raw_client_reads_the_413_after_sending_everything(url: str) -> None:
    body = b" " * UPLOAD
    assert UPLOAD < LINGER_BYTES
    with connect(url) as sock:
        sock.sendall(request("/v1/models", body))
        assert_error(answer(sock), 413, "payload_too_large")


# -- the protocol is used even with the fast path off ---------------------------------------------


def test_limits_hold_with_the_fast_path_off() -> None:
    settings = Settings(
        http=HttpConfig(max_header_line_bytes=LINE), server=ServerConfig(fast_protocol=False)
    )
    app = create_app(settings, [Double])
    assert ConnectionLimits.for_app(app).fast_path is False
    with serve_in_thread(app, http=protocol_class()) as base, connect(base) as sock:
        sock.sendall(request("/livez", method="GET", headers=f"X-Big: {'a' * LINE}\r\n"))
        assert_error(answer(sock), 431, "headers_too_large")


# -- shutdown: what the lifespan may still spend -------------------------------------------------


async def test_grace_left_is_what_remains_since_the_server_began_shutting_down() -> None:
    loop = asyncio.get_running_loop()
    assert grace_left(2.0) == 2.0  # no shutdown began on this loop: all of it
    _SHUTDOWN_BEGAN[loop] = loop.time() - 5.0
    try:
        assert grace_left(2.0) == 0.0
        assert 0.0 < grace_left(30.0) <= 25.0
    finally:
        del _SHUTDOWN_BEGAN[loop]
