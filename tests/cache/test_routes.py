"""The cache over HTTP with auth on: the purge route (admin only), no-cache, metrics, OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelserve import create_app
from tests.auth.support import AuthClient, settings_for
from tests.cache.services import CALLS, Doubler

PURGE = "/v1/models/doubler/cache"
PREDICT = "/v1/models/doubler/predict"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[AuthClient]:
    CALLS.reset()
    settings = settings_for(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    app = create_app(settings, [Doubler])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield AuthClient(client, app.state.auth, app)


def test_only_admins_purge(api: AuthClient) -> None:
    _, member = api.user_headers("member")
    _, admin = api.user_headers("admin")
    client = api.client
    assert client.post(PREDICT, json={"x": 1}, headers=member).headers["x-cache"] == "miss"
    assert client.post(PREDICT, json={"x": 1}, headers=member).headers["x-cache"] == "hit"

    assert client.delete(PURGE).status_code == 401
    denied = client.delete(PURGE, headers=member)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"
    assert client.post(PREDICT, json={"x": 1}, headers=member).headers["x-cache"] == "hit"

    purged = client.delete(PURGE, headers=admin)
    assert purged.status_code == 200, purged.text
    assert purged.json() == {"model": "doubler", "purged": 1, "shared": False}
    assert client.post(PREDICT, json={"x": 1}, headers=member).headers["x-cache"] == "miss"

    assert client.delete("/v1/models/nothing/cache", headers=admin).status_code == 404
    assert client.delete(f"/v1/models/{'a' * 64}/cache", headers=admin).status_code == 422
    assert CALLS.items == [1.0, 1.0]


def test_no_cache_needs_the_scope(api: AuthClient) -> None:
    _, member = api.user_headers("member")  # members hold registry:write by default
    client_key = {"x-api-key": api.new_key(member, ["predict:*"])["key"]}
    client = api.client
    client.post(PREDICT, json={"x": 2}, headers=client_key)
    fresh = {"cache-control": "no-cache"}
    ignored = client.post(PREDICT, json={"x": 2}, headers={**client_key, **fresh})
    bypassed = client.post(PREDICT, json={"x": 2}, headers={**member, **fresh})
    assert (ignored.headers["x-cache"], bypassed.headers["x-cache"]) == ("hit", "bypass")
    assert bypassed.json() == {"y": 4.0}
    assert CALLS.items == [2.0, 2.0]


def test_metrics_count_lookups_and_bytes(api: AuthClient) -> None:
    _, admin = api.user_headers("admin")
    client = api.client
    for _ in range(3):
        client.post(PREDICT, json={"x": 5}, headers=admin)
    text = client.get("/metrics", headers=admin).text
    assert 'modelserve_cache_lookups_total{model="doubler",outcome="miss"} 1.0' in text
    assert 'modelserve_cache_lookups_total{model="doubler",outcome="hit"} 2.0' in text
    line = next(x for x in text.splitlines() if x.startswith("modelserve_cache_bytes{"))
    assert float(line.split()[-1]) > 0


def test_the_purge_route_is_documented(api: AuthClient) -> None:
    schema = api.client.get("/openapi.json").json()
    route = schema["paths"]["/v1/models/{name}/cache"]["delete"]
    assert set(route["responses"]) >= {"200", "401", "403", "404", "503"}
    assert route["summary"] == "Drop a model's cached answers"


def test_the_prediction_log_and_stats_mark_cached_answers(tmp_path: Path) -> None:
    from modelserve import Settings
    from modelserve.config import AuthConfig, ObservabilityConfig

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        data_dir=tmp_path,
        auth=AuthConfig(enabled=False),
        observability=ObservabilityConfig(predlog_sample_rate=1.0, access_log=False),
    )
    app = create_app(settings, [Doubler])
    with TestClient(app, raise_server_exceptions=False) as client:
        for x in (1, 1, 1, 2):
            client.post(PREDICT, json={"x": x})
        client.portal.call(app.state.observability.predlog.flush)  # type: ignore[union-attr]
        report = client.get("/v1/models/doubler/stats", params={"window": "15m"}).json()
    (version,) = report["versions"]
    assert version["sampled"] == 4
    assert version["cache_hit_rate"] == 0.5  # two hits of four answers
