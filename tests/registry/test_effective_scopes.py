"""Admin-only registry powers follow the credential's effective scopes (the key's scopes within
its owner's role), never the owner's role alone.

An admin's key made with `predict:*`, `registry:read`, `registry:write` (the dev key's scopes) is
refused every admin-only action and changes nothing; the same admin's key with `admin` may.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

DEV_KEY_SCOPES = ["predict:*", "registry:read", "registry:write"]
BY_FILE = "tests/registry/services.py:Scaled"


@dataclass
class Keys:
    """An app with auth and the registry, and the credentials of the tests."""

    api: AuthClient
    dev: dict[str, str]  # an admin's key with the dev key's scopes
    full: dict[str, str]  # the same admin's key with `admin`
    member: dict[str, str]  # another user's login session


@pytest.fixture
def keys(database_url: str, tmp_path: Path) -> Iterator[Keys]:
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
        api = AuthClient(client, auth, app)
        _, admin = api.user_headers("admin")
        _, member = api.user_headers()
        dev = {"authorization": "Bearer " + api.new_key(admin, DEV_KEY_SCOPES)["key"]}
        full = {"authorization": "Bearer " + api.new_key(admin, ["admin"])["key"]}
        yield Keys(api, dev, full, member)


def versions_of(client: TestClient, name: str, headers: dict[str, str]) -> list[Any]:
    response = client.get(f"/v1/registry/models/{name}/versions", headers=headers)
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return data


def own_model(client: TestClient, headers: dict[str, str]) -> str:
    name = unique("eff")
    created = client.post("/v1/registry/models", json={"name": name}, headers=headers)
    assert created.status_code == 201, created.text
    return name


def test_the_dev_scoped_key_of_an_admin_is_no_admin(keys: Keys) -> None:
    api, dev, full = keys.api, keys.dev, keys.full
    # What the admin-only routes already decided by scope, and the registry now agrees with.
    assert api.client.get("/v1/users", headers=dev).status_code == 403
    assert api.client.get("/v1/users", headers=full).status_code == 200


def test_service_by_file_path_needs_the_admin_scope(keys: Keys) -> None:
    api, dev, full = keys.api, keys.dev, keys.full
    name = own_model(api.client, dev)
    url = f"/v1/registry/models/{name}/versions"
    refused = api.client.post(url, json={"service": BY_FILE}, headers=dev)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "forbidden"
    assert versions_of(api.client, name, dev) == []
    allowed = api.client.post(url, json={"service": BY_FILE}, headers=full)
    assert allowed.status_code == 201, allowed.text


def test_a_trusted_version_needs_the_admin_scope(keys: Keys) -> None:
    api, dev, full = keys.api, keys.dev, keys.full
    name = own_model(api.client, dev)
    url = f"/v1/registry/models/{name}/versions"
    refused = api.client.post(url, json={"service": SCALED, "trusted": True}, headers=dev)
    assert refused.status_code == 403, refused.text
    assert versions_of(api.client, name, dev) == []
    allowed = api.client.post(url, json={"service": SCALED, "trusted": True}, headers=full)
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["trusted"] is True


def test_marking_a_version_trusted_needs_the_admin_scope(keys: Keys) -> None:
    api, dev, full = keys.api, keys.dev, keys.full
    name = own_model(api.client, dev)
    url = f"/v1/registry/models/{name}/versions"
    assert api.client.post(url, json={"service": SCALED}, headers=dev).status_code == 201
    refused = api.client.patch(f"{url}/1", json={"trusted": True}, headers=dev)
    assert refused.status_code == 403
    assert [v["trusted"] for v in versions_of(api.client, name, dev)] == [False]
    allowed = api.client.patch(f"{url}/1", json={"trusted": True}, headers=full)
    assert allowed.status_code == 200, allowed.text
    assert [v["trusted"] for v in versions_of(api.client, name, dev)] == [True]


def test_uploading_pickle_needs_the_admin_scope(keys: Keys, tmp_path: Path) -> None:
    api, dev, full = keys.api, keys.dev, keys.full
    sentinel = tmp_path / "pwned"
    url, params = "/v1/registry/uploads", {"path": "model.pkl"}
    refused = api.client.post(url, params=params, content=evil_pickle(sentinel), headers=dev)
    assert refused.status_code == 422, refused.text
    allowed = api.client.post(url, params=params, content=evil_pickle(sentinel), headers=full)
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["files"][0]["needs_trust"]
    assert not sentinel.exists()


def test_seeing_other_owners_models_needs_the_admin_scope(keys: Keys) -> None:
    api, dev, full, member = keys.api, keys.dev, keys.full, keys.member
    name = own_model(api.client, member)
    assert api.client.get(f"/v1/registry/models/{name}", headers=dev).status_code == 404
    listed = api.client.get("/v1/registry/models", headers=dev).json()["data"]
    assert name not in {m["name"] for m in listed}
    assert api.client.get(f"/v1/registry/models/{name}", headers=full).status_code == 200
