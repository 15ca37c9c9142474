"""Apps for the observability tests: the product's own `create_app`, so the tests exercise the
wiring users get (engine observers, request observers on the fast path and the access
middleware, routes, lifespan hooks), not a copy of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
