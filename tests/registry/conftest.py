"""Registry apps on SQLite and PostgreSQL, and helpers to push versions through the API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from modelserve import Settings, create_app
from modelserve.config import RegistryConfig
from modelserve.db import migrate
from modelserve.registry.deployer import RegistryDeployer
from modelserve.runtime.manager import ModelRuntime

SERVICES = Path(__file__).with_name("services.py")
SCALED = "tests.registry.services:Scaled"
BROKEN = "tests.registry.services:Broken"


def unique(prefix: str = "m") -> str:
    """A model name no other test uses (the PostgreSQL database is shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def reset_registry(url: str) -> None:
    """Empty the registry tables, so a served-alias left by another test is not deployed here."""
    migrate.upgrade(url)
    engine = create_engine(migrate.sync_url(url))
    try:
        with engine.begin() as connection:
            # Everything else hangs off models with ON DELETE CASCADE.
            connection.execute(text("DELETE FROM registry_models"))
    finally:
        engine.dispose()


@dataclass
class RegistryClient:
    """A TestClient of an app with the registry, and shortcuts for the common calls."""

    client: TestClient
    app: FastAPI

    @property
    def runtime(self) -> ModelRuntime:
        runtime: ModelRuntime = self.app.state.runtime
        return runtime

    @property
    def deployer(self) -> RegistryDeployer | None:
        deployer: RegistryDeployer | None = self.app.state.registry_deployer
        return deployer

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the app's event loop."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(lambda: coro)

    def upload(self, path: str, data: bytes, **params: str) -> dict[str, Any]:
        response = self.client.post(
            "/v1/registry/uploads", params={"path": path, **params}, content=data
        )
        assert response.status_code == 201, response.text
        file: dict[str, Any] = response.json()["files"][0]
        return file

    def push(
        self,
        name: str,
        *,
        scale: float = 1.0,
        service: str = SCALED,
        version: str | None = None,
        files: Sequence[dict[str, Any]] = (),
        **extra: Any,
    ) -> dict[str, Any]:
        """Register `name` if needed and create a version whose config.json holds `scale`."""
        self.client.post("/v1/registry/models", json={"name": name})
        config = self.upload("config.json", json.dumps({"scale": scale}).encode())
        refs = [{"path": "config.json", "sha256": config["sha256"]}]
        refs += [{"path": f["path"], "sha256": f["sha256"]} for f in files]
        body: dict[str, Any] = {"service": service, "files": refs, **extra}
        if version is not None:
            body["version"] = version
        response = self.client.post(f"/v1/registry/models/{name}/versions", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def promote(self, name: str, version: str, alias: str = "production") -> Any:
        return self.client.put(
            f"/v1/registry/models/{name}/aliases/{alias}", json={"version": version}
        )

    def predict(self, name: str, x: float, **headers: str) -> Any:
        return self.client.post(f"/v1/models/{name}/predict", json={"x": x}, headers=headers)


Factory = Callable[..., AbstractContextManager[RegistryClient]]


@pytest.fixture
def registry_app(database_url: str, tmp_path: Path) -> Factory:
    """Factory: `with registry_app(serve=True) as api:` an app serving the registry."""
    reset_registry(database_url)

    @contextmanager
    def make(
        *,
        serve: bool = True,
        services: Sequence[Any] = (),
        data_dir: Path | None = None,
        max_body_bytes: int = 4 * 1024 * 1024,
        **registry: Any,
    ) -> Iterator[RegistryClient]:
        settings = Settings(
            data_dir=data_dir or tmp_path,
            database_url=database_url,
            registry=RegistryConfig(**registry),
            server={"graceful_timeout_s": 5.0},  # type: ignore[arg-type]
            http={"max_body_bytes": max_body_bytes},  # type: ignore[arg-type]
        )
        app = create_app(settings, services, serve_registry=serve)
        with TestClient(app, raise_server_exceptions=False) as client:
            api = RegistryClient(client, app)
            if api.deployer is not None:
                api.call(api.deployer.synced.wait())
            yield api

    return make


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll until `condition()` holds; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s}s")
        time.sleep(0.02)
