"""S8 / S14: credentials sent every which way appear in no output at all.

A real server (uvicorn, in a thread) with auth on, JSON logs with uvicorn's own access log
switched on, tracing to memory and Sentry to a capturing transport. A member's API key, a JWT,
a password and Basic credentials are sent in headers, query strings and bodies, valid and not,
to the predict fast path and to FastAPI routes (a login with a wrong password and one with a
malformed body, an endpoint that fails with the Authorization value in its exception). Then
every sink is searched: structlog JSON lines, stdlib/uvicorn lines, Sentry events, exported
spans, the Prometheus exposition, and every response (status, headers, body).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI, Request
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from modelserve import Settings
from modelserve.auth.audit import RequestMeta
from modelserve.db import migrate
from modelserve.http.assembly import create_app
from modelserve.observability import sentry
from modelserve.observability.logging import configure_logging
from modelserve.schemas.auth import UserCreate
from tests.auth.support import FAST_HASHING, PASSWORD, SECRET
from tests.observability.conftest import CapturedLogs
from tests.observability.sentry_capture import FAKE_DSN, CaptureTransport
from tests.observability.services import Scorer
from tests.observability.support import serve_in_thread

pytestmark = pytest.mark.timeout(120)
PREDICT = "/v1/models/scorer/predict"


def leaky_app(settings: Settings) -> FastAPI:
    """The product app (observability as `create_app` wires it) plus an endpoint that fails
    carelessly, quoting the caller's credential."""
    app = create_app(settings, [Scorer])

    async def careless(request: Request) -> None:
        raise RuntimeError(f"downstream refused {request.headers.get('authorization')}")

    app.add_api_route("/v1/careless", careless, methods=["GET"])
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with inner(app_):
            app_.state.loop = asyncio.get_running_loop()  # for setting up users from the test
            yield

    app.router.lifespan_context = lifespan
    return app


@pytest.fixture
def logs() -> Iterator[CapturedLogs]:
    """JSON logs with uvicorn's own access lines too, configured before the app is built."""
    captured = CapturedLogs()
    configure_logging(fmt="json", level="info", stream=captured.stream, uvicorn_access=True)
    try:
        yield captured
    finally:
        configure_logging(fmt="console")


@pytest.fixture
def server(tmp_path: Path, logs: CapturedLogs) -> Iterator[tuple[str, FastAPI]]:
    settings = Settings(
        data_dir=tmp_path,
        auth={**FAST_HASHING, "enabled": True, "jwt_secret": SECRET, "dev_bootstrap": False},
    )
    migrate.upgrade(settings.resolved_database_url())
    app = leaky_app(settings)
    with serve_in_thread(app, access_log=True) as url:
        yield url, app


def credentials(url: str, app: FastAPI) -> dict[str, str]:
    """An admin and a member (with an API key), made through the app; their credentials."""

    async def make_users() -> None:
        for name, role in (("leak-admin", "admin"), ("leak-member", "member")):
            await app.state.auth.accounts.create_user(
                UserCreate(username=name, password=PASSWORD, role=role),  # type: ignore[arg-type]
                actor=None,
                meta=RequestMeta(),
            )

    asyncio.run_coroutine_threadsafe(make_users(), app.state.loop).result(30)
    with httpx.Client(base_url=url, timeout=10) as client:

        def login(name: str) -> str:
            form = {"username": name, "password": PASSWORD}
            token: str = client.post("/v1/auth/token", data=form).json()["access_token"]
            return token

        admin, member = login("leak-admin"), login("leak-member")
        created = client.post(
            "/v1/keys",
            json={"name": "leak", "scopes": ["predict:*"]},
            headers={"authorization": f"Bearer {member}"},
        )
        assert created.status_code == 201, created.text
    return {
        "api key": created.json()["key"],
        "member jwt": member,
        "admin jwt": admin,
        "password": PASSWORD,
        "basic credentials": base64.b64encode(f"leak-member:{PASSWORD}".encode()).decode(),
    }


