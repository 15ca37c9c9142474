"""`python -m bench.console`: server time of each admin console page on a busy installation.

Seeds an in-process app (SQLite file, auth on, the console on) with 50 served models, 50
registry models of 3 versions each (the first of 20) with alias moves, 10 users and 10,000 audit
events, sends a
little traffic so the live figures have something to compute, then requests every page as a
signed-in admin and reports the median (and p90) of the time the app spent on it: from the
ASGI call until the last body byte was handed over (no client or network in it).

    python -m bench.console                  # 50 requests per page
    python -m bench.console --requests 200 --markdown
    python -m bench.console --only audit     # the pages whose label says "audit"

The target (docs/console.md) is under 100 ms per page; this script measures and reports,
nothing asserts it.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import BaseModel

from modelserve import Service, Settings, batching, create_app
from modelserve.auth.audit import AuditEvent, Outcome, RequestMeta
from modelserve.config import AuthConfig, ConsoleConfig
from modelserve.console import install_console
from modelserve.schemas.auth import UserCreate
from modelserve.schemas.registry import ModelCreate, VersionCreate
from modelserve.service.spec import ServiceSpec
from modelserve.types import Principal

MODELS = 50
VERSIONS = 3
# The first registry model has a full page of versions (the model page lists 20).
BIG_MODEL_VERSIONS = 20
USERS = 10
AUDIT_EVENTS = 10_000
PASSWORD = "bench password 0123"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Point(BaseModel):
    x: float


class Doubled(BaseModel):
    y: float


class Doubler(Service[Point, Doubled]):
    """A model that costs nothing, so the pages are what is measured."""

    name = "doubler"
    batching = batching(max_batch_size=8, max_wait_ms=0)
    isolation = "inline"

    def predict(self, batch: list[Point]) -> list[Doubled]:
        return [Doubled(y=2 * p.x) for p in batch]


class ServerTimer:
    """ASGI wrapper: how long the app took per request, until its last body message."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last_s = 0.0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.last_s = time.perf_counter() - started

        await self.app(scope, receive, timed_send)


def settings_in(folder: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}",
        data_dir=folder,
        # Argon2 at its lowest cost: sign-in is not what is measured.
        auth=AuthConfig(
            jwt_secret="bench-secret-0123456789abcdefghijklmnopqrstuvwxyz",
            argon2_memory_kib=64,
            argon2_time_cost=1,
            dev_bootstrap=False,
            key_create_rate_limit="",
        ),
        console=ConsoleConfig(enabled=True),
        observability={"access_log": False},
    )


async def seed(app: Any) -> None:
    """Users, registry models with versions and alias moves, and the audit events."""
    auth = app.state.auth
    meta = RequestMeta("bench", "127.0.0.1")
    admin = await auth.accounts.create_user(
        UserCreate(username="admin", password=PASSWORD, role="admin"), actor=None, meta=meta
    )
    user_ids = [admin.id]
    for index in range(USERS - 1):
        user = await auth.accounts.create_user(
            UserCreate(username=f"user{index}", password=PASSWORD), actor=None, meta=meta
        )
        user_ids.append(user.id)
    principal = Principal(
        kind="user",
        subject=admin.id,
        owner_id=admin.id,
        role="admin",
        scopes=frozenset({"admin"}),
        rate_key=f"user:{admin.id}",
    )
    registry, rollouts = app.state.registry, app.state.rollouts
    for index in range(MODELS):
        name = f"reg{index:02d}"
        await registry.create_model(principal, ModelCreate(name=name, description="seeded"))
        for _ in range(BIG_MODEL_VERSIONS if index == 0 else VERSIONS):
            await registry.create_version(
                principal, name, VersionCreate(service="bench.console:Doubler")
            )
        for version in ("1", "2", "3"):
            await rollouts.set_alias(principal, name, "production", version)
    events = list(AuditEvent)
    written = 0
    async with app.state.database.session() as session:
        while written < AUDIT_EVENTS:
            actor_id = user_ids[written % len(user_ids)]
            actor = dataclasses.replace(principal, subject=actor_id, owner_id=actor_id)
            await auth.audit.record(
                session,
                events[written % len(events)],
                actor=actor,
                meta=meta,
                outcome=Outcome.SUCCESS,
                target_type="user",
                target_id=user_ids[(written + 1) % len(user_ids)],
            )
            written += 1


