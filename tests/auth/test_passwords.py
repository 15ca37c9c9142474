"""S16: the password policy, and Argon2id hashing with bounded concurrency."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelserve.auth.passwords import PasswordHasher, check_password_policy, common_passwords
from modelserve.errors import InvalidInputError, OverloadedError
from tests.auth.support import AuthClient


def hasher(**overrides: int) -> PasswordHasher:
    return PasswordHasher(**{"memory_kib": 64, "time_cost": 1, **overrides})


@pytest.mark.parametrize(
    "password",
    ["tiger-lily", "x" * 64, "y" * 128, "pässwörd-ünïcödé", "🔑🔑🔑🔑🔑🔑🔑🔑", "  spaced  out  "],
)
async def test_acceptable_passwords_verify_exactly(password: str) -> None:
    check_password_policy(password)
    h = hasher()
    try:
        stored = await h.hash(password)
        assert stored.startswith("$argon2id$")
        assert (await h.verify(password, stored))[0]
        # No truncation and no trimming: one character less, or stripped, does not verify.
        assert not (await h.verify(password[:-1], stored))[0]
        if password != password.strip():
            assert not (await h.verify(password.strip(), stored))[0]
    finally:
        h.close()


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("abcdefg", "at least 8"),
        ("z" * 129, "at most 128"),
        ("password123", "too common"),
        ("PASSWORD123", "too common"),
        ("qwertyuiop", "too common"),
        ("iloveyou1", "too common"),
    ],
)
def test_refused_passwords(password: str, reason: str) -> None:
    with pytest.raises(InvalidInputError, match=reason):
        check_password_policy(password)


def test_no_composition_rules_and_not_the_username() -> None:
    check_password_policy("all lowercase words only")
    check_password_policy("12345678901234567890123")
    with pytest.raises(InvalidInputError, match="username"):
        check_password_policy("Alice.Smith.99", username="alice.smith.99")


def test_the_bundled_list_is_loaded() -> None:
    words = common_passwords()
    assert len(words) > 200
    assert all(len(w) >= 8 for w in words)


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("abcdefg", 422),
        ("password123", 422),
        ("z" * 129, 422),
        ("y" * 128, 201),
        ("a b c d e", 201),
    ],
)
def test_policy_applies_over_http(lite: AuthClient, password: str, status: int) -> None:
    _, admin = lite.user_headers("admin")
    name = f"p{len(password)}{status}x"
    response = lite.client.post(
        "/v1/users", json={"username": name, "password": password}, headers=admin
    )
    assert response.status_code == status, response.text
    if status == 201:
        lite.login(name, password)


async def test_hashing_backlog_is_bounded() -> None:
    h = PasswordHasher(memory_kib=8 * 1024, time_cost=3, concurrency=1, queue=2)
    try:
        results = await asyncio.gather(
            *(h.hash("some password") for _ in range(10)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, OverloadedError)]
        hashed = [r for r in results if isinstance(r, str)]
        assert len(hashed) == 3 and len(refused) == 7
        assert await h.hash("later works again")
    finally:
        h.close()


class CountingHash:
    """Wraps pwdlib's PasswordHash and records each verification it runs."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def hash(self, password: str) -> str:
        value: str = self.inner.hash(password)
        return value

    def verify(self, password: str, hashed: str) -> bool:
        self.calls.append("verify")
        matches: bool = self.inner.verify(password, hashed)
        return matches

    def verify_and_update(self, password: str, hashed: str) -> tuple[bool, str | None]:
        self.calls.append("verify_and_update")
        result: tuple[bool, str | None] = self.inner.verify_and_update(password, hashed)
        return result


@pytest.mark.parametrize(
    "password", ["anything", "", "x" * 128, "pässwörd-ünïcödé", "\x00", "$argon2id$v=19$"]
)
async def test_dummy_verification_never_matches(password: str) -> None:
    h = hasher()
    spy = CountingHash(h._hash)
    h._hash = spy  # type: ignore[assignment]
    try:
        assert await h.verify_dummy(password) is False
        # It did the work of a real check (one Argon2 verification), not an early return.
        assert spy.calls == ["verify"]
    finally:
        h.close()


def test_unknown_and_known_users_cost_one_verification_each(lite: AuthClient) -> None:
    # S5 without timing: an unknown username runs one Argon2 verification against the dummy
    # hash, as a known one with a wrong password runs one against the stored hash.
    _, known = lite.new_user()
    spy = CountingHash(lite.auth.hasher._hash)
    lite.auth.hasher._hash = spy  # type: ignore[assignment]
    for username in ("nobody-by-this-name", known):
        spy.calls.clear()
        response = lite.client.post(
            "/v1/auth/token", data={"username": username, "password": "not the password"}
        )
        assert response.status_code == 401
        assert len(spy.calls) == 1, (username, spy.calls)
