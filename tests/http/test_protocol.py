"""modelserve's HTTP protocol: one-input predicts answered without an ASGI task, same answers.

A real uvicorn with the protocol class serves an app in a thread of this process; the tests talk
to it over raw sockets so that framing (keep-alive, pipelining, split bodies, Expect, chunked,
Connection: close, HTTP/1.0) is exactly what goes over the wire. A spy on the predict endpoint
tells which path served each request.

The equivalence tests send one corpus of good and bad requests three ways into the one predict
pipeline (`http/pipeline.py`): the protocol's task-free path, the ASGI endpoint, and the FastAPI
routes that document the predict paths (reached through FastAPI's router, as a request FastAPI
routed itself would be). Status line, headers, body and the access record must be identical.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel

from modelserve import HttpConfig, Service, Settings, batching
from modelserve.cli.serve import http_protocol
from modelserve.config import ServerConfig
from modelserve.errors import AuthenticationError, PermissionDeniedError
from modelserve.http.app import ModelserveApp, build_app
from modelserve.http.predict import match
from modelserve.http.predict_docs import PredictRoute
from modelserve.http.protocol import (
    MAX_HELD_BODY,
    _declared_length,
    find_fast_app,
    protocol_class,
)
from modelserve.types import Principal, Receive, RequestRecord, Scope, Send
from tests.http.services import Checksum, Summer
from tests.observability.support import serve_in_thread

LIMIT = 256 * 1024


class Number(BaseModel):
    x: float


class Doubled(BaseModel):
    y: float


class Double(Service[Number, Doubled]):
    """A microsecond model on the event loop: answered before serve_now returns."""

    name = "double"
    isolation = "inline"
    batching = batching(max_batch_size=16, max_wait_ms=0)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=2 * n.x) for n in batch]


class Nap(BaseModel):
    seconds: float


class Napped(BaseModel):
    slept: float


class Sleepy(Service[Nap, Napped]):
    """A thread replica that takes its time: answered from the engine future's callback."""

    name = "sleepy"
    batching = batching(max_batch_size=4, max_wait_ms=1)

    def predict(self, batch: list[Nap]) -> list[Napped]:
        time.sleep(max(n.seconds for n in batch))
        return [Napped(slept=n.seconds) for n in batch]


class Spy:
    """Stands in for the app's PredictEndpoint; counts requests that took the ASGI path."""

    def __init__(self, endpoint: Any) -> None:
        self.endpoint = endpoint
        self.asgi_calls = 0
        self.fast_calls = 0

    async def __call__(self, *args: Any) -> None:
        self.asgi_calls += 1
        await self.endpoint(*args)

    def serve_now(self, *args: Any) -> bool:
        # Counted first: the answer may reach the client before serve_now returns.
        self.fast_calls += 1
        served: bool = self.endpoint.serve_now(*args)
        self.fast_calls -= not served
        return served

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)


MEMBER = Principal(
    kind="api_key",
    subject="key-1",
    owner_id="u1",
    role="member",
    scopes=frozenset({"predict:*"}),
    rate_key="key-1",
)