def served_specs() -> list[ServiceSpec]:
    base = ServiceSpec.from_class(Doubler)
    return [dataclasses.replace(base, name=f"served{index:02d}") for index in range(MODELS)]


def pages(client: TestClient) -> dict[str, str]:
    """The page URLs to measure (one of each kind, and the audit log's variants)."""
    audit = client.get("/console/audit").text
    older = re.search(r'before=(\d+)"', audit)
    actor = re.search(r'<option value="([0-9a-f]{32})">user0<', audit)
    assert older is not None
    assert actor is not None
    return {
        "overview": "/console/",
        "overview (live fragment)": "/console/live/overview",
        "model (served)": "/console/models/served00",
        f"model (registry, {BIG_MODEL_VERSIONS} versions)": "/console/models/reg00",
        f"model (registry, {VERSIONS} versions)": "/console/models/reg01",
        "playground": "/console/models/served00/playground",
        "promote confirmation": "/console/models/reg00/promote?version=1",
        "API keys": "/console/keys",
        "users": "/console/users",
        "batch jobs": "/console/jobs",
        "audit log, newest": "/console/audit",
        "audit log, page 2": f"/console/audit?before={older.group(1)}",
        "audit log, deep page": "/console/audit?before=100",
        "audit log, by action": "/console/audit?event=key.created",
        "audit log, by actor": f"/console/audit?actor={actor.group(1)}",
        "audit log, time range": "/console/audit?since=2000-01-01T00:00&until=2999-01-01T00:00",
    }


def measure(requests: int, only: str | None) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory(prefix="bench-console-") as folder:
        settings = settings_in(Path(folder))
        app = create_app(settings, served_specs(), serve_registry=False)
        install_console(app, settings)
        timer = ServerTimer(app)
        with TestClient(timer) as client:
            portal = client.portal
            assert portal is not None
            portal.call(seed, app)
            while any(d.status.value == "loading" for d in app.state.runtime):
                time.sleep(0.01)
            for index in range(MODELS):
                client.post(f"/v1/models/served{index:02d}/predict", json={"x": 1.0})
            form = client.get("/console/login").text
            token = CSRF.search(form)
            assert token is not None
            signed = client.post(
                "/console/login",
                data={"username": "admin", "password": PASSWORD, "csrf_token": token.group(1)},
                follow_redirects=False,
            )
            assert signed.status_code == 303, signed.text
            results = []
            for label, url in pages(client).items():
                if only is not None and only not in label:
                    continue
                times = []
                for attempt in range(requests + 5):
                    response = client.get(url)
                    assert response.status_code == 200, (url, response.status_code)
                    if attempt >= 5:  # the first few warm caches and the template
                        times.append(timer.last_s * 1000)
                times.sort()
                p90 = times[int(len(times) * 0.9) - 1]
                results.append((label, statistics.median(times), p90))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50, help="requests per page")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", help="measure only the pages whose label contains this")
    args = parser.parse_args()
    results = measure(args.requests, args.only)
    print(
        f"{MODELS} served models, {MODELS} registry models x {VERSIONS} versions,"
        f" {USERS} users, {AUDIT_EVENTS} audit events; {args.requests} requests per page"
    )
    if args.markdown:
        print("\n| page | median ms | p90 ms |\n|---|---:|---:|")
        for label, median, p90 in results:
            print(f"| {label} | {median:.1f} | {p90:.1f} |")
    else:
        for label, median, p90 in results:
            print(f"{label:32s} median {median:7.1f} ms   p90 {p90:7.1f} ms")


if __name__ == "__main__":
    main()
