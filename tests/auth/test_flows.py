"""Login, refresh, logout, password change, users, keys and the audit log over HTTP.

Runs on SQLite and on the real PostgreSQL (`database_url`).
"""

from __future__ import annotations

import pytest

from tests.auth.support import PASSWORD, AuthClient

pytestmark = pytest.mark.services


def test_login_gives_tokens_that_authenticate(api: AuthClient) -> None:
    user_id, name = api.new_user()
    tokens = api.login(name)
    assert tokens["token_type"] == "bearer"
    assert tokens["refresh_token"].startswith("msr_")
    me = api.client.get(
        "/v1/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["user"]["id"] == user_id
    assert me.json()["kind"] == "user"


def test_refresh_rotates_and_reuse_ends_the_session(api: AuthClient) -> None:
    _, name = api.new_user()
    first = api.login(name)
    second = api.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    # The old refresh token again: theft is assumed and the whole session ends.
    reused = api.client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reused.status_code == 401
    assert "www-authenticate" in reused.headers
    again = api.client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert again.status_code == 401
    me = api.client.get("/v1/auth/me", headers={"authorization": f"Bearer {new['access_token']}"})
    assert me.status_code == 401


def test_logout_revokes_on_the_next_request(api: AuthClient) -> None:
    _, headers = api.user_headers()
    assert api.client.get("/v1/auth/me", headers=headers).status_code == 200
    assert api.client.post("/v1/auth/logout", headers=headers).status_code == 204
    assert api.client.get("/v1/auth/me", headers=headers).status_code == 401


def test_password_change_ends_sessions_and_old_password(api: AuthClient) -> None:
    _, name = api.new_user()
    token = api.login(name)["access_token"]
    headers = {"authorization": f"Bearer {token}"}
    wrong = api.client.post(
        "/v1/auth/password",
        json={"current_password": "not it at all", "new_password": "a brand new passphrase"},
        headers=headers,
    )
    assert wrong.status_code == 403
    changed = api.client.post(
        "/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a brand new passphrase"},
        headers=headers,
    )
    assert changed.status_code == 204
    assert api.client.get("/v1/auth/me", headers=headers).status_code == 401
    old = api.client.post("/v1/auth/token", data={"username": name, "password": PASSWORD})
    assert old.status_code == 401
    api.login(name, "a brand new passphrase")


def test_admin_disables_and_enables_a_user(api: AuthClient) -> None:
    _, admin = api.user_headers("admin")
    user_id, name = api.new_user()
    member = {"authorization": f"Bearer {api.login(name)['access_token']}"}
    key = api.new_key(member, ["predict:*"])["key"]
    key_headers = {"authorization": f"Bearer {key}"}
    assert api.client.get("/v1/auth/me", headers=key_headers).status_code == 200

    off = api.client.patch(f"/v1/users/{user_id}", json={"is_active": False}, headers=admin)
    assert off.status_code == 200
    assert off.json()["is_active"] is False
    assert api.client.get("/v1/auth/me", headers=member).status_code == 401
    assert api.client.get("/v1/auth/me", headers=key_headers).status_code == 401
    assert (
        api.client.post("/v1/auth/token", data={"username": name, "password": PASSWORD}).status_code
        == 401
    )

    on = api.client.patch(f"/v1/users/{user_id}", json={"is_active": True}, headers=admin)
    assert on.json()["is_active"] is True
    assert api.client.get("/v1/auth/me", headers=key_headers).status_code == 200
    # Sessions ended by disabling stay ended.
    assert api.client.get("/v1/auth/me", headers=member).status_code == 401


def test_role_change_and_admin_user_management(api: AuthClient) -> None:
    _, admin = api.user_headers("admin")
    created = api.client.post(
        "/v1/users",
        json={"username": "Someone.New" + api.new_user()[1], "password": "long enough pass"},
        headers=admin,
    )
    assert created.status_code == 201
    user = created.json()
    assert user["role"] == "member"
    assert user["username"] == user["username"].lower()
    promoted = api.client.patch(f"/v1/users/{user['id']}", json={"role": "admin"}, headers=admin)
    assert promoted.json()["role"] == "admin"
    listed = api.client.get("/v1/users", params={"limit": 100}, headers=admin).json()
    assert listed["count"] >= 2
    assert api.client.delete(f"/v1/users/{user['id']}", headers=admin).status_code == 204
    assert api.client.get(f"/v1/users/{user['id']}", headers=admin).status_code == 404
    duplicate = api.client.post(
        "/v1/users",
        json={"username": "dup" + user["id"][:8], "password": "long enough pass"},
        headers=admin,
    )
    assert duplicate.status_code == 201
    again = api.client.post(
        "/v1/users",
        json={"username": "DUP" + user["id"][:8], "password": "long enough pass"},
        headers=admin,
    )
    assert again.status_code == 409


