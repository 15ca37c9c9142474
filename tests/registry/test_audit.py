"""Registry changes through the REST routes are audited, in the transaction that makes them.

Alias moves, alias deletion, rollback and traffic changes each leave one event naming who, what,
from which request; a refused change leaves none. The console goes through the same `Rollouts`
methods (tests/console/test_pages.py checks its events).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modelserve import create_app
from modelserve.auth import AuthSystem
from tests.auth.support import AuthClient, settings_for
from tests.registry.conftest import RegistryClient, reset_registry, unique

pytestmark = pytest.mark.services

REGISTRY_EVENTS = (
    "model.alias_moved",
    "model.alias_deleted",
    "model.rolled_back",
    "model.traffic_changed",
)


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[tuple[RegistryClient, str]]:
    """A serving registry app with auth; its client sends an admin's key. (client, admin id)"""
    reset_registry(database_url)
    settings = settings_for(database_url, tmp_path)
    app = create_app(settings, serve_registry=True)
    with TestClient(app, raise_server_exceptions=False) as client:
        auth: AuthSystem = app.state.auth
        admin_id, admin = AuthClient(client, auth, app).user_headers("admin")
        key = AuthClient(client, auth, app).new_key(admin, ["admin"])["key"]
        client.headers["authorization"] = f"Bearer {key}"
        registry = RegistryClient(client, app)
        assert registry.deployer is not None
        registry.call(registry.deployer.synced.wait())
        yield registry, admin_id


def registry_events(client: TestClient, name: str) -> list[dict[str, Any]]:
    """The model's registry events, oldest first."""
    response = client.get("/v1/audit", params={"limit": 100})
    assert response.status_code == 200, response.text
    events = [
        e
        for e in response.json()["data"]
        if e["event"] in REGISTRY_EVENTS and e["target_id"] == name
    ]
    return events[::-1]


def test_each_rest_registry_change_is_audited_once(api: tuple[RegistryClient, str]) -> None:
    registry, admin_id = api
    client = registry.client
    name = unique("audit")
    registry.push(name, scale=1.0)
    registry.push(name, scale=2.0)
    url = f"/v1/registry/models/{name}"

    first = registry.promote(name, "1")
    assert first.status_code == 200, first.text
    second = registry.promote(name, "2")
    assert second.status_code == 200, second.text
    again = registry.promote(name, "2")  # already there: nothing moves, nothing is recorded
    assert again.status_code == 200, again.text
    rolled = client.post(f"{url}/rollback")
    assert rolled.status_code == 200, rolled.text
    traffic = {"canary": [{"version": "2", "percent": 10}], "sticky": True}
    assert client.put(f"{url}/traffic", json=traffic).status_code == 200
    assert client.delete(f"{url}/traffic").status_code == 204
    assert client.put(f"{url}/aliases/staging", json={"version": "2"}).status_code == 200
    deleted = client.delete(f"{url}/aliases/staging")
    assert deleted.status_code == 204

    events = registry_events(client, name)
    # The audit log adds the key that acted to every event of an API-key caller.
    assert len({e["details"].pop("key_id") for e in events}) == 1
    assert [(e["event"], e["details"]) for e in events] == [
        ("model.alias_moved", {"alias": "production", "version": "1", "from": None}),
        ("model.alias_moved", {"alias": "production", "version": "2", "from": "1"}),
        ("model.rolled_back", {"alias": "production", "version": "1", "from": "2"}),
        (
            "model.traffic_changed",
            {"canary": {"2": 10.0}, "sticky": True, "shadow": None},
        ),
        ("model.traffic_changed", {"canary": {}, "sticky": False, "shadow": None}),
        ("model.alias_moved", {"alias": "staging", "version": "2", "from": None}),
        ("model.alias_deleted", {"alias": "staging"}),
    ]
    assert {(e["actor_id"], e["target_type"], e["outcome"]) for e in events} == {
        (admin_id, "model", "success")
    }
    # Each names the request that made it.
    assert events[0]["request_id"] == first.headers["x-request-id"]
    assert events[-1]["request_id"] == deleted.headers["x-request-id"]


def test_a_refused_registry_change_records_nothing(api: tuple[RegistryClient, str]) -> None:
    registry, _ = api
    client = registry.client
    name = unique("audit")
    registry.push(name, scale=1.0)
    url = f"/v1/registry/models/{name}"
    assert registry.promote(name, "7").status_code == 404  # no such version
    assert client.post(f"{url}/rollback").status_code == 409  # nothing to undo
    no_primary = {"canary": [{"version": "1", "percent": 10}]}
    assert client.put(f"{url}/traffic", json=no_primary).status_code == 409
    assert client.delete(f"{url}/aliases/staging").status_code == 404
    assert registry_events(client, name) == []
