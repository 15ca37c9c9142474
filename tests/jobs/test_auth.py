"""Jobs behind auth: scopes (403), owners (others' jobs and uploads are 404), admins see all,
per-owner limits (429 with Retry-After), and audit lines for submit, cancel and retry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute

from modelserve import Settings
from modelserve.config import JobsConfig
from tests.auth.support import AuthClient, api_routes, auth_config
from tests.auth.test_route_scopes import route_scopes
from tests.jobs.conftest import Factory, JobsClient, jsonl

pytestmark = pytest.mark.services


@pytest.fixture
def secured(jobs_app: Factory, database_url: str, tmp_path: Path) -> Iterator[JobsClient]:
    """Jobs with auth on; no embedded runner, so jobs stay queued until a test says."""
    settings = Settings(
        data_dir=tmp_path,
        database_url=database_url,
        auth=auth_config(),
        jobs=JobsConfig(chunk_size=10, embedded=False, max_active_jobs=2, max_queued_rows=25),
    )
    with jobs_app(settings=settings) as api:
        yield api


def users(api: JobsClient) -> AuthClient:
    return AuthClient(api.client, api.app.state.auth, api.app)


def key_headers(api: JobsClient, *scopes: str, role: str = "member") -> dict[str, str]:
    auth = users(api)
    _, session = auth.user_headers(role)
    key = auth.new_key(session, list(scopes))["key"]
    return {"authorization": f"Bearer {key}"}


def submit(api: JobsClient, headers: dict[str, str], rows: int = 3) -> Any:
    upload = api.upload(jsonl([{"x": i} for i in range(rows)]), headers=headers)
    return api.submit(upload, headers=headers)


def test_scopes_decide_reads_and_writes(secured: JobsClient) -> None:
    api = secured
    predict_only = key_headers(api, "predict:*")
    reader = key_headers(api, "jobs:read")
    writer = key_headers(api, "jobs:write")
    for headers in (predict_only, reader):
        refused = api.client.post("/v1/uploads", headers=headers)
        assert refused.status_code == 403
        assert "jobs:write" in refused.json()["error"]["message"]
    assert api.client.get("/v1/jobs", headers=predict_only).status_code == 403
    assert api.client.get("/v1/jobs", headers=writer).status_code == 403
    assert api.client.get("/v1/jobs", headers=reader).status_code == 200
    assert submit(api, writer).status_code == 202
    assert api.client.get("/v1/jobs").status_code == 401


def test_others_jobs_and_uploads_are_404_and_admins_see_all(secured: JobsClient) -> None:
    api = secured
    alice = key_headers(api, "jobs:read", "jobs:write")
    bob = key_headers(api, "jobs:read", "jobs:write")
    upload = api.upload(jsonl([{"x": 1}]), headers=alice)
    job = api.submit(upload, headers=alice).json()
    for path in ("", "/results", "/errors"):
        assert api.client.get(f"/v1/jobs/{job['id']}{path}", headers=bob).status_code == 404
    for action in ("cancel", "retry"):
        response = api.client.post(f"/v1/jobs/{job['id']}/{action}", headers=bob)
        assert response.status_code == 404
    assert api.client.get(f"/v1/uploads/{upload}", headers=bob).status_code == 404
    assert api.submit(upload, headers=bob).status_code == 404
    assert api.client.get("/v1/jobs", headers=bob).json()["count"] == 0
    assert api.client.get("/v1/jobs", headers=alice).json()["count"] == 1
    _, admin = users(api).user_headers("admin")
    listed = api.client.get("/v1/jobs", headers=admin).json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]
    assert api.client.get(f"/v1/jobs/{job['id']}", headers=admin).status_code == 200
    assert api.job(job["id"], **alice)["state"] == "queued"


def test_owner_limits_are_429_with_retry_after(secured: JobsClient) -> None:
    api = secured
    alice = key_headers(api, "jobs:read", "jobs:write")
    bob = key_headers(api, "jobs:read", "jobs:write")
    first = submit(api, alice, rows=10).json()
    submit(api, alice, rows=10)
    third = submit(api, alice, rows=1)
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limited"
    assert int(third.headers["retry-after"]) >= 1
    assert submit(api, bob, rows=1).status_code == 202  # limits are per owner
    api.client.post(f"/v1/jobs/{first['id']}/cancel", headers=alice)
    too_many_rows = submit(api, alice, rows=16)  # 10 waiting + 16 > 25
    assert too_many_rows.status_code == 429
    assert "max_queued_rows" in too_many_rows.json()["error"]["details"]
    assert submit(api, alice, rows=15).status_code == 202
    assert api.client.get("/v1/jobs", headers=alice).json()["count"] == 3


def test_submit_cancel_and_retry_are_audited(secured: JobsClient) -> None:
    api = secured
    auth = users(api)
    user_id, session = auth.user_headers("member")
    key = auth.new_key(session, ["jobs:read", "jobs:write"])["key"]
    headers = {"authorization": f"Bearer {key}"}
    job = submit(api, headers).json()
    api.client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers)
    api.client.post(f"/v1/jobs/{job['id']}/retry", headers=headers)  # 409: not audited
    _, admin = auth.user_headers("admin")
    events = api.client.get("/v1/audit", headers=admin, params={"limit": 100}).json()["data"]
    mine = [(e["event"], e["target_id"]) for e in events if e["actor_id"] == user_id]
    assert ("job.submitted", job["id"]) in mine
    assert ("job.cancelled", job["id"]) in mine
    assert ("job.retried", job["id"]) not in mine
    text = str(events)
    assert key not in text


def test_every_jobs_route_declares_its_scope(secured: JobsClient) -> None:
    routes = [
        (path, route, extra)
        for path, route, extra in api_routes(secured.app)
        if path.startswith(("/v1/jobs", "/v1/uploads")) and isinstance(route, APIRoute)
    ]
    assert len(routes) == 11
    for path, route, extra in routes:
        scopes = route_scopes(route, extra)
        wanted = "jobs:read" if route.methods == {"GET"} else "jobs:write"
        assert scopes == {wanted}, (path, route.methods, scopes)


def test_simultaneous_submits_cannot_overshoot_the_limit(secured: JobsClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    api = secured
    alice = key_headers(api, "jobs:read", "jobs:write")
    uploads = [api.upload(jsonl([{"x": i} for i in range(3)]), headers=alice) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda u: api.submit(u, headers=alice).status_code, uploads))
    assert sorted(statuses) == [202, 202, 429, 429, 429, 429]  # max_active_jobs=2
