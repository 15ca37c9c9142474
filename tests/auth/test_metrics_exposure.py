"""S12: `/metrics` on the public port is admin-only under every `auth.metrics_exposure`.

docs/security.md says so; this holds the doc to it. The exposition names every model and its
traffic, so "any valid credential" would be too wide: `authenticated` only adds the edge's
401 in front of the route's own admin check, and `disabled` hides the route (404).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelserve import create_app
from modelserve.db import migrate
from tests.auth.support import AuthClient, settings_for
from tests.http.services import Summer


@pytest.mark.parametrize(
    ("exposure", "anonymous", "member", "admin"),
    [
        ("public", 401, 403, 200),
        ("authenticated", 401, 403, 200),
        ("disabled", 404, 404, 404),
    ],
)
def test_metrics_need_admin_whatever_the_exposure(
    sqlite_url: str, tmp_path: Path, exposure: str, anonymous: int, member: int, admin: int
) -> None:
    settings = settings_for(sqlite_url, tmp_path, metrics_exposure=exposure)
    migrate.upgrade(settings.resolved_database_url())
    # The whole app as `modelserve serve` builds it: the metrics route comes with observability.
    app = create_app(settings, [Summer])
    with TestClient(app, raise_server_exceptions=False) as client:
        api = AuthClient(client, app.state.auth, app)
        _, member_headers = api.user_headers()
        key = api.new_key(member_headers, ["predict:*"])["key"]
        _, admin_headers = api.user_headers("admin")
        assert api.client.get("/metrics").status_code == anonymous
        assert api.client.get("/metrics", headers=member_headers).status_code == member
        assert api.client.get("/metrics", headers={"x-api-key": key}).status_code == member
        assert api.client.get("/metrics", headers=admin_headers).status_code == admin
