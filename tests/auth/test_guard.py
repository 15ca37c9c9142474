"""The PredictGuard and credential parsing: headers, client addresses, the credential cache,
revocation across processes (S7), and why a cached check is cheap."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from modelserve.auth import AuthSystem
from modelserve.auth.guard import client_address, credential_from_headers, parse_networks
from modelserve.db import migrate
from modelserve.db.engine import Database
from modelserve.errors import AuthenticationError, PermissionDeniedError, RateLimitedError
from modelserve.schemas.auth import ApiKeyCreate, UserCreate
from modelserve.types import Principal
from tests.auth.support import PASSWORD, settings_for

OWNER = Principal(
    kind="anonymous", subject="t", owner_id=None, role="admin",
    scopes=frozenset({"admin"}), rate_key="t",
)  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"authorization", b"Bearer abc")], b"abc"),
        ([(b"authorization", b"bearer   abc  ")], b"abc"),
        ([(b"x-api-key", b"abc")], b"abc"),
        ([(b"x-api-key", b"abc"), (b"authorization", b"Bearer abc")], b"abc"),
        ([(b"accept", b"*/*")], None),
    ],
)
def test_credentials_come_from_two_headers(
    headers: list[tuple[bytes, bytes]], expected: bytes | None
) -> None:
    assert credential_from_headers(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Basic dXNlcjpwYXNz")],
        [(b"authorization", b"Digest abc")],
        [(b"authorization", b"Bearer")],
        [(b"authorization", b"abc")],
        [(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")],
        [(b"x-api-key", b"a"), (b"authorization", b"Bearer b")],
        [(b"x-api-key", b"")],
        [(b"authorization", b"Bearer " + b"a" * 5000)],
    ],
)
def test_other_schemes_and_ambiguity_are_refused(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(AuthenticationError):
        credential_from_headers(headers)


def test_client_address() -> None:
    trusted = parse_networks(["10.0.0.0/8", "192.168.1.5"])
    assert client_address("203.0.113.9", "1.2.3.4", trusted) == "203.0.113.9"  # untrusted peer
    assert client_address("10.0.0.2", "1.2.3.4", trusted) == "1.2.3.4"
    assert client_address("10.0.0.2", "9.9.9.9, 1.2.3.4, 10.0.0.7", trusted) == "1.2.3.4"
    assert client_address("10.0.0.2", "1.2.3.4, 192.168.1.5", trusted) == "1.2.3.4"
    assert client_address("10.0.0.2", "garbage", trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", None, trusted) == "10.0.0.2"
    assert client_address("10.0.0.2", "1.2.3.4", ()) == "10.0.0.2"
    assert client_address(None, "1.2.3.4", trusted) is None


async def _system(url: str, data_dir: Path, **auth: object) -> AuthSystem:
    await asyncio.to_thread(migrate.upgrade, url)
    return AuthSystem(settings_for(url, data_dir, **auth), Database(url), announce_to=None)


async def _key(system: AuthSystem, scopes: list[str]) -> tuple[str, str]:
    user = await system.accounts.create_user(
        UserCreate(username=f"u{time.monotonic_ns()}", password=PASSWORD), actor=None,
        meta=_meta(),
    )  # fmt: skip
    created = await system.keys.create(
        ApiKeyCreate(name="k", scopes=scopes, owner_id=user.id), actor=OWNER, meta=_meta()
    )
    return created.key, created.id


def _meta():  # type: ignore[no-untyped-def]
    from modelserve.auth.audit import RequestMeta

    return RequestMeta()


async def test_check_predict_scopes_and_limits(sqlite_url: str, tmp_path: Path) -> None:
    system = await _system(
        sqlite_url,
        tmp_path,
        rate_limits={"predict": "3/minute"},
        model_rate_limits={"b": "1/minute"},
    )
    try:
        key, _ = await _key(system, ["predict:a", "predict:b"])
        headers = [(b"authorization", f"Bearer {key}".encode())]
        principal = await system.guard.check_predict(headers, "a")
        assert principal.kind == "api_key" and principal.scopes == {"predict:a", "predict:b"}
        with pytest.raises(PermissionDeniedError):
            await system.guard.check_predict(headers, "c")
        await system.guard.check_predict(headers, "a")
        await system.guard.check_predict(headers, "b")  # its own budget
        with pytest.raises(RateLimitedError):
            await system.guard.check_predict(headers, "b")
        await system.guard.check_predict(headers, "a")
        with pytest.raises(RateLimitedError) as raised:
            await system.guard.check_predict(headers, "a")
        assert raised.value.headers["RateLimit-Limit"] == "3"
        with pytest.raises(AuthenticationError):
            await system.guard.check_predict([], "a")
    finally:
        await system.close()
        await system.database.dispose()


async def test_the_synchronous_check_answers_only_for_cached_credentials(
    sqlite_url: str, tmp_path: Path
) -> None:
    system = await _system(sqlite_url, tmp_path, rate_limits={"predict": "2/minute"})
    try:
        key, _ = await _key(system, ["predict:a"])
        system.authenticator.forget_all()
        headers = [(b"x-api-key", key.encode())]
        assert system.guard.check_predict_now(headers, "a") is None  # needs the database
        first = await system.guard.check_predict(headers, "a")  # looks it up, counts 1
        now = system.guard.check_predict_now(headers, "a")  # cached: answered at once, counts 2
        assert now is not None and now.subject == first.subject
        with pytest.raises(RateLimitedError):  # the same budget on both paths
            system.guard.check_predict_now(headers, "a")
        with pytest.raises(PermissionDeniedError):
            system.guard.check_predict_now(headers, "b")
        with pytest.raises(AuthenticationError):
            system.guard.check_predict_now([], "a")
    finally:
        await system.close()
        await system.database.dispose()


async def test_revocation_reaches_another_process_within_the_cache_ttl(
    database_url: str, tmp_path: Path
) -> None:
    """Two AuthSystems on one database stand for two server processes."""
    first = await _system(database_url, tmp_path)
    second = await _system(database_url, tmp_path)
    try:
        key, key_id = await _key(first, ["predict:*"])
        headers = [(b"x-api-key", key.encode())]
        await second.guard.check_predict(headers, "m")  # now cached in the second process
        await first.keys.revoke(key_id, actor=OWNER, meta=_meta())
        with pytest.raises(AuthenticationError):
            await first.guard.check_predict(headers, "m")  # this process: at once
        revoked_at = time.monotonic()
        while True:
            try:
                await second.guard.check_predict(headers, "m")
            except AuthenticationError:
                break
            await asyncio.sleep(0.02)
        assert time.monotonic() - revoked_at <= 1.1
    finally:
        for system in (first, second):
            await system.close()
            await system.database.dispose()


async def test_concurrent_misses_share_one_lookup(sqlite_url: str, tmp_path: Path) -> None:
    system = await _system(sqlite_url, tmp_path)
    try:
        key, _ = await _key(system, ["predict:*"])
        system.authenticator.forget_all()
        calls = 0
        original = system.authenticator._resolve_key

        async def counting(credential: str):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await original(credential)

        system.authenticator._resolve_key = counting  # type: ignore[method-assign]
        headers = [(b"x-api-key", key.encode())]
        await asyncio.gather(*(system.guard.check_predict(headers, "m") for _ in range(20)))
        assert calls == 1
    finally:
        await system.close()
        await system.database.dispose()


async def test_a_cached_check_does_no_lookup_and_still_counts_every_request(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Why a cached check_predict is cheap, asserted by structure, not by timing (bench/
    measures the time): after the first lookup, neither check_predict nor check_predict_now
    resolves the key or opens a database session again, yet the rate limit counts every call."""
    system = await _system(
        sqlite_url, tmp_path, credential_cache_ttl_s=1.0, rate_limits={"predict": "1000000/second"}
    )
    try:
        key, key_id = await _key(system, ["predict:*"])
        authenticator, guard, limiter = system.authenticator, system.guard, system.limiter
        authenticator.forget_all()
        # A frozen clock: the cache entry cannot expire mid-test on a slow machine.
        now = time.monotonic()
        authenticator._clock = lambda: now  # type: ignore[method-assign]
        counts = {"resolve": 0, "session": 0, "limit": 0}
        resolve, session, check_and_hit = (
            authenticator._resolve_key, system.database.session, limiter.check_and_hit,  # type: ignore[attr-defined]
        )  # fmt: skip

        async def counting_resolve(credential: str):  # type: ignore[no-untyped-def]
            counts["resolve"] += 1
            return await resolve(credential)

        def counting_session(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            counts["session"] += 1
            return session(*args, **kwargs)

        def counting_limit(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            counts["limit"] += 1
            return check_and_hit(*args, **kwargs)

        authenticator._resolve_key = counting_resolve  # type: ignore[method-assign]
        system.database.session = counting_session  # type: ignore[method-assign]
        limiter.check_and_hit = counting_limit  # type: ignore[attr-defined]
        headers = [(b"authorization", f"Bearer {key}".encode())]

        first = await guard.check_predict(headers, "m")
        assert first.subject == key_id
        assert counts["resolve"] == 1 and counts["session"] >= 1 and counts["limit"] == 1
        after_first = dict(counts)
        n = 200
        for _ in range(n):
            assert (await guard.check_predict(headers, "m")).subject == key_id
            cached = guard.check_predict_now(headers, "m")
            assert cached is not None and cached.subject == key_id  # answered without awaiting
        assert counts["resolve"] == after_first["resolve"]
        assert counts["session"] == after_first["session"]
        assert counts["limit"] == after_first["limit"] + 2 * n
    finally:
        await system.close()
        await system.database.dispose()
