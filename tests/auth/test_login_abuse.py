"""S4 (brute force, credential stuffing, spoofed X-Forwarded-For) and S5 (user enumeration)."""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest

from tests.auth.support import PASSWORD, AuthClient, serving_auth, settings_for


def attempt(api: AuthClient, username: str, password: str, **headers: str) -> int:
    response = api.client.post(
        "/v1/auth/token", data={"username": username, "password": password}, headers=headers
    )
    return response.status_code


def test_brute_force_is_limited_per_account_and_address(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path, login_rate_limit="5/hour")
    with serving_auth(settings) as api:
        _, victim = api.new_user()
        _, bystander = api.new_user()
        statuses = [attempt(api, victim, f"guess number {i}") for i in range(50)]
        assert statuses[:5] == [401] * 5
        assert set(statuses[5:]) == {429}
        limited = api.client.post("/v1/auth/token", data={"username": victim, "password": "x"})
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.headers["ratelimit-limit"] == "5"
        # The right password does not get through the closed bucket either...
        assert attempt(api, victim, PASSWORD) == 429
        # ...spoofing X-Forwarded-For from an untrusted peer changes nothing...
        for i in range(20):
            assert attempt(api, victim, PASSWORD, **{"x-forwarded-for": f"203.0.113.{i}"}) == 429
        # ...and nobody else is locked out (no global lockout of a targeted user's peers).
        api.login(bystander)


def test_credential_stuffing_is_limited_per_address(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(sqlite_url, tmp_path, login_ip_rate_limit="20/hour")
    with serving_auth(settings) as api:
        statuses = [
            attempt(api, f"user{i}", "Summer2024!", **{"x-forwarded-for": f"198.51.100.{i}"})
            for i in range(60)
        ]
        assert statuses[:20] == [401] * 20
        assert set(statuses[20:]) == {429}


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        sqlite_url, tmp_path, login_rate_limit="3/hour", trusted_proxies=("10.0.0.0/8",)
    )
    with serving_auth(settings, peer=("10.1.2.3", 4000)) as api:
        _, victim = api.new_user()
        for _ in range(3):
            assert attempt(api, victim, "wrong", **{"x-forwarded-for": "192.0.2.1"}) == 401
        assert attempt(api, victim, "wrong", **{"x-forwarded-for": "192.0.2.1"}) == 429
        # Behind the proxy, another client is another bucket; an entry the client prepended
        # itself (left of the proxy's) is ignored.
        spoofed = {"x-forwarded-for": "192.0.2.1, 192.0.2.2"}
        assert attempt(api, victim, "wrong", **spoofed) == 401
        events = api.client.get(
            "/v1/audit",
            params={"event": "login.failed"},
            headers=api.user_headers("admin")[1],
        ).json()["data"]
        assert {e["client_ip"] for e in events} == {"192.0.2.1", "192.0.2.2"}


def _shape(response: object) -> tuple[int, dict[str, str], dict[str, object]]:
    headers = {
        k: v
        for k, v in response.headers.items()  # type: ignore[attr-defined]
        if k not in ("x-request-id", "date", "content-length")
    }
    body = response.json()  # type: ignore[attr-defined]
    body["error"].pop("request_id")
    return response.status_code, headers, body  # type: ignore[attr-defined]


def test_unknown_user_wrong_password_and_disabled_user_look_the_same(
    sqlite_url: str, tmp_path: Path
) -> None:
    # Real Argon2 costs here: the timing claim is only meaningful when hashing takes time.
    settings = settings_for(
        sqlite_url,
        tmp_path,
        argon2_memory_kib=19 * 1024,
        argon2_time_cost=2,
        login_rate_limit="10000/minute",
        login_ip_rate_limit="10000/minute",
    )
    with serving_auth(settings) as api:
        _, admin = api.user_headers("admin")
        _, known = api.new_user()
        disabled_id, disabled = api.new_user()
        api.client.patch(f"/v1/users/{disabled_id}", json={"is_active": False}, headers=admin)
        cases = {
            "unknown": ("nobody-by-this-name", PASSWORD),
            "wrong password": (known, "not the password"),
            "disabled": (disabled, PASSWORD),
        }
        shapes = {
            name: _shape(api.client.post("/v1/auth/token", data={"username": u, "password": p}))
            for name, (u, p) in cases.items()
        }
        assert shapes["unknown"] == shapes["wrong password"] == shapes["disabled"]
        assert shapes["unknown"][0] == 401

        # Each round times the three cases back to back in a random order and keeps the
        # differences to the wrong-password case: paired, so load drifting over the run (other
        # processes on the machine) cancels out.
        differences: dict[str, list[float]] = {"unknown": [], "disabled": []}
        rng = random.Random(5)
        for _ in range(50):
            order = list(cases)
            rng.shuffle(order)
            took = {}
            for name in order:
                username, password = cases[name]
                started = time.perf_counter()
                api.client.post("/v1/auth/token", data={"username": username, "password": password})
                took[name] = time.perf_counter() - started
            for name in differences:
                differences[name].append(took[name] - took["wrong password"])
        medians = {name: statistics.median(d) for name, d in differences.items()}
        assert all(abs(m) < 0.010 for m in medians.values()), f"median differences: {medians}"


def test_every_failed_login_does_the_same_hashing_work(lite: AuthClient) -> None:
    _, admin = lite.user_headers("admin")
    _, known = lite.new_user()
    disabled_id, disabled = lite.new_user()
    lite.client.patch(f"/v1/users/{disabled_id}", json={"is_active": False}, headers=admin)
    hasher = lite.auth.hasher
    calls: list[str] = []
    original = hasher._run

    async def counting(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(fn.__name__)
        return await original(fn, *args, **kwargs)

    hasher._run = counting  # type: ignore[method-assign]
    for username, password in (("nobody-here", PASSWORD), (known, "nope"), (disabled, PASSWORD)):
        calls.clear()
        response = lite.client.post(
            "/v1/auth/token", data={"username": username, "password": password}
        )
        assert response.status_code == 401
        assert len(calls) == 1 and calls[0].startswith("verify"), (username, calls)


@pytest.mark.parametrize("username", ["", "a" * 300])
def test_bad_login_forms_are_4xx(lite: AuthClient, username: str) -> None:
    response = lite.client.post("/v1/auth/token", data={"username": username, "password": "x"})
    assert response.status_code == 422


def test_login_wants_a_form(lite: AuthClient) -> None:
    response = lite.client.post("/v1/auth/token", json={"username": "a", "password": "b"})
    assert response.status_code == 422
