"""Building an app with auth wired the way `modelserve serve` wires it, and test helpers."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from modelserve import Settings
from modelserve.auth import AuthSystem
from modelserve.auth.audit import RequestMeta
from modelserve.config import AuthConfig
from modelserve.db import migrate
from modelserve.db.engine import Database
from modelserve.http.app import build_app as build_core_app
from modelserve.http.auth_routes import build_auth_router
from modelserve.http.exposure import ExposureMiddleware, cors_middleware
from modelserve.schemas.auth import UserCreate

T = TypeVar("T")

SECRET = "test-secret-0123456789abcdefghijklmnopqrstuvwxyz"
PASSWORD = "correct horse battery staple"
# Argon2 at its lowest cost: tests care about behaviour, not hashing strength.
FAST_HASHING: dict[str, Any] = {"argon2_memory_kib": 64, "argon2_time_cost": 1}


def auth_config(**overrides: Any) -> AuthConfig:
    """Test auth settings: cheap hashing, a fixed secret, no dev bootstrap."""
    values: dict[str, Any] = {**FAST_HASHING, "jwt_secret": SECRET, "dev_bootstrap": False}
    values.update(overrides)
    return AuthConfig(**values)


def settings_for(database_url: str, data_dir: Any, **auth: Any) -> Settings:
    """Settings on `database_url` with test auth settings."""
    return Settings(database_url=database_url, data_dir=data_dir, auth=auth_config(**auth))


@dataclass
class AuthClient:
    """A TestClient plus the AuthSystem behind it, and a way to run coroutines on its loop."""

    client: TestClient
    auth: AuthSystem
    app: FastAPI

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `await fn(*args, **kwargs)` on the app's event loop (where its database lives)."""
        portal = self.client.portal
        assert portal is not None
        return portal.call(functools.partial(fn, *args, **kwargs))

    def new_user(self, role: str = "member", password: str = PASSWORD) -> tuple[str, str]:
        """Create a user with a unique name; (user id, username)."""
        name = f"u{uuid.uuid4().hex[:12]}"
        user = self.call(
            self.auth.accounts.create_user,
            UserCreate(username=name, password=password, role=role),  # type: ignore[arg-type]
            actor=None,
            meta=RequestMeta(),
        )
        return user.id, name

    def login(self, username: str, password: str = PASSWORD, **headers: str) -> dict[str, Any]:
        """Log in; the token response (asserts 200)."""
        response = self.client.post(
            "/v1/auth/token", data={"username": username, "password": password}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def user_headers(self, role: str = "member") -> tuple[str, dict[str, str]]:
        """A new user and the Authorization header of a fresh login session."""
        user_id, name = self.new_user(role)
        token = self.login(name)["access_token"]
        return user_id, {"authorization": f"Bearer {token}"}

    def new_key(
        self, headers: dict[str, str], scopes: Sequence[str], **extra: Any
    ) -> dict[str, Any]:
        """Create an API key through the API; the creation response."""
        response = self.client.post(
            "/v1/keys", json={"name": "test", "scopes": list(scopes), **extra}, headers=headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def build_app(settings: Settings, services: Sequence[Any] = (), **auth_kwargs: Any) -> FastAPI:
    """The app as a server process builds it with auth on (the integration the lead wires)."""
    database = Database(settings.resolved_database_url())
    auth = AuthSystem(settings, database, announce_to=None, **auth_kwargs)

    async def start(_app: FastAPI) -> None:
        await auth.start()

    async def stop(_app: FastAPI) -> None:
        await auth.close()

    app = build_core_app(
        settings,
        services,
        guard=auth.guard,
        database=database,
        on_startup=[start],
        on_shutdown=[stop],
    )
    app.state.auth = auth
    app.include_router(build_auth_router())
    app.add_middleware(
        ExposureMiddleware,
        docs=settings.auth.docs_exposure,
        metrics=settings.auth.metrics_exposure,
        authenticate=auth.guard.authenticate,
    )
    return app


@contextmanager
def serving_auth(
    settings: Settings, services: Sequence[Any] = (), *, peer: tuple[str, int] = ("testclient", 1)
) -> Iterator[AuthClient]:
    """An in-process client of an app with auth, its schema migrated, models ready; requests
    come from the TCP `peer`."""
    migrate.upgrade(settings.resolved_database_url())
    app = build_app(settings, services)
    asgi = cors_middleware(app, settings.auth)
    with TestClient(asgi, raise_server_exceptions=False, client=peer) as client:  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        runtime = app.state.runtime
        while time.monotonic() < deadline and any(d.status.value == "loading" for d in runtime):
            time.sleep(0.01)
        yield AuthClient(client, app.state.auth, app)


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute, list[Any]]]:
    """(full path, route, dependencies added where its router was included) for every route,
    through routers included in routers (FastAPI resolves those lazily)."""
    found: list[tuple[str, APIRoute, list[Any]]] = []

    def walk(routes: Sequence[Any], prefix: str, extra: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                found.append((prefix + route.path, route, extra))
            elif hasattr(route, "original_router"):
                context = route.include_context
                walk(
                    route.original_router.routes,
                    prefix + context.prefix,
                    extra + list(context.dependencies),
                )

    walk(app.routes, "", [])
    return found