class Gate:
    """A PredictGuard: `good` is a cached credential, `later` one that needs a lookup (the
    protocol's path then declines), `nope` may not predict, anything else is unknown."""

    def check_predict_now(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal | None:
        token = dict(headers).get(b"authorization", b"")
        if token == b"Bearer later":
            return None
        return self._check(token)

    async def check_predict(self, headers: list[tuple[bytes, bytes]], model: str) -> Principal:
        token = dict(headers).get(b"authorization", b"")
        return self._check(b"Bearer good" if token == b"Bearer later" else token)

    @staticmethod
    def _check(token: bytes) -> Principal:
        if token == b"Bearer good":
            return MEMBER
        if token == b"Bearer nope":
            raise PermissionDeniedError("this credential may not predict with this model")
        raise AuthenticationError("missing or invalid credentials")


class Records:
    """The access records (what the access log writes a line of) one server made."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def on_request(self, record: RequestRecord) -> None:
        self.records.append(record)

    def next(self, seen: int) -> RequestRecord:
        """The record after the first `seen`, once the server made it (it reports right
        after writing the answer, which the client may read first)."""
        deadline = time.monotonic() + 10
        while len(self.records) <= seen and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.records[seen]


def build(records: Records | None = None) -> tuple[ModelserveApp, Spy]:
    app = build_app(
        Settings(http=HttpConfig(max_body_bytes=LIMIT)),
        [Double, Summer, Sleepy, Checksum],
        guard=Gate(),
        observers=[records] if records is not None else (),
    )
    spy = Spy(app.predict_endpoint)
    app.predict_endpoint = spy  # type: ignore[assignment]
    return app, spy


class ThroughRouter:
    """The app as FastAPI's router sees it: predict paths reach the routes that document
    them (`http/openapi.py`), not the endpoint `ModelserveApp.dispatch` calls first."""

    def __init__(self, app: ModelserveApp) -> None:
        self.app = app
        self.routes: list[Any] = []  # the route each request was served by

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or match(scope["path"]) is None:
            await self.app(scope, receive, send)  # the lifespan, the readiness probe
            return
        scope["app"] = self.app
        await self.app.router(scope, receive, send)
        self.routes.append(scope.get("route"))


class Served(NamedTuple):
    url: str
    records: Records
    routes: list[Any]


@pytest.fixture(scope="module")
def served_records() -> Iterator[tuple[str, Spy, Records]]:
    records = Records()
    app, spy = build(records)
    with serve_in_thread(app, http=protocol_class()) as url:
        yield url, spy, records


@pytest.fixture(scope="module")
def served(served_records: tuple[str, Spy, Records]) -> tuple[str, Spy]:
    return served_records[0], served_records[1]


@pytest.fixture(scope="module")
def plain_records() -> Iterator[Served]:
    records = Records()
    app, _ = build(records)
    with serve_in_thread(app, http="httptools") as url:
        yield Served(url, records, [])


@pytest.fixture(scope="module")
def plain(plain_records: Served) -> str:
    return plain_records.url


@pytest.fixture(scope="module")
def documented() -> Iterator[Served]:
    records = Records()
    app, _ = build(records)
    router = ThroughRouter(app)
    with serve_in_thread(router, http="httptools") as url:
        yield Served(url, records, router.routes)


@pytest.fixture
def spy(served: tuple[str, Spy]) -> Spy:
    served[1].asgi_calls = served[1].fast_calls = 0
    return served[1]


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def request(
    path: str,
    body: bytes | None = None,
    *,
    method: str = "POST",
    version: str = "1.1",
    headers: str = "",
) -> bytes:
    if "authorization:" not in headers.lower():
        headers += "Authorization: Bearer good\r\n"
    head = f"{method} {path} HTTP/{version}\r\nHost: test\r\n{headers}"
    if body is None:
        return (head + "\r\n").encode()
    if "content-type" not in headers.lower():
        head += "Content-Type: application/json\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class Reader:
    """Reads HTTP/1.1 responses with a Content-Length off one socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("closed before a response")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"header {name} twice"
            headers[name.lower()] = value.strip()
        size = int(headers.get("content-length", "0"))
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return status, headers, body

    def raw_response(self) -> tuple[bytes, bytes]:
        """The next response as it came: its head (no blank line) and its body."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise ConnectionError("closed before a response")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        size = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                size = int(value)
        while len(self.buffer) < size:
            if not self._fill():
                raise ConnectionError("closed inside a body")
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return head, body

    def closed(self) -> bool:
        """True when the server closed the connection (and sent nothing more)."""
        return not self.buffer and not self._fill()


def one(url: str, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(url) as sock:
        sock.sendall(raw)
        return Reader(sock).response()


def test_one_input_predicts_skip_the_asgi_path_and_batches_do_not(
    served: tuple[str, Spy], spy: Spy
) -> None:
    url = served[0]
    with connect(url) as sock:
        reader = Reader(sock)
        sock.sendall(request("/v1/models/double/predict", b'{"x": 2}'))
        assert reader.response()[2] == b'{"y":4.0}'
        sock.sendall(request("/v1/models/summer/predict", b'{"values": [1, 2]}'))
        assert json.loads(reader.response()[2]) == {"total": 3.0, "count": 2}
        sock.sendall(request("/v1/models/double/predict/batch", b'{"inputs": [{"x": 1}]}'))
        assert json.loads(reader.response()[2])["outputs"] == [{"y": 2.0}]
    assert (spy.fast_calls, spy.asgi_calls) == (2, 1)


def test_keep_alive_serves_predicts_and_other_routes_on_one_connection(
    served: tuple[str, Spy], spy: Spy
) -> None:
    with connect(served[0]) as sock:
        reader = Reader(sock)
        for i in range(20):
            sock.sendall(request("/v1/models/double/predict", f'{{"x": {i}}}'.encode()))
            status, headers, body = reader.response()
            assert (status, json.loads(body)) == (200, {"y": 2.0 * i})
            assert headers["x-model-version"] and headers["date"]
            assert "connection" not in headers
            sock.sendall(request("/livez", method="GET"))
            assert reader.response()[0] == 200
    assert spy.fast_calls == 20


def test_pipelined_requests_are_answered_in_order(served: tuple[str, Spy], spy: Spy) -> None:
    requests = [
        request("/v1/models/sleepy/predict", b'{"seconds": 0.2}'),
        request("/v1/models/double/predict", b'{"x": 1}'),
        request("/v1/models", method="GET"),
        request("/v1/models/double/predict", b'{"x": "no"}'),
        request("/v1/models/summer/predict", b'{"values": [5]}'),
        request("/v1/models/double/predict", b'{"x": 3}'),
    ]
    with connect(served[0]) as sock:
        sock.sendall(b"".join(requests))
        reader = Reader(sock)
        answers = [reader.response() for _ in requests]
    assert [a[0] for a in answers] == [200, 200, 200, 422, 200, 200]
    assert json.loads(answers[0][2]) == {"slept": 0.2}
    assert json.loads(answers[1][2]) == {"y": 2.0}
    assert json.loads(answers[4][2]) == {"total": 5.0, "count": 1}
    assert json.loads(answers[5][2]) == {"y": 6.0}
    ids = [a[1]["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids)


def test_a_long_pipeline_behind_a_slow_request_is_answered_in_order(
    served: tuple[str, Spy], spy: Spy
) -> None:
    # The queued requests are started one by one as each answer completes; answered
    # synchronously, each would start the next from inside the last one's completion.
    count = 2000
    requests = [request("/v1/models/sleepy/predict", b'{"seconds": 0.1}')]
    requests += [
        request("/v1/models/double/predict", f'{{"x": {i}}}'.encode()) for i in range(count)
    ]
    with connect(served[0]) as sock:
        sock.sendall(b"".join(requests))
        reader = Reader(sock)
        answers = [reader.response() for _ in requests]
    assert all(a[0] == 200 for a in answers)
    assert [json.loads(a[2])["y"] for a in answers[1:]] == [2.0 * i for i in range(count)]


def test_a_body_that_arrives_later_and_in_pieces_is_awaited(
    served: tuple[str, Spy], spy: Spy
) -> None:
    raw = request("/v1/models/double/predict", b'{"x":        21}')
    head, _, body = raw.partition(b"\r\n\r\n")
    with connect(served[0]) as sock:
        sock.sendall(head + b"\r\n\r\n")
        time.sleep(0.1)
        sock.sendall(body[:5])
        time.sleep(0.1)
        sock.sendall(body[5:])
        status, _, answer = Reader(sock).response()
    assert (status, answer) == (200, b'{"y":42.0}')
    assert (spy.fast_calls, spy.asgi_calls) == (1, 0)


def test_expect_100_continue_and_chunked_bodies_take_the_asgi_path(
    served: tuple[str, Spy], spy: Spy
) -> None:
    body = b'{"x": 5}'
    with connect(served[0]) as sock:
        reader = Reader(sock)
        sock.sendall(
            request("/v1/models/double/predict", body, headers="Expect: 100-continue\r\n").split(
                b"\r\n\r\n"
            )[0]
            + b"\r\n\r\n"
        )
        assert reader.response()[0] == 100
        sock.sendall(body)
        assert reader.response()[2] == b'{"y":10.0}'
        sock.sendall(
            b"POST /v1/models/double/predict HTTP/1.1\r\nHost: t\r\n"
            b"Authorization: Bearer good\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4\r\n{"x"\r\n4\r\n: 6}\r\n0\r\n\r\n'
        )
        assert reader.response()[2] == b'{"y":12.0}'
    assert (spy.fast_calls, spy.asgi_calls) == (0, 2)


def test_a_body_beyond_the_read_buffer_takes_the_asgi_path(
    served: tuple[str, Spy], spy: Spy
) -> None:
    body = b'{"x": 1}' + b" " * 100_000
    status, _, answer = one(served[0], request("/v1/models/double/predict", body))
    assert (status, answer) == (200, b'{"y":2.0}')
    assert (spy.fast_calls, spy.asgi_calls) == (0, 1)


@pytest.mark.parametrize(("version", "headers"), [("1.1", "Connection: close\r\n"), ("1.0", "")])
def test_connection_close_and_http_1_0_close_after_the_answer(
    served: tuple[str, Spy], spy: Spy, version: str, headers: str
) -> None:
    for model, body, expected in [
        ("double", b'{"x": 1}', {"y": 2.0}),
        ("sleepy", b'{"seconds": 0.05}', {"slept": 0.05}),
    ]:
        with connect(served[0]) as sock:
            raw = request(f"/v1/models/{model}/predict", body, version=version, headers=headers)
            sock.sendall(raw)
            reader = Reader(sock)
            status, answer_headers, answer = reader.response()
            assert (status, json.loads(answer)) == (200, expected)
            assert answer_headers["connection"] == "close"
            assert reader.closed()
    assert spy.fast_calls == 2


def test_a_client_gone_before_its_batch_finishes_costs_nothing_else(
    served: tuple[str, Spy], spy: Spy
) -> None:
    with connect(served[0]) as sock:
        sock.sendall(request("/v1/models/sleepy/predict", b'{"seconds": 0.3}'))
    with connect(served[0]) as sock:
        # Headers only: the held request dies with its connection.
        sock.sendall(request("/v1/models/double/predict", b'{"x": 1}')[:-4])
    time.sleep(0.5)
    status, _, answer = one(served[0], request("/v1/models/double/predict", b'{"x": 4}'))
    assert (status, answer) == (200, b'{"y":8.0}')


def test_a_failure_inside_the_fast_path_falls_back_to_the_asgi_path(
    served: tuple[str, Spy], spy: Spy, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> bool:
        raise RuntimeError("a bug")

    monkeypatch.setattr(spy.endpoint, "serve_now", broken)
    status, _, answer = one(served[0], request("/v1/models/double/predict", b'{"x": 3}'))
    assert (status, answer) == (200, b'{"y":6.0}')
    assert spy.asgi_calls == 1


JSON = "Content-Type: application/json\r\n"
OCTETS = "Content-Type: application/octet-stream\r\n"
MANY_HEADERS = "".join(f"X-Filler-{i}: {i}\r\n" for i in range(101))

CORPUS = [
    ("/v1/models/double/predict", b'{"x": 1.5}', ""),
    ("/v1/models/double/predict", b'{"x": "1.5"}', ""),
    ("/v1/models/double/predict", b'{"x": 1, "x": 2}', ""),
    ("/v1/models/double/predict", b'{"x": 1', ""),
    ("/v1/models/double/predict", b'{"x": "\\u0000"}', ""),
    ("/v1/models/double/predict", b"", ""),
    ("/v1/models/double/predict", b'{"x": 1}', "Content-Type: text/plain\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "Content-Type: application/problem+json\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "X-Request-ID: mine-1\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "X-Request-ID: a b<c>\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', MANY_HEADERS),
    ("/v1/models/double/predict", b'{"x": 1}', "Authorization: Basic abc\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "Authorization: Bearer nope\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "Authorization: Bearer later\r\n"),
    ("/v1/models/double/predict?api_key=ms_secret", b'{"x": 1}', ""),
    ("/v1/models/nope/predict", b'{"x": 1}', ""),
    ("/v1/models/nope/predict", b'{"x": 1}', "Authorization: Basic abc\r\n"),
    ("/v1/models/double/versions/9/predict", b'{"x": 1}', ""),
    ("/v1/models/double/versions/1/predict", b'{"x": 1}', ""),
    ("/v1/models/sleepy/predict", b'{"seconds": 0.01}', ""),
    ("/v1/models/summer/predict", b'{"values": [-1]}', ""),
    ("/v1/models/summer/predict", b'{"values": []}', ""),
    ("/v1/models/double/predict", b'{"x": 1}' + b" " * (LIMIT + 1 - 8), ""),
    ("/v1/models/checksum/predict", bytes(range(256)), OCTETS),
    ("/v1/models/checksum/predict", b"", OCTETS),
    ("/v1/models/double/predict", b"\x01\x02", OCTETS),
    ("/v1/models/double/predict", b"\x1f\x8b\x08\x00", "Content-Encoding: gzip\r\n"),
    ("/v1/models/checksum/predict", b"\x1f\x8b\x08\x00", OCTETS + "Content-Encoding: br\r\n"),
    ("/v1/models/double/predict", b'{"x": 1}', "Content-Encoding: identity\r\n"),
    ("/v1/models/double/predict/batch", b'{"inputs": [{"x": 1}, {"x": 2}]}', ""),
    ("/v1/models/double/versions/1/predict/batch", b'{"inputs": [{"x": 3}]}', ""),
    ("/v1/models/double/predict/batch", b'{"inputs": []}', ""),
    ("/v1/models/double/predict/batch", b'{"inputs": [{"x": 1}, {"y": 2}]}', ""),
    ("/v1/models/double/predict/batch", b'[{"x": 1}]', ""),
    ("/v1/models/summer/predict/batch", b'{"inputs": [{"values": [1]}, {"values": [-1]}]}', ""),
    ("/v1/models/checksum/predict/batch", b"ab", OCTETS),
    ("/v1/models/nope/predict/batch", b'{"inputs": [{"x": 1}]}', JSON),
]


def comparable(record: RequestRecord) -> tuple[Any, ...]:
    """An access record less what differs between any two requests (time, generated id)."""
    return (
        record.method,
        record.route,
        record.status,
        record.principal,
        record.model,
        record.version,
        record.error_code,
        record.trace_id,
    )


@pytest.mark.parametrize(("path", "body", "headers"), CORPUS)
def test_every_way_in_gives_the_same_answer_and_access_record(
    served_records: tuple[str, Spy, Records],
    spy: Spy,
    plain_records: Served,
    documented: Served,
    path: str,
    body: bytes,
    headers: str,
) -> None:
    raw = request(path, body, headers=headers)
    answers: list[tuple[bytes, bytes]] = []
    records: list[RequestRecord] = []
    url, _, fast_records = served_records
    for target, seen in (
        (url, fast_records),
        (plain_records.url, plain_records.records),
        (documented.url, documented.records),
    ):
        before = len(seen.records)
        head, payload, request_id = answer_of(target, raw)
        answers.append((head, payload))
        record = seen.next(before)
        assert record.request_id == request_id
        records.append(record)
    # Every one-input request took the task-free path but the body beyond uvicorn's buffer
    # and the credential that needs a lookup.
    held = len(body) <= MAX_HELD_BODY and "/batch" not in path and "Bearer later" not in headers
    assert (spy.fast_calls, spy.asgi_calls) == ((1, 0) if held else (0, 1))
    assert answers[0] == answers[1] == answers[2]
    assert comparable(records[0]) == comparable(records[1]) == comparable(records[2])
    if "mine-1" in headers:
        assert {r.request_id for r in records} == {"mine-1"}


def answer_of(url: str, raw: bytes) -> tuple[bytes, bytes, str]:
    """One answer over a fresh connection: its head (status line and headers, without the date
    and with the request id written as <id>), its body (the request id likewise) and the
    request id."""
    with connect(url) as sock:
        sock.sendall(raw)
        reader = Reader(sock)
        head, body = reader.raw_response()
    status_line, _, rest = head.partition(b"\r\n")
    kept: list[bytes] = [status_line]
    request_id = b""
    for line in rest.split(b"\r\n"):
        name, _, value = line.partition(b": ")
        if name == b"date":
            continue
        if name == b"x-request-id":
            request_id, line = value, b"x-request-id: <id>"
        kept.append(line)
    payload = body.replace(request_id, b"<id>") if request_id else body
    return b"\r\n".join(kept), payload, request_id.decode()


def test_the_documentation_routes_serve_what_they_document(documented: Served) -> None:
    # The model's own documented route (with its schemas), and the generic one for a name
    # that is not served: both run the pipeline's adapter, not FastAPI's handler.
    for path, expected in [
        ("/v1/models/double/predict", "/v1/models/double/predict"),
        ("/v1/models/nope/predict", "/v1/models/{name}/predict"),
    ]:
        one(documented.url, request(path, b'{"x": 4}'))
        route = documented.routes[-1]
        assert isinstance(route, PredictRoute)
        assert route.path == expected


def test_the_protocol_class_finds_the_app_behind_wrappers() -> None:
    app, _ = build()

    class Wrapper:
        def __init__(self, inner: Any) -> None:
            self.app = inner

    assert find_fast_app(Wrapper(Wrapper(app))) is app
    assert find_fast_app(Wrapper(object())) is None
    assert _declared_length([(b"content-length", b"12")]) == 12
    assert _declared_length([(b"content-length", b"x")]) == -1
    assert _declared_length([(b"content-length", b"3"), (b"transfer-encoding", b"chunked")]) == -1
    assert _declared_length([]) == -1


def test_the_cli_uses_the_protocol_even_with_the_fast_path_off() -> None:
    # The protocol also holds the header limits, read timeouts and connection cap
    # (tests/http/test_connections.py): switching the fast path off must not drop them.
    assert http_protocol(Settings()) is protocol_class()
    assert isinstance(protocol_class(), type)
    off = Settings(server=ServerConfig(fast_protocol=False))
    assert http_protocol(off) is protocol_class()
