"""The HTTP edge of a real server: body limits (V1, V2), content types (V14), framing (V15).

The server runs with a 64 KiB body limit so that over-limit bodies are cheap to send.
"""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.probes import assert_serving, raw_exchange, send_chunked
from tests.e2e.server import ServerProcess, launch

pytestmark = pytest.mark.e2e

LIMIT = 64 * 1024
PREDICT = "/v1/models/echo/predict"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with launch(
        tmp_path_factory.mktemp("http-edge"), env={"MODELSERVE_HTTP__MAX_BODY_BYTES": str(LIMIT)}
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpx.Client:
    return server.client()


def padded_body(size: int) -> bytes:
    """A valid echo request of exactly `size` bytes (JSON allows trailing whitespace)."""
    body = b'{"values": [1.0, 2.0]}'
    return body + b" " * (size - len(body))


def post_head(path: str, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


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


# -- V1: declared length over the limit --------------------------------------------------------


@pytest.mark.parametrize("path", [PREDICT, "/v1/models/echo/predict/batch", "/v1/models"])
def test_v1_declared_length_over_limit_is_refused_before_the_body_is_sent(
    server: ServerProcess, client: httpx.Client, path: str
) -> None:
    # Only the head goes out: a 413 can only come back if the server did not wait for the body.
    response = raw_exchange(
        server.address, post_head(path, f"Content-Length: {10 * MIB}\r\n"), timeout_s=5.0
    )
    assert response.status == 413
    assert response.closes
    assert json.loads(response.body)["error"]["code"] == "payload_too_large"
    assert_serving(client)


def test_v1_body_at_the_limit_is_served_and_one_byte_more_is_not(
    client: httpx.Client,
) -> None:
    at_limit = client.post(PREDICT, content=padded_body(LIMIT))
    assert at_limit.status_code == 200, at_limit.text
    assert at_limit.json()["total"] == 3.0
    over = client.post(PREDICT, content=padded_body(LIMIT + 1))
    assert over.status_code == 413
    assert str(LIMIT) in over.json()["error"]["message"]
    assert_serving(client)


# -- V2: chunked bodies without Content-Length -------------------------------------------------


def test_v2_chunked_body_over_limit_gets_413(server: ServerProcess, client: httpx.Client) -> None:
    chunks = [b" " * 8192] * 64  # 512 KiB offered, 8x the limit
    result = send_chunked(server.address, PREDICT, chunks, pause_s=0.002)
    assert result.response.status == 413
    assert json.loads(result.response.body)["error"]["code"] == "payload_too_large"
    # Refused as the running count passed the limit, not after the whole body.
    assert result.sent_bytes < LIMIT + 4 * 8192
    assert_serving(client)


def test_v2_slow_drip_over_limit_is_refused_once_it_passes_the_limit(
    server: ServerProcess, client: httpx.Client
) -> None:
    chunks = [b" " * 4096] * 40  # 160 KiB at 4 KiB every 10 ms
    result = send_chunked(server.address, PREDICT, chunks, pause_s=0.01)
    assert result.response.status == 413
    assert LIMIT < result.sent_bytes <= LIMIT + 2 * 4096
    assert_serving(client)


def test_v2_slow_drip_under_limit_is_assembled_and_served(
    server: ServerProcess, client: httpx.Client
) -> None:
    body = json.dumps({"values": [float(i) for i in range(200)]}).encode()
    chunks = [body[i : i + 97] for i in range(0, len(body), 97)]
    result = send_chunked(server.address, PREDICT, chunks, pause_s=0.005)
    assert result.response.status == 200, result.response.body
    assert json.loads(result.response.body)["total"] == sum(range(200))
    assert_serving(client)


def test_v2_rss_stays_flat_over_100_refused_chunked_uploads(
    server: ServerProcess, client: httpx.Client
) -> None:
    chunks = [b"[" * 8192] * 16

    def refuse(count: int) -> None:
        for _ in range(count):
            result = send_chunked(server.address, PREDICT, chunks, pause_s=0.001)
            assert result.response.status == 413

    refuse(20)  # warm-up: allocator arenas and buffers reach their steady size
    before = server.rss_bytes()
    refuse(100)
    growth = server.rss_bytes() - before
    print(f"V2 RSS growth over 100 refused chunked uploads: {growth / 1024:.0f} KiB")
    assert growth < MIB
    assert_serving(client)


# -- V14: content types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
    ],
)
def test_v14_non_json_content_types_get_415(client: httpx.Client, content_type: str) -> None:
    response = client.post(
        PREDICT, content=b'{"values": [1.0]}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert_serving(client)


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/vnd+json"]
)
def test_v14_json_content_types_are_served(client: httpx.Client, content_type: str) -> None:
    response = client.post(
        PREDICT, content=b'{"values": [1.0]}', headers={"content-type": content_type}
    )
    assert response.status_code == 200, response.text


