"""Rate limits: the memory limiter on a fake clock, and R21 (one budget across processes in
Redis)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from modelserve.auth.ratelimit import MemoryRateLimiter, RedisRateLimiter, parse_rules
from modelserve.errors import RateLimitedError


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_parse_rules() -> None:
    rules = parse_rules("100/second; 10000/day")
    assert [(r.amount, r.period_s) for r in rules] == [(100, 1), (10000, 86400)]
    assert parse_rules("") == ()
    assert [(r.amount, r.period_s) for r in parse_rules("5 per 2 minutes")] == [(5, 120)]


def test_memory_limiter_window_and_headers() -> None:
    clock = FakeClock(1000.0)
    limiter = MemoryRateLimiter(clock=clock)
    rules = parse_rules("3/minute")
    for _ in range(3):
        limiter.check_and_hit("k", rules)
    with pytest.raises(RateLimitedError) as raised:
        limiter.check_and_hit("k", rules)
    error = raised.value
    assert 1 <= error.retry_after_s <= 60
    assert error.headers["RateLimit-Limit"] == "3"
    assert error.headers["RateLimit-Remaining"] == "0"
    assert error.headers["RateLimit-Policy"] == "3;w=60"
    limiter.check_and_hit("other", rules)  # per key
    # Two windows later nothing of the old one counts.
    clock.now += 120
    for _ in range(3):
        limiter.check_and_hit("k", rules)


def test_memory_limiter_slides_and_denials_cost_nothing() -> None:
    clock = FakeClock(600.0)  # the start of a minute window
    limiter = MemoryRateLimiter(clock=clock)
    rules = parse_rules("10/minute")
    for _ in range(10):
        limiter.check_and_hit("k", rules)
    for _ in range(5):
        with pytest.raises(RateLimitedError):
            limiter.check_and_hit("k", rules)
    # 30 s into the next window half of the previous window still counts: 5 more fit.
    clock.now += 90
    accepted = 0
    for _ in range(10):
        try:
            limiter.check_and_hit("k", rules)
            accepted += 1
        except RateLimitedError:
            pass
    assert accepted == 5


def test_all_rules_must_allow() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    rules = parse_rules("2/second;3/hour")
    limiter.check_and_hit("k", rules)
    limiter.check_and_hit("k", rules)
    with pytest.raises(RateLimitedError, match="2 per 1s"):
        limiter.check_and_hit("k", rules)
    clock.now += 1.5
    limiter.check_and_hit("k", rules)
    clock.now += 2
    with pytest.raises(RateLimitedError, match="3 per 3600s") as raised:
        limiter.check_and_hit("k", rules)
    assert raised.value.retry_after_s > 60


async def test_reset_forgets_a_key() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    rules = parse_rules("1/minute")
    await limiter.hit("k", rules)
    await limiter.reset("k", rules)
    await limiter.hit("k", rules)


@pytest.mark.services
async def test_redis_budget_is_shared_by_processes(redis_url: str) -> None:
    """R21: limit 60/min, two limiter instances (two processes) on one Redis, 200 requests."""
    first = RedisRateLimiter(redis_url, fail_open=True)
    second = RedisRateLimiter(redis_url, fail_open=True)
    rules = parse_rules("60/minute")
    accepted = 0
    refusals: list[RateLimitedError] = []

    async def one(limiter: RedisRateLimiter) -> None:
        nonlocal accepted
        try:
            await limiter.hit("predict|key:r21", rules)
            accepted += 1
        except RateLimitedError as exc:
            refusals.append(exc)

    try:
        await asyncio.gather(*(one(first if i % 2 else second) for i in range(200)))
    finally:
        await first.close()
        await second.close()
    assert accepted == 60
    assert len(refusals) == 140
    assert all(1 <= r.retry_after_s <= 60 for r in refusals)


@pytest.mark.services
async def test_redis_outage_fails_open_for_predict_and_closed_for_login() -> None:
    # Nothing listens on port 1: every storage call fails at once.
    lenient = RedisRateLimiter("redis://127.0.0.1:1/0", fail_open=True)
    strict = RedisRateLimiter("redis://127.0.0.1:1/0", fail_open=False)
    rules = parse_rules("1/minute")
    try:
        await lenient.hit("k", rules)
        await lenient.hit("k", rules)
        with pytest.raises(RateLimitedError, match="unavailable"):
            await strict.hit("k", rules)
    finally:
        await lenient.close()
        await strict.close()


@pytest.mark.services
def test_two_server_processes_share_predict_limits_through_redis(
    redis_url: str, tmp_path: Path
) -> None:
    from tests.auth.support import serving_auth, settings_for
    from tests.http.services import Summer

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    settings = settings_for(url, tmp_path, rate_limits={"predict": "10/minute"}).model_copy(
        update={"redis_url": SecretStr(redis_url)}
    )
    with serving_auth(settings, [Summer]) as one, serving_auth(settings, [Summer]) as two:
        _, member = one.user_headers()
        key = one.new_key(member, ["predict:*"])["key"]
        statuses = [
            (one if i % 2 else two)
            .client.post(
                "/v1/models/summer/predict", json={"values": [1]}, headers={"x-api-key": key}
            )
            .status_code
            for i in range(30)
        ]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 20


def test_routes_count_against_their_scope_family(tmp_path: Path) -> None:
    from tests.auth.support import serving_auth, settings_for

    url = f"sqlite:///{tmp_path / 'family.db'}"
    settings = settings_for(url, tmp_path, rate_limits={"admin": "2/hour"})
    with serving_auth(settings) as api:
        _, admin = api.user_headers("admin")
        statuses = [api.client.get("/v1/users", headers=admin).status_code for _ in range(4)]
        limited = api.client.get("/v1/users", headers=admin)
    assert statuses == [200, 200, 429, 429]
    assert limited.headers["retry-after"] and limited.headers["ratelimit-policy"] == "2;w=3600"