def test_admin_cannot_lock_themself_out(api: AuthClient) -> None:
    admin_id, admin = api.user_headers("admin")
    assert (
        api.client.patch(
            f"/v1/users/{admin_id}", json={"role": "member"}, headers=admin
        ).status_code
        == 409
    )
    assert api.client.delete(f"/v1/users/{admin_id}", headers=admin).status_code == 409


def test_key_lifecycle_and_revocation(api: AuthClient) -> None:
    _, member = api.user_headers()
    created = api.new_key(member, ["predict:summer"], expires_in_days=30)
    key = created["key"]
    assert key.startswith("ms_") and created["prefix"] == key[: len(created["prefix"])]
    assert created["expires_at"] is not None
    headers = {"x-api-key": key}
    ok = api.client.post("/v1/models/summer/predict", json={"values": [1, 2]}, headers=headers)
    assert ok.status_code == 200, ok.text
    other_model = api.client.post("/v1/models/upper/predict", json={"text": "a"}, headers=headers)
    assert other_model.status_code == 403
    listed = api.client.get("/v1/keys", headers=member).json()
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert "key" not in listed["data"][0]
    shown = api.client.get(f"/v1/keys/{created['id']}", headers=member).json()
    assert shown["last_used_at"] is not None
    assert api.client.delete(f"/v1/keys/{created['id']}", headers=member).status_code == 204
    revoked = api.client.post("/v1/models/summer/predict", json={"values": [1]}, headers=headers)
    assert revoked.status_code == 401


def test_key_scopes_cannot_exceed_the_owner(api: AuthClient) -> None:
    _, member = api.user_headers()
    response = api.client.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=member)
    assert response.status_code == 403
    unknown = api.client.post(
        "/v1/keys", json={"name": "x", "scopes": ["predict:../etc"]}, headers=member
    )
    assert unknown.status_code == 422


def test_predict_key_cannot_manage_keys(api: AuthClient) -> None:
    _, member = api.user_headers()
    key = api.new_key(member, ["predict:*", "registry:read"])["key"]
    headers = {"authorization": f"Bearer {key}"}
    assert (
        api.client.post(
            "/v1/keys", json={"name": "x", "scopes": ["predict:*"]}, headers=headers
        ).status_code
        == 403
    )
    assert api.client.get("/v1/keys", headers=headers).status_code == 403


def test_audit_log_records_security_events_with_request_ids(api: AuthClient) -> None:
    admin_id, admin = api.user_headers("admin")
    _, name = api.new_user()
    bad = api.client.post(
        "/v1/auth/token",
        data={"username": name, "password": "wrong password!"},
        headers={"x-request-id": "req-login-1"},
    )
    assert bad.status_code == 401
    api.new_key(admin, ["predict:*"])
    events = api.client.get("/v1/audit", params={"limit": 100}, headers=admin).json()["data"]
    kinds = {e["event"] for e in events}
    assert {"login.failed", "login.succeeded", "key.created"} <= kinds
    failed = next(e for e in events if e["request_id"] == "req-login-1")
    assert failed["event"] == "login.failed" and failed["outcome"] == "failure"
    one = api.client.get(f"/v1/audit/{failed['id']}", headers=admin)
    assert one.status_code == 200
    page = api.client.get("/v1/audit", params={"limit": 1}, headers=admin).json()
    assert len(page["data"]) == 1 and page["next_before_id"] == page["data"][0]["id"]
    # A member sees only what concerns them.
    _, member = api.user_headers()
    mine = api.client.get("/v1/audit", headers=member).json()["data"]
    assert mine and all(e["actor_id"] != admin_id for e in mine)


def test_hostile_input_is_4xx_on_every_backend(api: AuthClient) -> None:
    _, admin = api.user_headers("admin")
    cases = [
        api.client.post("/v1/auth/token", data={"username": "ad\x00min", "password": "x"}),
        api.client.post(
            "/v1/keys", json={"name": "a\x00b", "scopes": ["predict:*"]}, headers=admin
        ),
        api.client.post("/v1/keys", json={"name": "k", "scopes": ["predict:\x00"]}, headers=admin),
        api.client.post(
            "/v1/keys",
            json={"name": "k", "scopes": ["predict:*"], "owner_id": "x\x00"},
            headers=admin,
        ),
        api.client.get("/v1/users/%00abc", headers=admin),
        api.client.get("/v1/keys/' OR 1=1 --", headers=admin),
        api.client.get("/v1/keys", params={"owner_id": "\x00"}, headers=admin),
        api.client.get("/v1/audit", params={"event": "a\x00"}, headers=admin),
        api.client.get("/v1/audit/99999999999999999999", headers=admin),
        api.client.get("/v1/audit", params={"limit": 10**9}, headers=admin),
        api.client.get("/v1/users", params={"offset": -1}, headers=admin),
        api.client.post("/v1/auth/refresh", json={"refresh_token": "msr_\x00"}),
    ]
    for response in cases:
        assert 400 <= response.status_code < 500, (response.request.url, response.text)
    assert api.client.get("/livez").status_code == 200
