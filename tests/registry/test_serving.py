"""Serving from the registry: aliases move traffic, failures keep the old one; canary, shadow."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.registry.conftest import BROKEN, Factory, unique, wait_for

pytestmark = pytest.mark.services


def versions_loaded(api: object, name: str) -> set[str]:
    return set(api.runtime.versions(name))  # type: ignore[attr-defined]


def test_promote_switches_traffic_retires_the_old_and_rollback_returns(
    registry_app: Factory,
) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1)
        api.push(name, scale=2)
        assert api.predict(name, 3).status_code == 404  # nothing promoted yet
        moved = api.promote(name, "1")
        assert moved.status_code == 200, moved.text
        assert (moved.json()["version"], moved.json()["previous_version"]) == ("1", None)
        answer = api.predict(name, 3)
        assert (answer.json(), answer.headers["x-model-version"]) == ({"y": 3.0}, "1")

        moved = api.promote(name, "2")
        assert (moved.json()["version"], moved.json()["previous_version"]) == ("2", "1")
        answer = api.predict(name, 3)
        assert (answer.json(), answer.headers["x-model-version"]) == ({"y": 6.0}, "2")
        assert versions_loaded(api, name) == {"2"}  # v1 drained and unloaded
        pinned = api.client.post(f"/v1/models/{name}/versions/1/predict", json={"x": 1})
        assert pinned.status_code == 404

        back = api.client.post(f"/v1/registry/models/{name}/rollback", json={})
        assert back.status_code == 200, back.text
        assert (back.json()["version"], back.json()["previous_version"]) == ("1", "2")
        assert api.predict(name, 3).headers["x-model-version"] == "1"
        assert versions_loaded(api, name) == {"1"}
        # The history is walked back, not toggled: v1 was the first, nothing before it.
        again = api.client.post(f"/v1/registry/models/{name}/rollback")
        assert again.status_code == 409
        model = api.client.get(f"/v1/registry/models/{name}").json()
        assert model["aliases"] == {"production": "1"}


def test_rollback_walks_history_through_several_moves(registry_app: Factory) -> None:
    name = unique()
    with registry_app(serve=False) as api:
        for scale in (1, 2, 3):
            api.push(name, scale=scale)
            api.promote(name, str(scale), alias="staging")
        steps = []
        for _ in range(3):
            response = api.client.post(
                f"/v1/registry/models/{name}/rollback", json={"alias": "staging"}
            )
            steps.append(response.json()["version"] if response.status_code == 200 else 409)
        assert steps == ["2", "1", 409]


def test_failed_setup_is_refused_and_the_old_version_keeps_serving(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1)
        api.push(name, service=BROKEN)
        assert api.promote(name, "1").status_code == 200
        refused = api.promote(name, "2")
        assert refused.status_code == 409
        error = refused.json()["error"]
        # S11: the caller learns that setup failed and where to look, never the exception text.
        assert "setup failed" in str(error["details"])
        assert "weights are corrupt" not in str(error["details"])
        assert api.predict(name, 2).headers["x-model-version"] == "1"
        assert versions_loaded(api, name) == {"1"}
        model = api.client.get(f"/v1/registry/models/{name}").json()
        assert model["aliases"] == {"production": "1"}
        deployment = api.client.get(f"/v1/registry/models/{name}/deployment").json()
        assert deployment["serving"] is True
        assert deployment["traffic"]["primary"] == "1"
        assert deployment["error"] is None  # what is wanted (v1) is served
        assert "setup failed" in deployment["last_failure"]
        assert "weights are corrupt" not in deployment["last_failure"]
        # Other aliases do not load anything, so they may point at the broken version.
        assert api.promote(name, "2", alias="staging").status_code == 200


def test_canary_split_sticky_and_shadow_records(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1)
        api.push(name, scale=2)
        api.push(name, scale=3)
        api.promote(name, "1")
        traffic = api.client.put(
            f"/v1/registry/models/{name}/traffic",
            json={"canary": [{"version": "2", "percent": 50}]},
        )
        assert traffic.status_code == 200, traffic.text
        assert traffic.json()["primary"] == "1"
        seen = Counter(api.predict(name, 1).headers["x-model-version"] for _ in range(200))
        assert set(seen) == {"1", "2"} and min(seen.values()) > 40

        # Sticky splits by caller (see test_tenancy for callers with keys).
        api.client.put(
            f"/v1/registry/models/{name}/traffic",
            json={"canary": [{"version": "2", "percent": 50}], "sticky": True},
        )
        deployment = api.client.get(f"/v1/registry/models/{name}/deployment").json()
        assert deployment["traffic"]["sticky"] is True

        api.client.put(
            f"/v1/registry/models/{name}/traffic",
            json={"shadow": {"version": "3", "percent": 100}},
        )
        assert versions_loaded(api, name) == {"1", "3"}  # the canary is gone, so is v2
        for x in (1.0, 2.0, 4.0):
            assert api.predict(name, x).headers["x-model-version"] == "1"

        def recorded() -> bool:
            data = api.client.get(f"/v1/registry/models/{name}/shadow").json()
            return bool(data["summary"]["count"] >= 3)

        wait_for(recorded)
        shadow = api.client.get(f"/v1/registry/models/{name}/shadow").json()
        assert {r["shadow_version"] for r in shadow["data"]} == {"3"}
        assert shadow["summary"]["equal"] == 0
        assert shadow["summary"]["max_abs_diff"] == pytest.approx(8.0)  # 4*3 - 4*1

        # Promoting the shadow version makes it primary and drops it from the shadow slot.
        api.promote(name, "3")
        model = api.client.get(f"/v1/registry/models/{name}").json()
        assert model["traffic"]["shadow"] is None
        assert versions_loaded(api, name) == {"3"}


def test_traffic_validation(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1)
        api.push(name, scale=2)
        url = f"/v1/registry/models/{name}/traffic"
        no_primary = api.client.put(url, json={"canary": [{"version": "2", "percent": 10}]})
        assert no_primary.status_code == 409
        api.promote(name, "1")
        bad = [
            {"canary": [{"version": "2", "percent": 0}]},
            {"canary": [{"version": "2", "percent": 101}]},
            {"canary": [{"version": "2", "percent": "NaN"}]},
            {"canary": [{"version": "2", "percent": 60}, {"version": "2", "percent": 30}]},
            {"canary": [{"version": "1", "percent": 10}]},
            {"shadow": {"version": "1", "percent": 5}},
            {"canary": [], "weights": {}},
        ]
        for body in bad:
            assert api.client.put(url, json=body).status_code == 422, body
        assert (
            api.client.put(url, json={"canary": [{"version": "7", "percent": 5}]}).status_code
            == 404
        )
        assert api.client.delete(url).status_code == 204


def test_deleting_the_served_alias_unloads_the_model(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1)
        api.promote(name, "1")
        assert api.predict(name, 1).status_code == 200
        deleted = api.client.delete(f"/v1/registry/models/{name}/aliases/production")
        assert deleted.status_code == 204
        assert api.predict(name, 1).status_code == 404
        assert versions_loaded(api, name) == set()
        gone = api.client.delete(f"/v1/registry/models/{name}/aliases/production")
        assert gone.status_code == 404
        # Promoting again serves again.
        assert api.promote(name, "1").status_code == 200
        assert api.predict(name, 1).status_code == 200


def test_untrusted_versions_are_never_loaded(registry_app: Factory, tmp_path) -> None:
    from tests.registry.files import evil_pickle

    name = unique()
    sentinel = tmp_path / "pwned"
    with registry_app() as api:
        stored = api.upload("model.pkl", evil_pickle(sentinel))
        api.push(name, scale=1, files=[stored], trusted=True)
        response = api.client.patch(
            f"/v1/registry/models/{name}/versions/1", json={"trusted": False}
        )
        assert response.status_code == 200
        refused = api.promote(name, "1")
        assert refused.status_code == 409
        assert "trust" in refused.json()["error"]["message"]
        assert versions_loaded(api, name) == set()
    assert not sentinel.exists()


def test_a_second_process_follows_changes_through_the_change_counter(
    registry_app: Factory, tmp_path
) -> None:
    name = unique()
    shared = tmp_path / "shared"
    with (
        registry_app(data_dir=shared, reconcile_interval_s=0.05) as first,
        registry_app(data_dir=shared, reconcile_interval_s=0.05) as second,
    ):
        first.push(name, scale=1)
        first.push(name, scale=2)
        first.promote(name, "1")
        wait_for(lambda: second.predict(name, 1).status_code == 200)
        first.promote(name, "2")
        wait_for(lambda: second.predict(name, 1).headers.get("x-model-version") == "2")
        wait_for(lambda: versions_loaded(second, name) == {"2"})
        first.client.delete(f"/v1/registry/models/{name}/aliases/production")
        wait_for(lambda: second.predict(name, 1).status_code == 404)


def test_target_file_names_are_never_taken_over(registry_app: Factory) -> None:
    from tests.registry.services import Scaled

    class Fixed(Scaled):
        name = "fixed"

        def setup(self, device: str) -> None:
            self.scale = 10.0

    with registry_app(services=[Fixed]) as api:
        api.push("fixed", scale=1)
        assert api.promote("fixed", "1").status_code == 200
        answer = api.predict("fixed", 1)
        assert (answer.json(), answer.headers["x-model-version"]) == ({"y": 10.0}, "1")
        deployment = api.client.get("/v1/registry/models/fixed/deployment").json()
        assert deployment["serving"] is False and "TARGET" in deployment["error"]
