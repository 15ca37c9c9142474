"""`RedisStore`: answers shared by every worker and replica, in Redis.

Redis is an optimisation here, never a dependency: every operation has a short timeout, a
circuit breaker stops asking after repeated failures, and any failure is a miss (lookups) or
nothing (writes), counted by the observer, never an error for the client. Writes go out in
the background after the answer, so a slow Redis never delays one.

Values are msgpack `[format, payload, non_finite]`: the encoded response body as bytes, with
no JSON around it. An answer over `max_entry_bytes` is not stored. Log lines name the error's
type only: a Redis error's text can hold the URL, and the URL can hold a password.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from modelserve.cache.answers import Answer, CacheObserver
from modelserve.cache.breaker import CircuitBreaker
from modelserve.errors import ServiceUnavailableError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

logger = logging.getLogger("modelserve.cache")

VALUE_FORMAT = 1
# Background writes in flight at once; past it, answers are not stored (the next is a miss).
MAX_PENDING_WRITES = 256
# A purge walks the model's keys in pages of this size; each page gets `purge_timeout_s`.
PURGE_PAGE = 1000
PURGE_TIMEOUT_S = 5.0


class RedisStore:
    """Answers in Redis under `<prefix>:<model>:<key hex>`, with a TTL each."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout_s: float,
        breaker: CircuitBreaker,
        max_entry_bytes: int,
        observer: CacheObserver,
        max_connections: int = 64,
        client_factory: Callable[[], aioredis.Redis] | None = None,
    ) -> None:
        self._url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.max_entry_bytes = max_entry_bytes
        self._observer = observer
        self._max_connections = max_connections
        self._factory = client_factory
        self._client: aioredis.Redis | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def _redis(self) -> aioredis.Redis:
        client = self._client
        if client is None:
            if self._factory is not None:
                client = self._factory()
            else:
                import redis.asyncio as aioredis

                # Connection attempts and replies bounded like the whole call (`wait_for`
                # below): a black-holed Redis costs one timeout, not the OS's connect timeout.
                client = aioredis.Redis.from_url(
                    self._url,
                    socket_timeout=self.timeout_s,
                    socket_connect_timeout=self.timeout_s,
                    max_connections=self._max_connections,
                    retry_on_timeout=False,
                )
            self._client = client
        return client

    def key(self, model: str, key: bytes) -> str:
        """The Redis key of one answer; the model in it lets a purge find the model's keys."""
        return f"{self.prefix}:{model}:{key.hex()}"

    async def get(self, model: str, key: bytes) -> Answer | None:
        """The stored answer, or None: absent, or Redis failing, slow or skipped."""
        if not self.breaker.allow():
            self._observer.on_redis_error("open")
            return None
        try:
            raw = await asyncio.wait_for(self._redis().get(self.key(model, key)), self.timeout_s)
        except Exception as exc:
            self._failed(exc)
            return None
        self.breaker.success()
        if not isinstance(raw, bytes):  # absent (None); never str: no decode_responses
            return None
        return _decode(raw)

    def put_soon(self, model: str, key: bytes, answer: Answer, ttl_s: float) -> None:
        """Store an answer in the background (the caller's answer does not wait for it)."""
        if len(answer.payload) > self.max_entry_bytes:
            self._observer.on_redis_error("oversize")
            return
        if len(self._writes) >= MAX_PENDING_WRITES or not self.breaker.allow():
            return
        task = asyncio.get_running_loop().create_task(self._put(model, key, answer, ttl_s))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _put(self, model: str, key: bytes, answer: Answer, ttl_s: float) -> None:
        value = msgpack.packb([VALUE_FORMAT, answer.payload, answer.non_finite])
        try:
            await asyncio.wait_for(
                self._redis().set(self.key(model, key), value, px=max(1, int(ttl_s * 1000))),
                self.timeout_s,
            )
        except Exception as exc:
            self._failed(exc)
            return
        self.breaker.success()

    async def purge(self, model: str) -> int:
        """Delete every answer of `model` (every version, every tenant); how many there were.

        Unlike lookups, a failure here is the caller's to know: ServiceUnavailableError (503).
        """
        client = self._redis()
        deleted = 0
        cursor: Any = 0
        try:
            while True:
                cursor, keys = await asyncio.wait_for(
                    client.scan(cursor, match=f"{self.prefix}:{model}:*", count=PURGE_PAGE),
                    PURGE_TIMEOUT_S,
                )
                if keys:
                    deleted += int(await asyncio.wait_for(client.unlink(*keys), PURGE_TIMEOUT_S))
                if not cursor:
                    return deleted
        except Exception as exc:
            logger.warning("cache purge of %r in Redis failed: %s", model, type(exc).__name__)
            raise ServiceUnavailableError(
                "the shared cache (Redis) did not answer: nothing or only part was purged",
                retry_after_s=5,
            ) from None

    @property
    def pending_writes(self) -> int:
        """Background writes still in flight (for tests)."""
        return len(self._writes)

    async def close(self) -> None:
        """Wait briefly for writes in flight, then close the connections."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=self.timeout_s * 2)
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception as exc:  # closing a broken connection: nothing left to do
                logger.debug("closing the cache's Redis client: %s", type(exc).__name__)

    def _failed(self, exc: BaseException) -> None:
        self.breaker.failure()
        # asyncio's timeout, or redis-py's own (a socket timeout), which is no TimeoutError.
        timeout = isinstance(exc, TimeoutError) or type(exc).__name__ == "TimeoutError"
        self._observer.on_redis_error("timeout" if timeout else "error")
        logger.debug("cache Redis call failed: %s", type(exc).__name__)


def _decode(raw: bytes) -> Answer | None:
    """A stored value as a hit; None for a value this release cannot read (another format)."""
    try:
        fmt, payload, non_finite = msgpack.unpackb(raw)
    except Exception:
        return None
    if fmt != VALUE_FORMAT or not isinstance(payload, bytes):
        return None
    return Answer(payload, bool(non_finite), "hit")
