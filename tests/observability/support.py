"""Build an app with observability wired the way `create_app` is meant to wire it.

This mirrors the integration handed to the lead (docs/observability.md, "Wiring"): the engine
observer factory, the request observers on the fast path and as ASGI middleware, the routes,
and the lifespan hooks.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelserve import Settings
from modelserve.http.access import AccessMiddleware
from modelserve.http.app import build_app
from modelserve.http.observability_routes import build_observability_router
from modelserve.observability import Observability
from modelserve.types import PredictGuard


def observed_app(
    settings: Settings,
    services: Sequence[Any],
    *,
    guard: PredictGuard | None = None,
    observability: Observability | None = None,
) -> tuple[FastAPI, Observability]:
    """The serving core (`build_app`) plus every observability hook."""
    obs = observability or Observability(settings)
    observers = obs.request_observers()

    async def start(app: FastAPI) -> None:
        await obs.start(runtime=app.state.runtime, database=app.state.database)

    async def stop(app: FastAPI) -> None:
        await obs.stop()

    app = build_app(
        settings,
        services,
        observer_factory=obs.observer_factory,
        guard=guard,
        observers=observers,
        on_startup=[start],
        on_shutdown=[stop],
    )
    app.state.observability = obs
    app.include_router(build_observability_router(obs))
    app.add_middleware(AccessMiddleware, observers=observers)
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
