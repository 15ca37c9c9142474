"""Apps for the observability tests: the product's own `create_app`, so the tests exercise the
wiring users get (engine observers, request observers on the fast path and the access
middleware, routes, lifespan hooks), not a copy of it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelserve import Settings, create_app
from modelserve.observability import Observability
from modelserve.types import RequestObserver


def observed_app(
    settings: Settings, services: Sequence[Any], *, observers: Sequence[RequestObserver] = ()
) -> tuple[FastAPI, Observability]:
    """`create_app(settings, services)` and its Observability; `observers` see every request."""
    app = create_app(settings, services, observers=observers)
    obs: Observability = app.state.observability
    return app, obs


def settings_for(tmp_path: Path, **observability: Any) -> Settings:
    """Dev-mode settings with a private data dir and auth off."""
    return Settings(
        data_dir=tmp_path,
        auth={"enabled": False},
        observability=observability,
    )


@contextmanager
def serving(
    settings: Settings, services: Sequence[Any], **kwargs: Any
) -> Iterator[tuple[TestClient, Observability]]:
    """A started TestClient whose models have loaded."""
    app, obs = observed_app(settings, services, **kwargs)
    with TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(m["status"] != "loading" for m in client.get("/v1/models").json()["data"]):
                break
            time.sleep(0.01)
        yield client, obs


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(app: FastAPI, **config: Any) -> Iterator[str]:
    """`app` under a real uvicorn on a free port, in a thread of this process, until ready;
    yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, log_config=None, lifespan="on", **config)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(15)
