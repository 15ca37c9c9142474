"""Version safety: a promotion, rollback, canary or shadow never serves another version's answer.

Each registry version of `CachedScaled` multiplies by its own scale, so an answer shows which
version computed it; `x-model-version` says which version the traffic policy picked.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.cache.services import CALLS
from tests.registry.conftest import Factory, unique, wait_for

SERVICE = "tests.cache.services:CachedScaled"


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.reset()


def answer(response: Any) -> tuple[str, float, str]:
    assert response.status_code == 200, response.text
    return (
        response.headers["x-model-version"],
        response.json()["y"],
        response.headers["x-cache"],
    )


def test_promote_and_rollback_answer_with_the_version_that_serves(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1, service=SERVICE)
        api.push(name, scale=10, service=SERVICE)
        api.promote(name, "1")
        assert answer(api.predict(name, 2)) == ("1", 2.0, "miss")
        assert answer(api.predict(name, 2)) == ("1", 2.0, "hit")

        api.promote(name, "2")
        wait_for(lambda: api.runtime.policy(name).primary == "2")  # type: ignore[union-attr]
        assert answer(api.predict(name, 2)) == ("2", 20.0, "miss")
        assert answer(api.predict(name, 2)) == ("2", 20.0, "hit")

        api.promote(name, "1")  # the rollback
        wait_for(lambda: api.runtime.policy(name).primary == "1")  # type: ignore[union-attr]
        first_back = answer(api.predict(name, 2))
        assert first_back[:2] == ("1", 2.0)
        # v1 answers again: from its own earlier answer or anew, never from v2's.
        assert answer(api.predict(name, 2)) == ("1", 2.0, "hit")


def test_a_canary_split_answers_each_request_with_its_own_version(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1, service=SERVICE)
        api.push(name, scale=10, service=SERVICE)
        api.promote(name, "1")
        traffic = api.client.put(
            f"/v1/registry/models/{name}/traffic",
            json={"canary": [{"version": "2", "percent": 50}]},
        )
        assert traffic.status_code == 200, traffic.text
        seen = [answer(api.predict(name, 3)) for _ in range(60)]
        by_version = Counter(version for version, _, _ in seen)
        assert set(by_version) == {"1", "2"}
        for version, y, _ in seen:
            assert y == (3.0 if version == "1" else 30.0)
        outcomes = Counter((version, cached) for version, _, cached in seen)
        # One model call per version, whatever the split sent where.
        assert outcomes[("1", "miss")] == 1 and outcomes[("2", "miss")] == 1
        assert sorted(CALLS.items) == [3.0, 3.0]


def test_a_shadow_copy_never_writes_the_cache(registry_app: Factory) -> None:
    name = unique()
    with registry_app() as api:
        api.push(name, scale=1, service=SERVICE)
        api.push(name, scale=10, service=SERVICE)
        api.promote(name, "1")
        api.client.put(
            f"/v1/registry/models/{name}/traffic",
            json={"shadow": {"version": "2", "percent": 100}},
        )
        wait_for(lambda: "2" in api.runtime.versions(name))
        assert answer(api.predict(name, 4)) == ("1", 4.0, "miss")

        def shadowed() -> bool:
            data = api.client.get(f"/v1/registry/models/{name}/shadow").json()
            return bool(data["summary"]["count"] >= 1)

        wait_for(shadowed)
        assert sorted(CALLS.items) == [4.0, 4.0]  # v1's answer and v2's shadow copy
        pinned = api.client.post(f"/v1/models/{name}/versions/2/predict", json={"x": 4})
        # v2 computed 4.0 as a shadow: had that been stored, this would be a hit.
        assert answer(pinned) == ("2", 40.0, "miss")
