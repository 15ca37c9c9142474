"""S1 (BOLA matrix), S2 (function-level authorization), S3 (mass assignment), S9 (key storage).

The BOLA matrix enumerates every route with an object id from the app itself. A route family
that is not in OBJECT_FACTORIES (nor exempt with a reason) fails the test: a new feature with
object ids must say how to make one of tenant B's objects, and the matrix then checks it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.auth.support import AuthClient

pytestmark = pytest.mark.services


@dataclass
class Tenant:
    user_id: str
    headers: dict[str, str]


# path template -> makes an object owned by tenant B and returns its id
ObjectFactory = Callable[[AuthClient, Tenant], str]


def _b_key(api: AuthClient, b: Tenant) -> str:
    return str(api.new_key(b.headers, ["predict:*"])["id"])


def _b_audit_event(api: AuthClient, b: Tenant) -> str:
    events = api.client.get("/v1/audit", headers=b.headers).json()["data"]
    return str(events[0]["id"])


OBJECT_FACTORIES: dict[str, ObjectFactory] = {
    "/v1/users/{user_id}": lambda api, b: b.user_id,
    "/v1/keys/{key_id}": _b_key,
    "/v1/audit/{event_id}": _b_audit_event,
}
# Served models are configuration, not tenant objects (any `predict:<model>` holder may use them).
EXEMPT_PREFIXES = {
    "/v1/models/{name}": "served models are not owned by a tenant",
    "/v2/models/{name}": "the same served models, over the Open Inference Protocol",
    "/openai/v1/models/{model}": "the same served models, as OpenAI lists them",
}
BODIES: dict[str, Any] = {"PATCH": {"role": "admin", "is_active": False}, "PUT": {}, "POST": {}}


def object_routes(api: AuthClient) -> list[tuple[str, str]]:
    """(method, path) of every route with an object id, from the OpenAPI document."""
    paths = api.client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path)
        for path, operations in sorted(paths.items())
        if "{" in path and not path.startswith(tuple(EXEMPT_PREFIXES))
        for method in sorted(operations)
    ]


def _shape(response: Any) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_bola_matrix(api: AuthClient) -> None:
    a = Tenant(*api.user_headers())
    b = Tenant(*api.user_headers())
    _, admin = api.user_headers("admin")
    cells = object_routes(api)
    assert len(cells) >= 6
    missing = {path for _, path in cells} - set(OBJECT_FACTORIES)
    assert not missing, f"add these route families to OBJECT_FACTORIES: {sorted(missing)}"
    denied_before = _denied_count(api, admin)
    for method, path in cells:
        param = path[path.index("{") + 1 : path.index("}")]
        object_id = OBJECT_FACTORIES[path](api, b)
        before = _snapshot(api, admin, path, object_id)
        body = BODIES.get(method)
        theirs = api.client.request(
            method, path.replace(f"{{{param}}}", object_id), headers=a.headers,
            json=body,
        )  # fmt: skip
        fake = "123456789" if param == "event_id" else uuid.uuid4().hex
        nothing = api.client.request(
            method, path.replace(f"{{{param}}}", fake), headers=a.headers, json=body
        )
        assert theirs.status_code in (403, 404), (method, path, theirs.status_code)
        # Same answer as for an id that does not exist: no existence leak.
        assert _shape(theirs) == _shape(nothing), (method, path)
        assert _snapshot(api, admin, path, object_id) == before, (method, path)
    api.call(api.auth.audit.drain)
    assert _denied_count(api, admin) - denied_before >= len(cells)


def _snapshot(api: AuthClient, admin: dict[str, str], path: str, object_id: str) -> str:
    url = path[: path.index("{")] + object_id
    response = api.client.get(url, headers=admin)
    assert response.status_code == 200, (url, response.text)
    return json.dumps(response.json(), sort_keys=True)


def _denied_count(api: AuthClient, admin: dict[str, str]) -> int:
    events = api.client.get(
        "/v1/audit", params={"event": "access.denied", "limit": 100}, headers=admin
    ).json()["data"]
    return len(events)


def test_members_and_predict_keys_cannot_use_admin_functions(api: AuthClient) -> None:
    member_id, member = api.user_headers()
    other_id, _ = api.new_user()
    key = {"x-api-key": api.new_key(member, ["predict:*", "registry:read"])["key"]}
    for headers in (member, key):
        assert api.client.get("/v1/users", headers=headers).status_code == 403
        created = api.client.post(
            "/v1/users", json={"username": "sneaky", "password": "long enough pass"},
            headers=headers,
        )  # fmt: skip
        assert created.status_code == 403
        # Method swaps on one's own record: reading is allowed, deleting and changing are not.
        assert api.client.delete(f"/v1/users/{member_id}", headers=headers).status_code == 403
        escalate = api.client.patch(
            f"/v1/users/{member_id}", json={"role": "admin"}, headers=headers
        )
        assert escalate.status_code == 403
        assert api.client.post(
            "/v1/keys", json={"name": "k", "scopes": ["predict:*"], "owner_id": other_id},
            headers=headers,
        ).status_code == 403  # fmt: skip
    assert api.client.get(f"/v1/users/{member_id}", headers=member).json()["role"] == "member"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/v1/users/{self}", {"password_hash": "$argon2id$v=19$m=8,t=1,p=1$x$y"}),
        ("PATCH", "/v1/users/{self}", {"tenant_id": "someone-else"}),
        ("PATCH", "/v1/users/{self}", {"username": "renamed"}),
        (
            "POST",
            "/v1/users",
            {"username": "x1234567", "password": "long enough pass", "is_active": False},
        ),
        ("POST", "/v1/keys", {"name": "k", "scopes": ["predict:*"], "digest": "0" * 64}),
        ("POST", "/v1/keys", {"name": "k", "scopes": ["predict:*"], "prefix": "aaaaaaaaaaaa"}),
        (
            "POST",
            "/v1/auth/password",
            {"current_password": "x", "new_password": "y" * 10, "role": "admin"},
        ),
        ("POST", "/v1/auth/refresh", {"refresh_token": "x", "user_id": "y"}),
    ],
)
def test_unknown_fields_in_writes_are_422(
    lite: AuthClient, method: str, path: str, body: dict[str, Any]
) -> None:
    admin_id, admin = lite.user_headers("admin")
    before = lite.client.get(f"/v1/users/{admin_id}", headers=admin).json()
    response = lite.client.request(
        method, path.replace("{self}", admin_id), json=body, headers=admin
    )
    assert response.status_code == 422, response.text
    assert lite.client.get(f"/v1/users/{admin_id}", headers=admin).json() == before


def test_no_response_holds_a_hash_or_secret(lite: AuthClient) -> None:
    admin_id, admin = lite.user_headers("admin")
    created = lite.new_key(admin, ["predict:*"])
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    texts = [
        lite.client.get(path, headers=admin).text
        for path in (
            "/v1/users", f"/v1/users/{admin_id}", "/v1/keys", f"/v1/keys/{created['id']}",
            "/v1/audit?limit=100", "/v1/auth/me", "/openapi.json",
        )
    ]  # fmt: skip
    for text in texts:
        for secret in ("$argon2", digest, created["key"], "password_hash", "test-secret-0123"):
            assert secret not in text


def test_keys_are_stored_as_prefix_and_digest_only(api: AuthClient) -> None:
    _, member = api.user_headers()
    created = api.new_key(member, ["predict:*"])
    key: str = created["key"]

    async def stored_row() -> dict[str, Any]:
        from sqlalchemy import text

        async with api.auth.database.session() as session:
            result = await session.execute(
                text("SELECT * FROM api_keys WHERE id = :id"), {"id": created["id"]}
            )
            return dict(result.mappings().one())

    row = api.call(stored_row)
    assert row["digest"] == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(f"ms_{row['prefix']}_")
    secret_part = key.rsplit("_", 1)[1]
    for value in row.values():
        assert secret_part not in str(value)
    # Shown once: never again through any read.
    assert "key" not in api.client.get(f"/v1/keys/{created['id']}", headers=member).json()
