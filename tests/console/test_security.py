"""S13 in-process: headers, cookie flags, CSRF, Fetch Metadata, sign-in, idle timeout, logout."""

from __future__ import annotations

import time
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from modelserve.auth.tokens import TokenCodec
from modelserve.console.security import CONSOLE_CSP
from modelserve.types import ANONYMOUS
from tests.auth.support import PASSWORD
from tests.console.services import Scaler
from tests.console.support import ConsoleClient, console_app, console_settings, csrf_of

PAGES = (
    "/console/",
    "/console/live/overview",
    "/console/models/scaler",
    "/console/models/scaler/playground",
    "/console/keys",
    "/console/users",
    "/console/audit",
    "/console/login",
    "/console/nope",
)


def cookies_of(response_headers: list[tuple[str, str]]) -> dict[str, str]:
    """name -> the raw Set-Cookie line."""
    found = {}
    for name, value in response_headers:
        if name.lower() == "set-cookie":
            found[value.split("=", 1)[0]] = value
    return found


def csp_of(header: str) -> dict[str, list[str]]:
    policy: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        policy[name] = sources
    return policy


@pytest.mark.parametrize("path", PAGES)
def test_every_page_carries_the_security_headers(fresh: ConsoleClient, path: str) -> None:
    fresh.signed_in("admin")
    response = fresh.client.get(path)
    assert response.status_code in (200, 404), response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = csp_of(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    assert "'unsafe-eval'" not in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["cache-control"] == "no-store"


def test_refusals_carry_the_headers_too(fresh: ConsoleClient) -> None:
    for response in (
        fresh.client.get("/console/", follow_redirects=False),
        fresh.client.post("/console/keys", data={"name": "x"}),
    ):
        assert response.headers["content-security-policy"] == CONSOLE_CSP
        assert response.headers["x-frame-options"] == "DENY"


def test_pages_need_a_session(fresh: ConsoleClient) -> None:
    page = fresh.client.get("/console/keys", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=%2Fconsole%2Fkeys"
    polled = fresh.client.get("/console/live/overview", headers={"hx-request": "true"})
    assert polled.status_code == 200
    assert polled.headers["hx-redirect"].startswith("/console/login")
    assert polled.text == ""
    posted = fresh.client.post("/console/keys", data={"name": "x"})
    assert posted.status_code == 403


def test_dev_session_cookie_is_httponly_strict_and_scoped_to_the_console(
    fresh: ConsoleClient,
) -> None:
    name = fresh.new_user()
    response = fresh.sign_in(name)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/"
    line = cookies_of(response.headers.multi_items())["modelserve-console"]
    lowered = line.lower()
    assert "httponly" in lowered
    assert "samesite=strict" in lowered
    assert "path=/console" in lowered
    assert "secure" not in lowered  # dev mode serves plain HTTP on 127.0.0.1


def test_secure_cookies_use_the_host_prefix(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, secure_cookies=True)
    with console_app(settings, [Scaler], base_url="https://testserver") as console:
        login = console.client.get("/console/login")
        login_cookie = cookies_of(login.headers.multi_items())["__Host-modelserve-console-login"]
        assert "secure" in login_cookie.lower()
        response = console.sign_in(console.new_user())
        assert response.status_code == 303, response.text
        line = cookies_of(response.headers.multi_items())["__Host-modelserve-console"]
        parsed = SimpleCookie()
        parsed.load(line)
        morsel = parsed["__Host-modelserve-console"]
        assert morsel["secure"] is True
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "strict"
        assert morsel["path"] == "/"
        assert not morsel["domain"]
        assert console.client.get("/console/keys").status_code == 200


def test_state_changes_need_the_sessions_csrf_token(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    token = fresh.csrf()
    data = {"name": "k", "scopes": "predict:*"}
    assert fresh.client.post("/console/keys", data=data).status_code == 403
    assert (
        fresh.client.post("/console/keys", data={**data, "csrf_token": "0" * 64}).status_code == 403
    )
    assert (
        fresh.client.post("/console/keys", data=data, headers={"x-csrf-token": ""}).status_code
        == 403
    )
    # Another session's token is refused: tokens are tied to the session.
    fresh.client.cookies.clear()
    fresh.signed_in()
    assert fresh.client.post("/console/keys", data={**data, "csrf_token": token}).status_code == 403
    mine = fresh.csrf()
    assert mine != token
    assert fresh.client.post("/console/keys", data={**data, "csrf_token": mine}).status_code == 200
    assert (
        fresh.client.post("/console/keys", data=data, headers={"x-csrf-token": mine}).status_code
        == 200
    )


def test_forms_with_many_files_are_refused(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    files = [("f", (f"{i}.bin", b"x", "application/octet-stream")) for i in range(5)]
    response = fresh.client.post(
        "/console/models/sizer/playground", data={"csrf_token": fresh.csrf()}, files=files
    )
    assert response.status_code == 400
    assert response.headers["content-security-policy"] == CONSOLE_CSP


def test_a_csrf_refusal_is_audited(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    fresh.client.post("/console/keys", data={"name": "k"})
    audit = fresh.client.get("/console/audit?event=access.denied").text
    assert "reason=csrf" in audit


def test_cross_site_posts_are_refused_even_with_the_token(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    token = fresh.csrf()
    response = fresh.client.post(
        "/console/keys",
        data={"name": "k", "scopes": "predict:*", "csrf_token": token},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert response.status_code == 403


def test_sign_in_form_needs_its_double_submit_token(fresh: ConsoleClient) -> None:
    name = fresh.new_user()
    fresh.client.get("/console/login")
    refused = fresh.client.post(
        "/console/login", data={"username": name, "password": PASSWORD}, follow_redirects=False
    )
    assert refused.status_code == 403
    forged = fresh.client.post(
        "/console/login",
        data={"username": name, "password": PASSWORD, "csrf_token": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert "modelserve-console" not in fresh.client.cookies


def test_wrong_password_and_unknown_user_read_the_same(fresh: ConsoleClient) -> None:
    name = fresh.new_user()
    wrong = fresh.sign_in(name, "not the password")
    unknown = fresh.sign_in("nobody-at-all", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert "Invalid username or password." in wrong.text
    assert "Invalid username or password." in unknown.text


def test_sign_in_runs_the_apis_login_limits(tmp_path: Path) -> None:
    settings = console_settings(tmp_path)
    settings = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"login_rate_limit": "3/minute"})}
    )
    with console_app(settings, [Scaler]) as console:
        name = console.new_user()
        statuses = [console.sign_in(name, "wrong password!").status_code for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        limited = console.sign_in(name)  # even the right password, for this account and address
        assert limited.status_code == 429
        assert "retry-after" in limited.headers
        events = console.client.portal.call(  # type: ignore[union-attr]
            lambda: console.auth.audit_reader.list(
                actor=ANONYMOUS, event="login.limited", before_id=None, limit=10
            )
        )
        assert events.data


def test_next_never_leaves_the_console(fresh: ConsoleClient) -> None:
    name = fresh.new_user()
    for target in ("https://evil.example/", "//evil.example/console/", "/v1/keys", "/console\\@x"):
        fresh.client.cookies.clear()
        form = fresh.client.get("/console/login")
        response = fresh.client.post(
            "/console/login",
            data={
                "username": name,
                "password": PASSWORD,
                "csrf_token": csrf_of(form.text),
                "next": target,
            },
            follow_redirects=False,
        )
        assert response.headers["location"] == "/console/", target


def test_sign_out_ends_the_api_session_too(fresh: ConsoleClient) -> None:
    fresh.signed_in()
    token = fresh.client.cookies["modelserve-console"]
    api = {"authorization": f"Bearer {token}"}
    assert fresh.client.get("/v1/auth/me", headers=api).status_code == 200
    response = fresh.client.post(
        "/console/logout", data={"csrf_token": fresh.csrf()}, follow_redirects=False
    )
    assert response.status_code == 303
    assert "modelserve-console" not in fresh.client.cookies
    assert fresh.client.get("/v1/auth/me", headers=api).status_code == 401
    # The old cookie, replayed, is no good either.
    replace_session(fresh, token)
    assert fresh.client.get("/console/keys", follow_redirects=False).status_code == 303


def replace_session(console: ConsoleClient, token: str) -> None:
    """Put `token` in the session cookie in place of the one the server set."""
    console.client.cookies.clear()
    console.client.cookies.set(
        "modelserve-console", token, domain="testserver.local", path="/console"
    )


def _aged_token(console: ConsoleClient, token: str, age_s: float) -> str:
    """A token of the same session issued `age_s` seconds ago."""
    codec = console.auth.codec
    claims = codec.verify(token)
    old = TokenCodec(
        codec.keys,
        issuer=codec.issuer,
        audience=codec.audience,
        ttl_s=codec.ttl_s,
        leeway_s=codec.leeway_s,
        clock=lambda: time.time() - age_s,
    )
    return old.issue(user_id=claims.user_id, session_id=claims.session_id)


def test_an_idle_session_ends(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, idle_timeout_s=120)
    with console_app(settings, [Scaler]) as console:
        console.signed_in()
        token = console.client.cookies["modelserve-console"]
        replace_session(console, _aged_token(console, token, 130))
        response = console.client.get("/console/keys", follow_redirects=False)
        assert response.status_code == 303
        assert "expired=1" in response.headers["location"]
        # The whole session ended, not just the cookie: its tokens are refused by the API.
        me = console.client.get("/v1/auth/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 401


def test_activity_renews_the_cookie_but_polling_does_not(tmp_path: Path) -> None:
    settings = console_settings(tmp_path, idle_timeout_s=600)
    with console_app(settings, [Scaler]) as console:
        console.signed_in()
        token = console.client.cookies["modelserve-console"]
        aged = _aged_token(console, token, 90)
        replace_session(console, aged)
        polled = console.client.get("/console/live/overview")
        assert polled.status_code == 200
        assert "set-cookie" not in polled.headers
        viewed = console.client.get("/console/keys")
        assert viewed.status_code == 200
        renewed = cookies_of(viewed.headers.multi_items())["modelserve-console"]
        assert aged not in renewed
        fresh_token = console.client.cookies["modelserve-console"]
        claims = console.auth.codec.verify(fresh_token)
        assert claims.session_id == console.auth.codec.verify(token).session_id


def test_a_disabled_user_is_signed_out(fresh: ConsoleClient) -> None:
    fresh.signed_in("admin")
    admin_cookie = fresh.client.cookies["modelserve-console"]
    fresh.client.cookies.clear()
    member = fresh.signed_in()
    member_cookie = fresh.client.cookies["modelserve-console"]
    replace_session(fresh, admin_cookie)
    users = fresh.client.get("/console/users").text
    user_id = users[users.index(member) :].split('action="/console/users/', 1)[1][:32]
    done = fresh.client.post(
        f"/console/users/{user_id}",
        data={"action": "disable", "csrf_token": csrf_of(users)},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text
    replace_session(fresh, member_cookie)
    assert fresh.client.get("/console/keys", follow_redirects=False).status_code == 303
