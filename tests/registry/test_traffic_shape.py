"""`traffic.canary` has one shape, a list of {version, percent}, in every view of a model."""

from __future__ import annotations

import pytest

from tests.registry.conftest import Factory, unique

pytestmark = pytest.mark.services


def test_model_and_deployment_show_the_same_canary_list(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        for scale in (1, 2, 3):
            api.push(name, scale=scale)
        api.promote(name, "1")
        # No canary yet: an empty list in both, not {} in one and [] in the other.
        model = api.client.get(f"/v1/models/{name}").json()
        deployment = api.client.get(f"/v1/registry/models/{name}/deployment").json()
        assert model["traffic"]["canary"] == deployment["traffic"]["canary"] == []

        canary = [{"version": "2", "percent": 10.0}, {"version": "3", "percent": 5.0}]
        updated = api.client.put(f"/v1/registry/models/{name}/traffic", json={"canary": canary})
        assert updated.status_code == 200, updated.text
        model = api.client.get(f"/v1/models/{name}").json()
        deployment = api.client.get(f"/v1/registry/models/{name}/deployment").json()
        assert model["traffic"]["canary"] == canary
        assert deployment["traffic"]["canary"] == canary
        assert updated.json()["canary"] == canary
        # The documents agree too: both name the same schema for the list's items.
        paths = api.client.get("/openapi.json").json()["components"]["schemas"]
        served = paths["TrafficInfo"]["properties"]["canary"]
        stored = paths["TrafficPublic"]["properties"]["canary"]
        assert served["type"] == stored["type"] == "array"
        assert served["items"] == stored["items"]
