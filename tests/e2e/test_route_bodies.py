"""Bodies on the FastAPI routes (issue "Hardening", finding 8): a chunked body past the cap is
413 with the JSON body, not the parser's 400; a compressed body is 415, never misread.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.probes import assert_serving, chunk_frame
from tests.e2e.server import ServerProcess, launch

pytestmark = pytest.mark.e2e

LIMIT = 256 * 1024
ROUTES = [
    ("/v1/auth/token", "application/x-www-form-urlencoded"),
    ("/v1/keys", "application/json"),
    ("/v1/registry/models", "application/json"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"MODELSERVE_AUTH__ENABLED": "true", "MODELSERVE_HTTP__MAX_BODY_BYTES": str(LIMIT)}
    with launch(tmp_path_factory.mktemp("bodies"), env=env) as running:
        yield running


def _chunked_upload(server: ServerProcess, path: str, content_type: str, total: int) -> bytes:
    """POST `total` bytes chunked; stop writing once the server answers; return its answer."""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = chunk_frame(b"a" * 65536)
        try:
            for _ in range(total // 65536):
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: read what it said
        answer = b""
        while b"}}" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    return answer


@pytest.mark.parametrize(("path", "content_type"), ROUTES)
def test_a_chunked_body_past_the_cap_is_413(
    server: ServerProcess, path: str, content_type: str
) -> None:
    answer = _chunked_upload(server, path, content_type, 50 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"code":"payload_too_large"' in answer
    assert_serving(server.client(headers=_dev_key(server)))


def test_an_urlencoded_form_over_a_mebibyte_is_413_not_the_parsers_400(
    tmp_path: Path,
) -> None:
    # With a large general cap, the form parser's own 1 MiB field limit would answer 400.
    env = {"MODELSERVE_AUTH__ENABLED": "true", "MODELSERVE_HTTP__MAX_BODY_BYTES": str(16 << 20)}
    with launch(tmp_path, env=env) as big:
        answer = _chunked_upload(
            big, "/v1/auth/token", "application/x-www-form-urlencoded", 4 * 1024 * 1024
        )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "GZIP"])
@pytest.mark.parametrize(("path", "content_type"), ROUTES)
def test_a_compressed_body_is_415(
    server: ServerProcess, path: str, content_type: str, encoding: str
) -> None:
    response = httpx.post(
        server.base_url + path,
        content=b"\x1f\x8b\x08\x00",
        headers={"content-type": content_type, "content-encoding": encoding},
    )
    assert response.status_code == 415, response.text
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_identity_encoding_is_plain(server: ServerProcess) -> None:
    response = httpx.post(
        server.base_url + "/v1/auth/token",
        data={"username": "nobody", "password": "wrong-password-1"},
        headers={"content-encoding": "identity"},
    )
    assert response.status_code == 401


def test_the_log_holds_no_traceback(server: ServerProcess) -> None:
    # The route told "the client went away" must end quietly, not as an unhandled error.
    assert "Traceback" not in server.stderr_text()


def _dev_key(server: ServerProcess) -> dict[str, str]:
    credentials = server.stderr_path.parent / ".modelserve" / "dev-credentials.json"
    key = json.loads(credentials.read_text())["api_key"]
    return {"authorization": f"Bearer {key}"}