def test_v14_gzip_body_is_not_decompressed(client: httpx.Client) -> None:
    # Bodies are never inflated, so a gzip bomb cannot expand past the byte limit.
    bomb = gzip.compress(b'{"values": [' + b"1.0, " * 2_000_000 + b"1.0]}")
    assert len(bomb) < LIMIT
    response = client.post(
        PREDICT,
        content=bomb,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert response.status_code in (400, 415)
    assert_serving(client)


# -- V15: HTTP framing and methods (parsed by httptools, answered by modelserve's protocol) ------


@pytest.mark.parametrize(
    ("name", "request_bytes"),
    [
        (
            "content-length and transfer-encoding",
            post_head(PREDICT, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")
            + b"0\r\n\r\n",
        ),
        (
            "two different content-lengths",
            post_head(PREDICT, "Content-Length: 16\r\nContent-Length: 17\r\n")
            + b'{"values":[1.0]}',
        ),
        ("non-numeric content-length", post_head(PREDICT, "Content-Length: abc\r\n")),
        ("negative content-length", post_head(PREDICT, "Content-Length: -1\r\n")),
        ("bare CR in a header value", b"GET /livez HTTP/1.1\r\nHost: e2e\r\nX-A: a\rb\r\n\r\n"),
        ("garbage request line", b"GARBAGE\r\n\r\n"),
        ("invalid UTF-8 in the path", b"GET /livez/\xff\xfe HTTP/1.1\r\nHost: e2e\r\n\r\n"),
    ],
)
def test_v15_malformed_framing_gets_400(
    server: ServerProcess, client: httpx.Client, name: str, request_bytes: bytes
) -> None:
    response = raw_exchange(server.address, request_bytes)
    assert response.status == 400, name
    # The project's error body, not uvicorn's plain "Invalid HTTP request received."
    assert response.headers["content-type"] == "application/json", name
    error = json.loads(response.body)["error"]
    assert error["code"] == "malformed_request", name
    assert set(error) == {"code", "message", "details", "request_id"}
    assert_serving(client)


def test_v15_a_head_over_32_kib_is_refused_with_431(
    server: ServerProcess, client: httpx.Client
) -> None:
    head = b"GET /livez HTTP/1.1\r\nHost: e2e\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n"
    response = raw_exchange(server.address, head, timeout_s=10.0)
    assert response.status == 431
    assert json.loads(response.body)["error"]["code"] == "headers_too_large"
    assert_serving(client)


def test_v15_a_16_mib_header_is_cut_not_read(server: ServerProcess, client: httpx.Client) -> None:
    # The server stops reading at the default 32 KiB limit (plus one more head's worth) and
    # closes: the client cannot stream the whole 16 MiB, which uvicorn's parser alone buffered.
    with socket.create_connection(server.address, timeout=10) as sock:
        head = b"GET /livez HTTP/1.1\r\nHost: e2e\r\nX-Huge: "
        assert stream_until_cut(sock, head, 16 * MIB) < 16 * MIB
    assert_serving(client)


@pytest.mark.parametrize("path", ["/livez", PREDICT, "/v1/models"])
def test_v15_trace_is_not_supported(client: httpx.Client, path: str) -> None:
    response = client.request("TRACE", path)
    assert response.status_code == 405
    assert "TRACE" not in response.headers.get("allow", "")
    assert_serving(client)


def test_v15_a_thousand_headers_get_431(server: ServerProcess, client: httpx.Client) -> None:
    # uvicorn's parser has no header-count cap, so modelserve answers 431 past
    # MODELSERVE_HTTP__MAX_HEADERS (default 100), on every route.
    headers = b"".join(b"X-Filler-%d: v\r\n" % i for i in range(1000))
    for request_line in (b"GET /livez HTTP/1.1", b"POST /v1/models/echo/predict HTTP/1.1"):
        response = raw_exchange(
            server.address,
            request_line + b"\r\nHost: e2e\r\nContent-Length: 0\r\n" + headers + b"\r\n",
        )
        assert response.status == 431
    assert_serving(client)


def test_server_log_has_no_traceback(server: ServerProcess, client: httpx.Client) -> None:
    # Runs last in this module: nothing above may have made the server log an unhandled error.
    assert_serving(client)
    assert "Traceback" not in server.stderr_text()
