"""With auth on: scopes per route, others' models are 404 (S1), admin-only powers, sticky canary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelserve import Settings
from modelserve.auth import AuthSystem
from modelserve.db.engine import Database
from modelserve.http.app import build_app
from modelserve.http.auth_routes import build_auth_router
from modelserve.http.registry_routes import RegistryExtension
from tests.auth.support import AuthClient, auth_config
from tests.registry.conftest import SCALED, reset_registry, unique
from tests.registry.files import evil_pickle

pytestmark = pytest.mark.services


@pytest.fixture
def secured(database_url: str, tmp_path: Path) -> Iterator[AuthClient]:
    reset_registry(database_url)
    settings = Settings(database_url=database_url, data_dir=tmp_path, auth=auth_config())
    database = Database(database_url)
    auth = AuthSystem(settings, database, announce_to=None)
    registry = RegistryExtension(settings, serve=True)

    async def start(app: object) -> None:
        await auth.start()
        await registry.startup(app)  # type: ignore[arg-type]

    async def stop(app: object) -> None:
        await registry.shutdown(app)  # type: ignore[arg-type]
        await auth.close()

    app = build_app(
        settings, guard=auth.guard, database=database, on_startup=[start], on_shutdown=[stop]
    )
    app.state.auth = auth
    app.include_router(build_auth_router())
    registry.install(app)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield AuthClient(client, auth, app)


def push(api: AuthClient, headers: dict[str, str], name: str, scale: float) -> None:
    client = api.client
    client.post("/v1/registry/models", json={"name": name}, headers=headers)
    stored = client.post(
        "/v1/registry/uploads",
        params={"path": "config.json"},
        content=f'{{"scale": {scale}}}'.encode(),
        headers=headers,
    )
    assert stored.status_code == 201, stored.text
    sha = stored.json()["files"][0]["sha256"]
    created = client.post(
        f"/v1/registry/models/{name}/versions",
        json={"service": SCALED, "files": [{"path": "config.json", "sha256": sha}]},
        headers=headers,
    )
    assert created.status_code == 201, created.text


def test_other_tenants_models_are_404_everywhere(secured: AuthClient) -> None:
    client = secured.client
    _, alice = secured.user_headers()
    _, bob = secured.user_headers()
    _, admin = secured.user_headers("admin")
    name = unique("alice")
    push(secured, alice, name, 1)
    push(secured, alice, name, 2)
    assert (
        client.put(
            f"/v1/registry/models/{name}/aliases/production", json={"version": "1"}, headers=alice
        ).status_code
        == 200
    )

    base = f"/v1/registry/models/{name}"
    attempts = [
        ("GET", base, None),
        ("GET", f"{base}/versions", None),
        ("GET", f"{base}/versions/1", None),
        ("POST", f"{base}/versions", {"service": SCALED}),
        ("PUT", f"{base}/aliases/production", {"version": "2"}),
        ("DELETE", f"{base}/aliases/production", None),
        ("POST", f"{base}/rollback", {}),
        ("PUT", f"{base}/traffic", {"canary": [{"version": "2", "percent": 10}]}),
        ("DELETE", f"{base}/traffic", None),
        ("GET", f"{base}/deployment", None),
        ("GET", f"{base}/shadow", None),
    ]
    for method, url, body in attempts:
        response = client.request(method, url, json=body, headers=bob)
        assert response.status_code == 404, (method, url, response.status_code, response.text)
    listed = client.get("/v1/registry/models", headers=bob).json()
    assert name not in {m["name"] for m in listed["data"]}
    # Nothing moved, and the owner and an admin still see it all.
    assert client.get(base, headers=alice).json()["aliases"] == {"production": "1"}
    assert client.get(base, headers=admin).status_code == 200
    anonymous = client.get(base)
    assert anonymous.status_code == 401


def test_scopes_and_admin_only_powers(secured: AuthClient, tmp_path: Path) -> None:
    client = secured.client
    _, member = secured.user_headers()
    _, admin = secured.user_headers("admin")
    reader_key = secured.new_key(member, ["registry:read"])["key"]
    reader = {"authorization": f"Bearer {reader_key}"}
    assert client.get("/v1/registry/models", headers=reader).status_code == 200
    refused = client.post("/v1/registry/models", json={"name": unique()}, headers=reader)
    assert refused.status_code == 403

    name = unique()
    push(secured, member, name, 1)
    versions = f"/v1/registry/models/{name}/versions"
    by_file = client.post(
        versions, json={"service": "tests/registry/services.py:Scaled"}, headers=member
    )
    assert by_file.status_code == 403
    trusted = client.post(versions, json={"service": SCALED, "trusted": True}, headers=member)
    assert trusted.status_code == 403
    flip = client.patch(f"{versions}/1", json={"trusted": True}, headers=member)
    assert flip.status_code == 403
    sentinel = tmp_path / "pwned"
    pickled = client.post(
        "/v1/registry/uploads",
        params={"path": "model.pkl"},
        content=evil_pickle(sentinel),
        headers=member,
    )
    assert pickled.status_code == 422
    as_admin = client.post(
        "/v1/registry/uploads",
        params={"path": "model.pkl"},
        content=evil_pickle(sentinel),
        headers=admin,
    )
    assert as_admin.status_code == 201 and as_admin.json()["files"][0]["needs_trust"]
    assert not sentinel.exists()


def test_sticky_canary_keeps_each_key_on_one_version(secured: AuthClient) -> None:
    client = secured.client
    _, owner = secured.user_headers()
    name = unique()
    push(secured, owner, name, 1)
    push(secured, owner, name, 2)
    base = f"/v1/registry/models/{name}"
    client.put(f"{base}/aliases/production", json={"version": "1"}, headers=owner)
    traffic = client.put(
        f"{base}/traffic",
        json={"canary": [{"version": "2", "percent": 50}], "sticky": True},
        headers=owner,
    )
    assert traffic.status_code == 200, traffic.text
    chosen = []
    for _ in range(16):  # all 16 on one side by chance: p = 2**-15
        key = secured.new_key(owner, ["predict:*"])["key"]
        headers = {"authorization": f"Bearer {key}"}
        seen = {
            client.post(f"/v1/models/{name}/predict", json={"x": 1}, headers=headers).headers[
                "x-model-version"
            ]
            for _ in range(8)
        }
        assert len(seen) == 1, seen
        chosen.append(seen.pop())
    assert set(chosen) == {"1", "2"}, chosen


def test_every_registry_route_declares_its_scope(secured: AuthClient) -> None:
    from tests.auth.support import api_routes
    from tests.auth.test_route_scopes import route_scopes

    routes = [(p, r, e) for p, r, e in api_routes(secured.app) if p.startswith("/v1/registry")]
    assert len(routes) == 15
    scopes = {f"{sorted(r.methods)} {p}": route_scopes(r, e) for p, r, e in routes}
    assert all(s and s <= {"registry:read", "registry:write", "admin"} for s in scopes.values())
    assert scopes["['PATCH'] /v1/registry/models/{name}/versions/{version}"] == {"admin"}
