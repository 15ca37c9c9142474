"""Client-side tools of the end-to-end tests: health check, raw HTTP, chunked senders, stats.

Raw sockets are for what an HTTP client library refuses to send (conflicting framing, bodies
that never arrive, slow drips); everything else goes through httpx.
"""

from __future__ import annotations

import asyncio
import math
import select
import selectors
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

LIVE_WITHIN_S = 1.0
HEAD_END = b"\r\n\r\n"


def assert_serving(client: httpx.Client) -> None:
    """The Triton-style tail of every bad-input test: live, and a normal predict works."""
    started = time.perf_counter()
    live = client.get("/livez", timeout=LIVE_WITHIN_S)
    assert live.status_code == 200, live.text
    assert time.perf_counter() - started < LIVE_WITHIN_S
    response = client.post("/v1/models/echo/predict", json={"values": [1.5, 2.5]})
    assert response.status_code == 200, response.text
    assert response.json() == {"values": [1.5, 2.5], "total": 4.0}


def model_stats(client: httpx.Client, name: str) -> dict[str, Any]:
    """The live counters of one model (`stats` of `GET /v1/models/{name}`)."""
    response = client.get(f"/v1/models/{name}")
    assert response.status_code == 200, response.text
    stats: dict[str, Any] = response.json()["stats"]
    return stats


async def wait_stats(
    client: httpx.AsyncClient, name: str, *, timeout_s: float = 10.0, **expected: int
) -> dict[str, Any]:
    """Poll a model's stats until every `expected` counter has its value; return them."""
    deadline = time.monotonic() + timeout_s
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = (await client.get(f"/v1/models/{name}")).json()["stats"]
        if all(stats[key] == value for key, value in expected.items()):
            return stats
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} stats never reached {expected}; last {stats}")


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was actually observed."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class RawResponse:
    """A response read off a socket."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


def _parse_head(data: bytes) -> tuple[int, dict[str, str], bytes] | None:
    """Status, headers and the bytes after the head, once the whole head has arrived."""
    if HEAD_END not in data:
        return None
    head, _, rest = data.partition(HEAD_END)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, rest


def read_response(sock: socket.socket) -> RawResponse:
    """Read one HTTP/1.1 response with a Content-Length body (all modelserve sends)."""
    data = b""
    parsed = None
    while parsed is None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a full response head: {data!r}")
        data += chunk
        parsed = _parse_head(data)
    status, headers, body = parsed
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return RawResponse(status, headers, body[:length])


def raw_burst(
    address: tuple[str, int], requests: Sequence[bytes], *, timeout_s: float = 10.0
) -> list[tuple[RawResponse, float]]:
    """Send every request at once on its own pre-opened connection; (response, latency) each.

    Connections are opened first and the requests then written back to back, so each latency
    is the server's time to answer while all of them compete, not the client's time to connect
    or to run an HTTP library (one Python client would otherwise dominate the figure).
    """
    socks = [socket.create_connection(address, timeout=timeout_s) for _ in requests]
    selector = selectors.DefaultSelector()
    buffers: dict[int, bytes] = {}
    sent_at: dict[int, float] = {}
    done: dict[int, tuple[RawResponse, float]] = {}
    try:
        for index, (sock, request) in enumerate(zip(socks, requests, strict=True)):
            sent_at[index] = time.perf_counter()
            sock.sendall(request)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
            buffers[index] = b""
        deadline = time.monotonic() + timeout_s
        while len(done) < len(socks) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                index = key.data
                chunk = key.fileobj.recv(65536)  # type: ignore[union-attr]
                buffers[index] += chunk
                parsed = _parse_head(buffers[index])
                if parsed is None and chunk:
                    continue
                if parsed is None:
                    raise ConnectionError(f"connection {index} closed without a response")
                status, headers, body = parsed
                if len(body) >= int(headers.get("content-length", "0")) or not chunk:
                    latency = time.perf_counter() - sent_at[index]
                    done[index] = (RawResponse(status, headers, body), latency)
                    selector.unregister(key.fileobj)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    if len(done) < len(socks):
        raise TimeoutError(f"{len(socks) - len(done)} of {len(socks)} requests got no answer")
    return [done[i] for i in range(len(socks))]


def post_json(path: str, body: bytes) -> bytes:
    """The bytes of one keep-alive JSON POST."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def raw_exchange(
    address: tuple[str, int], request: bytes, *, timeout_s: float = 5.0
) -> RawResponse:
    """Send bytes exactly as given on a new connection and read the response."""
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(request)
        return read_response(sock)


def chunk_frame(data: bytes) -> bytes:
    """One chunk of a `Transfer-Encoding: chunked` body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


@dataclass(frozen=True)
class ChunkedResult:
    """What the server answered to a chunked upload and how much it had been sent by then."""

    response: RawResponse
    sent_bytes: int


def send_chunked(
    address: tuple[str, int],
    path: str,
    chunks: Sequence[bytes],
    *,
    pause_s: float = 0.0,
    timeout_s: float = 10.0,
) -> ChunkedResult:
    """POST a chunked body without Content-Length, one chunk at a time.

    After each chunk it looks for an answer and stops sending once one arrives: a server that
    refuses mid-body answers early, and the client must not keep writing into a socket that
    the server is closing (the kernel would reset it and drop the answer).
    """
    head = (
        f"POST {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    sent = 0
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(head)
        answered = False
        for chunk in chunks:
            sock.sendall(chunk_frame(chunk))
            sent += len(chunk)
            readable, _, _ = select.select([sock], [], [], pause_s)
            if readable:
                answered = True
                break
        if not answered:
            sock.sendall(b"0\r\n\r\n")
        return ChunkedResult(read_response(sock), sent)
