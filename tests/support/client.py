"""In-process ASGI client for an app, started with its lifespan and waited until ready."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient

from modelserve import Settings, create_app


@contextmanager
def serving(
    services: Sequence[Any], settings: Settings | None = None, *, wait: bool = True
) -> Iterator[TestClient]:
    """A TestClient for `create_app(settings, services)`, ready unless `wait=False`."""
    app = create_app(settings, services)
    with TestClient(app, raise_server_exceptions=False) as client:
        if wait:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                models = client.get("/v1/models").json()["data"]
                if all(m["status"] != "loading" for m in models):
                    break
                time.sleep(0.01)
        yield client
