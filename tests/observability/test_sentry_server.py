"""`modelserve serve` with MODELSERVE_SENTRY_DSN pointing at a local fake Sentry (S8).

The real SDK, the real HTTP transport and a real server process: the server starts, the error
event reaches the fake over HTTP, and no credential is in what was sent.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.server import launch
from tests.observability.sentry_services import API_KEY, DB_PASSWORD

pytestmark = pytest.mark.e2e

SERVICES = Path(__file__).with_name("sentry_services.py")
PUBLIC_KEY = "0123456789abcdef0123456789abcdef"
WAIT_S = 15.0


class FakeSentry(ThreadingHTTPServer):
    """Accepts envelopes on /api/<project>/envelope/ and keeps their decoded bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: list[str] = []
        self.auth_headers: list[str] = []

    @property
    def dsn(self) -> str:
        return f"http://{PUBLIC_KEY}@127.0.0.1:{self.server_address[1]}/1"

    def text(self) -> str:
        return "\n".join(self.bodies)


class _Handler(BaseHTTPRequestHandler):
    server: FakeSentry

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding == "br":
            # sentry-sdk sends brotli when the module is importable (the lock has it through
            # the protocol test clients; a server installed without them sends gzip).
            import brotli  # type: ignore[import-untyped]

            raw = brotli.decompress(raw)
        elif encoding:
            raise AssertionError(f"unexpected encoding {encoding!r}")
        self.server.bodies.append(raw.decode("utf-8", "replace"))
        self.server.auth_headers.append(self.headers.get("X-Sentry-Auth", ""))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def fake_sentry() -> Iterator[FakeSentry]:
    server = FakeSentry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_a_server_with_a_dsn_starts_and_sends_scrubbed_events(
    tmp_path: Path, fake_sentry: FakeSentry
) -> None:
    env = {"MODELSERVE_SENTRY_DSN": fake_sentry.dsn}
    with launch(tmp_path, target=SERVICES, env=env, wait_for="settled") as server:
        models = server.client().get("/v1/models").json()["data"]
        assert [m["status"] for m in models] == ["failed"]
        deadline = time.monotonic() + WAIT_S
        while "failed to load" not in fake_sentry.text() and time.monotonic() < deadline:
            time.sleep(0.1)
    text = fake_sentry.text()
    assert "failed to load" in text, "no event reached the fake Sentry"
    assert '"type":"event"' in text.replace(" ", "")
    assert all(PUBLIC_KEY in header for header in fake_sentry.auth_headers)
    for secret in (DB_PASSWORD, API_KEY):
        assert secret not in text
