"""Rate limits: rules, a per-process memory limiter, and a Redis limiter shared by processes.

`RateLimiter` is the seam. `MemoryRateLimiter` (the default, and the tests' fake) is a sliding
window counter in a dict: about a microsecond per rule, because it runs on every predict
request. `RedisRateLimiter` uses the `limits` library's moving window on Redis, so N processes
or nodes share one budget exactly (R21), at the price of a Redis round trip per rule.

A denied request consumes nothing; it raises RateLimitedError with Retry-After and the
RateLimit-Limit/-Remaining/-Reset headers.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from limits import RateLimitItem, parse_many

from modelserve.errors import RateLimitedError

logger = logging.getLogger("modelserve.auth")

MAX_MEMORY_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Rule:
    """At most `amount` hits per `period_s` seconds."""

    amount: int
    period_s: int
    item: RateLimitItem

    def __str__(self) -> str:
        return f"{self.amount} per {self.period_s}s"


Rules = tuple[Rule, ...]
NO_RULES: Rules = ()


def parse_rules(text: str) -> Rules:
    """Rules from "100/second;10000/day" (empty: no limit)."""
    if not text.strip():
        return NO_RULES
    items = parse_many(re.sub(r"\s*[,;]\s*", ";", text.strip().strip(";,")))
    return tuple(Rule(item.amount, int(item.get_expiry()), item) for item in items)


def denial(rule: Rule, retry_after_s: float) -> RateLimitedError:
    """The error for a request over `rule`."""
    seconds = max(1, math.ceil(retry_after_s))
    return RateLimitedError(
        f"rate limit exceeded ({rule}); retry in {seconds}s",
        retry_after_s=seconds,
        headers={
            "RateLimit-Limit": str(rule.amount),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(seconds),
            "RateLimit-Policy": f"{rule.amount};w={rule.period_s}",
        },
    )


class RateLimiter(Protocol):
    """Counts hits per key against rules."""

    async def hit(self, key: str, rules: Rules) -> None:
        """Count one hit, or raise RateLimitedError (counting nothing) when a rule is full."""
        ...

    async def reset(self, key: str, rules: Rules) -> None:
        """Forget the hits of `key` (a successful login clears its failures)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class MemoryRateLimiter:
    """Sliding window counters in this process's memory (not shared between workers).

    Each rule keeps the count of the current fixed window and of the previous one; the
    estimate weighs the previous count by how much of it still overlaps the sliding window.
    Synchronous inside, so a check can never interleave with another.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        # key -> per rule: [window index, count in it, count in the window before, period]
        self._windows: dict[str, list[list[int]]] = {}

    async def hit(self, key: str, rules: Rules) -> None:
        """Count one hit, or raise RateLimitedError (counting nothing) when a rule is full."""
        self.check_and_hit(key, rules)

    def check_and_hit(self, key: str, rules: Rules) -> None:
        """`hit` without the coroutine, for the hot path (about a microsecond per rule)."""
        if not rules:
            return
        now = self._clock()
        states = self._windows.get(key)
        if states is None or len(states) != len(rules):
            if len(self._windows) >= MAX_MEMORY_KEYS:
                self._evict(now)
            states = self._windows[key] = [[-1, 0, 0, rule.period_s] for rule in rules]
        for rule, state in zip(rules, states, strict=True):
            period = rule.period_s
            index = int(now // period)
            if state[0] != index:
                # A new window: the current count becomes "previous" only if it is adjacent.
                state[2] = state[1] if state[0] == index - 1 else 0
                state[1] = 0
                state[0] = index
            elapsed = now - index * period
            if state[2] * (1.0 - elapsed / period) + state[1] >= rule.amount:
                raise denial(rule, _retry_after(rule, state, elapsed))
        for state in states:
            state[1] += 1

    async def reset(self, key: str, rules: Rules) -> None:
        """Forget the hits of `key`."""
        self._windows.pop(key, None)

    async def close(self) -> None:
        """Nothing to release."""

    def _evict(self, now: float) -> None:
        # Keys whose windows are all over no longer count; if none are, start over rather than
        # grow without bound (an attacker could otherwise fill memory with keys).
        stale = [
            k
            for k, states in self._windows.items()
            if all(s[0] < int(now // s[3]) - 1 for s in states)
        ]
        for k in stale:
            del self._windows[k]
        if len(self._windows) >= MAX_MEMORY_KEYS:
            self._windows.clear()


def _retry_after(rule: Rule, state: list[int], elapsed: float) -> float:
    period, amount = rule.period_s, rule.amount
    current, previous = state[1], state[2]
    if current + 1 > amount or previous == 0:
        return period - elapsed  # only the next window helps
    # When the previous window's weight has dropped enough for one more hit.
    needed = 1.0 - (amount - 1 - current) / previous
    return max(0.0, min(period - elapsed, needed * period - elapsed))


class RedisRateLimiter:
    """Moving-window limits in Redis (the `limits` library), shared by every process.

    `fail_open` decides what a Redis outage means: allow (predict: availability first) or
    refuse with 429 (login: an outage must not switch brute-force protection off, R9).
    """

    def __init__(self, url: str, *, fail_open: bool, max_connections: int = 32) -> None:
        import redis.asyncio as aioredis
        from limits.aio.storage import RedisStorage
        from limits.aio.strategies import MovingWindowRateLimiter

        plain = url.removeprefix("async+")
        # Our own bounded pool: requests wait briefly for a connection instead of opening one
        # each under a burst, short timeouts turn an outage into the fail-open/closed policy
        # fast, and `close` can release it.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            plain,
            max_connections=max_connections,
            timeout=2.0,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        options: dict[str, Any] = {"connection_pool": self._pool}
        # `limits` types its pass-through options as scalars; a pool is what redis-py takes.
        self._storage = RedisStorage("async+" + plain, implementation="redispy", **options)
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._fail_open = fail_open

    async def hit(self, key: str, rules: Rules) -> None:
        """Count one hit in every rule, or raise RateLimitedError."""
        try:
            # With several rules, look first so a full rule does not let the others be charged
            # (one round trip more; a race between the look and the hit is settled by `hit`).
            for rule in rules if len(rules) > 1 else ():
                if not await self._limiter.test(rule.item, key):
                    reset_at, _ = await self._limiter.get_window_stats(rule.item, key)
                    raise denial(rule, reset_at - time.time())
            for rule in rules:
                if not await self._limiter.hit(rule.item, key):
                    reset_at, _ = await self._limiter.get_window_stats(rule.item, key)
                    raise denial(rule, reset_at - time.time())
        except RateLimitedError:
            raise
        except Exception as exc:  # any storage failure: connection, timeout, protocol
            if self._fail_open:
                logger.warning("rate limiter storage failed; allowing (%s)", type(exc).__name__)
                return
            raise RateLimitedError(
                "rate limiter unavailable; retry shortly", retry_after_s=5
            ) from exc

    async def reset(self, key: str, rules: Rules) -> None:
        """Forget the hits of `key`."""
        try:
            for rule in rules:
                await self._limiter.clear(rule.item, key)
        except Exception:  # clearing is best effort: the window expires anyway
            logger.warning("rate limiter storage failed while clearing a key")

    async def close(self) -> None:
        """Close the connection pool."""
        await self._pool.aclose()
