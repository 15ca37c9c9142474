"""Every page checks what its REST twin checks: admin pages do not exist for members (404,
audited), members see their own keys, models and audit events only, and actions are audited
with the user who took them."""

from __future__ import annotations

import re

import pytest

from tests.auth.support import PASSWORD
from tests.console.support import ConsoleClient, csrf_of

ADMIN_ONLY = ("/console/users",)


def api_token(console: ConsoleClient, username: str) -> dict[str, str]:
    response = console.client.post(
        "/v1/auth/token", data={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("path", ADMIN_ONLY)
def test_admin_pages_are_404_for_members_and_the_attempt_is_audited(
    fresh: ConsoleClient, path: str
) -> None:
    fresh.signed_in()
    token = fresh.csrf()
    assert fresh.client.get(path).status_code == 404
    assert fresh.client.post(path, data={"csrf_token": token, "username": "x"}).status_code == 404
    assert fresh.client.post(f"{path}/{'a' * 32}", data={"csrf_token": token}).status_code == 404
    assert "Users" not in fresh.client.get("/console/").text.split("<main")[0]
    fresh.drain_audit()
    audit = fresh.client.get("/console/audit?event=access.denied").text
    assert "scope=admin" in audit


def test_admins_reach_the_admin_pages(fresh: ConsoleClient) -> None:
    fresh.signed_in("admin")
    assert fresh.client.get("/console/users").status_code == 200
    assert 'href="/console/users"' in fresh.client.get("/console/").text


def test_members_see_their_own_keys_and_admins_everyones(fresh: ConsoleClient) -> None:
    alice = fresh.signed_in()
    response = fresh.client.post(
        "/console/keys",
        data={"name": f"key-of-{alice}", "scopes": "predict:*", "csrf_token": fresh.csrf()},
    )
    assert response.status_code == 200
    fresh.client.cookies.clear()
    bob = fresh.signed_in()
    keys = fresh.client.get("/console/keys").text
    assert f"key-of-{alice}" not in keys
    fresh.client.cookies.clear()
    fresh.signed_in("admin")
    assert f"key-of-{alice}" in fresh.client.get("/console/keys").text
    assert bob


def test_a_member_cannot_revoke_someone_elses_key(fresh: ConsoleClient) -> None:
    owner = fresh.new_user()
    key = fresh.client.post(
        "/v1/keys",
        json={"name": "theirs", "scopes": ["predict:*"]},
        headers=api_token(fresh, owner),
    ).json()
    fresh.signed_in()
    response = fresh.client.post(
        f"/console/keys/{key['id']}/revoke", data={"csrf_token": fresh.csrf()}
    )
    assert response.status_code == 404
    me = fresh.client.get("/v1/auth/me", headers={"x-api-key": key["key"]})
    assert me.status_code == 200  # still valid


def test_a_key_cannot_get_scopes_its_owner_lacks(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    response = fresh.client.post(
        "/console/keys", data={"name": "greedy", "scopes": "admin", "csrf_token": fresh.csrf()}
    )
    assert "may not use these scopes" in response.text
    assert "ms_" not in response.text.split("<main")[1].split("Keys")[0]


def test_key_created_once_and_revoked_lands_in_the_audit_log(fresh: ConsoleClient) -> None:
    user = fresh.signed_in()
    created = fresh.client.post(
        "/console/keys",
        data={
            "name": "ci",
            "scopes": "predict:*",
            "expires_in_days": "7",
            "csrf_token": fresh.csrf(),
        },
        headers={"hx-request": "true"},
    )
    assert created.status_code == 200
    key = re.search(r'data-testid="new-key">(ms_[^<]+)<', created.text)
    assert key is not None
    assert fresh.client.get("/v1/auth/me", headers={"x-api-key": key.group(1)}).status_code == 200
    listing = fresh.client.get("/console/keys").text
    assert key.group(1) not in listing  # shown once
    key_id = re.search(r'action="/console/keys/([0-9a-f]{32})/revoke"', listing)
    assert key_id is not None
    revoked = fresh.client.post(
        f"/console/keys/{key_id.group(1)}/revoke",
        data={"csrf_token": csrf_of(listing)},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert fresh.client.get("/v1/auth/me", headers={"x-api-key": key.group(1)}).status_code == 401
    audit = fresh.client.get("/console/audit").text
    assert "key.created" in audit and "key.revoked" in audit
    assert user in audit  # the actor is named


def test_members_see_only_their_own_audit_events(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    fresh.client.post(
        "/console/keys", data={"name": "mine", "scopes": "predict:*", "csrf_token": fresh.csrf()}
    )
    fresh.client.cookies.clear()
    fresh.signed_in()
    page = fresh.client.get("/console/audit").text
    assert "<td>key.created</td>" not in page
    assert "<td>login.succeeded</td>" in page  # their own sign-in
    assert 'id="f-actor"' not in page  # no actor filter for members


def test_the_audit_log_filters_by_actor_action_and_time(fresh: ConsoleClient) -> None:
    admin = fresh.signed_in("admin")
    fresh.client.post(
        "/console/keys", data={"name": "a", "scopes": "predict:*", "csrf_token": fresh.csrf()}
    )
    users = fresh.client.get("/console/users").text
    admin_id = re.search(
        r'<option value="([0-9a-f]{32})">' + admin, fresh.client.get("/console/audit").text
    )
    assert admin_id is not None
    mine = fresh.client.get(f"/console/audit?actor={admin_id.group(1)}&event=key.created").text
    rows = re.findall(r"<td>key\.created</td>", mine)
    assert len(rows) == 1
    assert "login.succeeded</td>" not in mine
    future = fresh.client.get("/console/audit?since=2999-01-01T00:00").text
    assert "No events." in future
    past = fresh.client.get("/console/audit?until=2000-01-01T00:00").text
    assert "No events." in past
    assert fresh.client.get("/console/audit?since=yesterday").status_code == 422
    assert fresh.client.get("/console/audit?event=no.such").status_code == 422
    assert users


def test_audit_pages_go_back_by_id(fresh: ConsoleClient) -> None:
    admin = fresh.signed_in("admin")
    for _ in range(55):
        assert fresh.sign_in(admin).status_code == 303
    first = fresh.client.get("/console/audit?event=login.succeeded").text
    older = re.search(r'href="(/console/audit\?event=login.succeeded&amp;before=\d+)"', first)
    assert older is not None
    second = fresh.client.get(older.group(1).replace("&amp;", "&")).text
    ids_first = {int(i) for i in re.findall(r'<td class="num">(\d+)</td>', first)}
    ids_second = {int(i) for i in re.findall(r'<td class="num">(\d+)</td>', second)}
    assert len(ids_first) == 50
    assert ids_second
    assert max(ids_second) < min(ids_first)
