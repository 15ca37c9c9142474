"""An in-process app with auth and the console, and a browser-like client for it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from modelserve import Settings, create_app
from modelserve.auth.audit import RequestMeta
from modelserve.auth.system import AuthSystem
from modelserve.config import ConsoleConfig
from modelserve.console import install_console
from modelserve.schemas.auth import UserCreate
from tests.auth.support import PASSWORD, auth_config

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(tmp_path: Path, **console: Any) -> Settings:
    """Settings on a fresh SQLite file, test auth (cheap hashing), the console on."""
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'console.db'}",
        data_dir=tmp_path,
        auth=auth_config(),
        console=ConsoleConfig(enabled=True, **console),
    )


def csrf_of(page: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(page)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


@dataclass
class ConsoleClient:
    """A TestClient on the app, and the app's AuthSystem."""

    client: TestClient
    app: FastAPI

    @property
    def auth(self) -> AuthSystem:
        auth: AuthSystem = self.app.state.auth
        return auth

    def new_user(self, role: str = "member", name: str | None = None) -> str:
        """A user with PASSWORD; their username."""
        username = name or f"u{uuid.uuid4().hex[:10]}"
        portal = self.client.portal
        assert portal is not None
        portal.call(
            lambda: self.auth.accounts.create_user(
                UserCreate(username=username, password=PASSWORD, role=role),  # type: ignore[arg-type]
                actor=None,
                meta=RequestMeta(),
            )
        )
        return username

    def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """Post the sign-in form as a browser would (its double-submit token included)."""
        form = self.client.get("/console/login")
        token = csrf_of(form.text)
        return self.client.post(
            "/console/login",
            data={"username": username, "password": password, "csrf_token": token},
            follow_redirects=False,
        )

    def signed_in(self, role: str = "member") -> str:
        """A new user, signed in (the client keeps the cookie); their username."""
        name = self.new_user(role)
        response = self.sign_in(name)
        assert response.status_code == 303, response.text
        return name

    def drain_audit(self) -> None:
        """Wait for audit events written in the background (refusals on hot paths)."""
        portal = self.client.portal
        assert portal is not None
        portal.call(self.auth.audit.drain)

    def csrf(self, path: str = "/console/keys") -> str:
        """The session's CSRF token, read from a page."""
        return csrf_of(self.client.get(path).text)


@contextmanager
def console_app(
    settings: Settings, services: Sequence[Any] = (), *, base_url: str = "http://testserver"
) -> Iterator[ConsoleClient]:
    """`create_app` + `install_console`, started, models ready."""
    app = create_app(settings, services)
    install_console(app, settings)
    with TestClient(app, raise_server_exceptions=False, base_url=base_url) as client:
        deadline = time.monotonic() + 30
        runtime = app.state.runtime
        while time.monotonic() < deadline and any(d.status.value == "loading" for d in runtime):
            time.sleep(0.01)
        yield ConsoleClient(client, app)