class Responses:
    """Every response the test received, as text."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def status(self, response: httpx.Response) -> int:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.seen.append(f"{response.status_code}\n{headers}\n{response.text}")
        return response.status_code

    def text(self) -> str:
        return "\n".join(self.seen)


def send_everything(url: str, secret: dict[str, str], seen: Responses) -> str:
    """Every way of sending a credential; returns the metrics exposition."""
    key, jwt = secret["api key"], secret["member jwt"]
    good = {"authorization": f"Bearer {key}"}
    basic = {"authorization": f"Basic {secret['basic credentials']}"}
    body = {"x": [1.0]}
    with httpx.Client(base_url=url, timeout=10) as c:
        # The key in a header: valid on the fast path.
        assert seen.status(c.post(PREDICT, json=body, headers=good)) == 200
        # In a query string, in a body, as Basic credentials: refused (and still logged).
        assert seen.status(c.post(PREDICT, params={"api_key": key}, json=body)) == 401
        assert seen.status(c.get("/v1/models", params={"api_key": key})) == 401
        assert seen.status(c.get("/v1/models", params={"token": jwt}, headers=good)) == 401
        assert seen.status(c.post(PREDICT, json={**body, "api_key": key}, headers=good)) == 422
        assert seen.status(c.post(PREDICT, json=body, headers=basic)) == 401
        assert seen.status(c.get("/v1/models", headers=basic)) == 401
        # A JWT in a header: valid on a FastAPI route.
        assert seen.status(c.get("/v1/auth/me", headers={"authorization": f"Bearer {jwt}"})) == 200
        # Failing logins: a wrong password, and a malformed (JSON) body (S14).
        wrong = {"username": "leak-member", "password": secret["password"] + "!"}
        assert seen.status(c.post("/v1/auth/token", data=wrong)) == 401
        assert seen.status(c.post("/v1/auth/token", data={"password": secret["password"]})) == 422
        malformed = {"username": "x", "password": secret["password"]}
        assert seen.status(c.post("/v1/auth/token", json=malformed)) in (400, 422)
    with httpx.Client(base_url=url, timeout=10) as c:  # uvicorn drops a connection whose app raised
        # A handler that fails with the Authorization value in its exception message.
        assert seen.status(c.get("/v1/careless", headers=good)) == 500
    with httpx.Client(base_url=url, timeout=10) as c:
        # What Prometheus would read.
        admin = {"authorization": f"Bearer {secret['admin jwt']}"}
        scrape = c.get("/metrics", headers=admin)
        assert seen.status(scrape) == 200
        return scrape.text


def test_no_credential_reaches_any_sink(
    server: tuple[str, FastAPI], spans: InMemorySpanExporter, logs: CapturedLogs
) -> None:
    url, app = server
    transport = CaptureTransport()
    sentry.init_sentry(FAKE_DSN, environment="test", transport=transport)
    seen = Responses()
    try:
        secret = credentials(url, app)
        exposition = send_everything(url, secret, seen)
        time.sleep(0.5)  # the access log is written every 0.25 s
        sentry_sdk.flush()
        log_text = logs.text()
        sinks = {
            "logs": log_text,
            "sentry": transport.text(),
            "spans": "\n".join(s.to_json() for s in spans.get_finished_spans()),
            "metrics": exposition,
            "responses": seen.text(),
        }
        # Each sink saw the traffic, so finding nothing there means something.
        assert '"route":"/v1/models/{name}/predict","status":401' in log_text
        # FastAPI routes name their caller too (the auth dependency leaves it in the scope).
        assert '"route":"/v1/auth/me","status":200' in log_text
        me_line = next(line for line in log_text.splitlines() if '"route":"/v1/auth/me"' in line)
        assert '"principal_kind":"user"' in me_line
        assert '"logger":"uvicorn.access"' in log_text and "api_key=[REDACTED]" in log_text
        assert transport.events(), "the failing endpoint produced no Sentry event"
        assert any(s.name.startswith("POST /v1/auth/token") for s in spans.get_finished_spans())
        assert "modelserve_http_requests_total" in exposition
        for sink, text in sinks.items():
            for name, value in secret.items():
                assert value not in text, f"the {name} leaked into {sink}"
    finally:
        sentry.close_sentry()
