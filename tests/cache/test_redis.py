"""The Redis store: shared answers across replicas; an outage or a slow Redis is a miss."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from modelserve.cache import PredictionCache
from modelserve.config import CacheConfig
from tests.cache.harness import harness
from tests.cache.recorder import Clock, Recorder
from tests.cache.services import CALLS, Doubler, PerTenant
from tests.e2e.server import free_port
from tests.faults.backends import own_redis


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.reset()


def redis_cache(
    url: str, *, clock: Clock | None = None, **config: object
) -> tuple[PredictionCache, Recorder]:
    recorder = Recorder()
    settings = CacheConfig(
        redis_url=SecretStr(url),
        key_prefix=f"test-cache-{uuid.uuid4().hex[:8]}",
        **config,  # type: ignore[arg-type]
    )
    cache = PredictionCache(settings, observer=recorder, clock=clock or Clock())
    return cache, recorder


async def settled(cache: PredictionCache) -> None:
    """Wait for the background writes (they never delay an answer)."""
    assert cache.redis is not None
    for _ in range(200):
        if not cache.redis.pending_writes:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("writes never finished")


async def test_replicas_share_answers_through_redis(redis_url: str) -> None:
    first, _ = redis_cache(redis_url)
    second = PredictionCache(first.config)  # another replica: same Redis, same prefix
    async with (
        harness(Doubler, PerTenant, cache=first) as a,
        harness(Doubler, PerTenant, cache=second) as b,
    ):
        miss = await a.predict("doubler", {"x": 3})
        await settled(first)
        hit = await b.predict("doubler", {"x": 3.0})
        # Per-tenant answers stay with their tenant across replicas too.
        await a.predict("per-tenant", {"x": 3}, who=b"alice")
        await settled(first)
        bob = await b.predict("per-tenant", {"x": 3}, who=b"bob")
        alice = await b.predict("per-tenant", {"x": 3}, who=b"alice")
        # A purge from any replica reaches every replica's answers.
        purge = await b.cache.purge("doubler")
        after = await a.predict("doubler", {"x": 3})
    assert (miss.cache, hit.cache, hit.body) == ("miss", "hit", miss.body)
    assert hit.headers[b"x-model-version"] == b"1"
    assert (bob.cache, alice.cache) == ("miss", "hit")
    assert purge == 1 and after.cache == "miss"
    assert CALLS.items == [3.0, 3.0, 3.0, 3.0]


async def test_answers_over_the_entry_cap_are_not_stored(redis_url: str) -> None:
    cache, recorder = redis_cache(redis_url, max_entry_bytes=5)
    async with harness(Doubler, cache=cache) as h:
        replies = [await h.predict("doubler", {"x": 3}) for _ in range(2)]
        await settled(cache)
    assert [r.cache for r in replies] == ["miss", "miss"]
    assert recorder.redis_errors["oversize"] == 2


async def test_a_redis_that_is_down_is_a_miss_and_the_breaker_stops_asking() -> None:
    clock = Clock()
    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    cache, recorder = redis_cache(url, clock=clock, breaker_failures=3, breaker_reset_s=5)
    async with harness(Doubler, cache=cache) as h:
        replies = [await h.predict("doubler", {"x": 1}) for _ in range(6)]
        await settled(cache)
        assert cache.redis is not None and cache.redis.breaker.is_open
        clock.now += 5  # one trial after the reset time: it fails, the breaker reopens
        trial = await h.predict("doubler", {"x": 1})
        assert cache.redis.breaker.is_open
    assert all(r.status == 200 and r.json() == {"y": 2.0} for r in [*replies, trial])
    assert all(r.cache == "miss" for r in replies)
    assert recorder.redis_errors["error"] >= 3 and recorder.redis_errors["open"] >= 2
    assert len(CALLS.items) == 7


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield server.getsockname()[1]


async def test_a_slow_redis_costs_a_timeout_not_a_stall(black_hole: int) -> None:
    cache, recorder = redis_cache(
        f"redis://127.0.0.1:{black_hole}/0", redis_timeout_s=0.05, breaker_failures=2
    )
    async with harness(Doubler, cache=cache) as h:
        # Far above the timeout, far below any TCP timeout: a stall would fail this.
        replies = await asyncio.wait_for(
            asyncio.gather(*(h.predict("doubler", {"x": i}) for i in range(5))), 10
        )
    assert all(r.status == 200 and r.cache == "miss" for r in replies)
    assert recorder.redis_errors["timeout"] >= 2


async def test_redis_going_away_and_coming_back() -> None:
    clock = Clock()
    with own_redis() as redis:
        cache, recorder = redis_cache(redis.url, clock=clock, breaker_failures=2)
        async with harness(Doubler, cache=cache) as h:
            await h.predict("doubler", {"x": 4})
            await settled(cache)
            assert (await h.predict("doubler", {"x": 4})).cache == "hit"
            redis.kill()
            down = [await h.predict("doubler", {"x": 4}) for _ in range(4)]
            assert cache.redis is not None and cache.redis.breaker.is_open
            redis.start()  # an empty Redis on the same port
            clock.now += cache.config.breaker_reset_s
            back = await h.predict("doubler", {"x": 4})
            await settled(cache)
            again = await h.predict("doubler", {"x": 4})
    assert all(r.status == 200 and r.cache == "miss" for r in down)
    assert back.cache == "miss" and again.cache == "hit"
    assert recorder.redis_errors["open"] >= 1


async def test_a_purge_while_redis_is_down_is_a_503_naming_no_secret() -> None:
    from modelserve.errors import ServiceUnavailableError

    cache, _ = redis_cache(f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(ServiceUnavailableError) as raised:
            await cache.purge("doubler")
    finally:
        await cache.close()
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(raised.value.details)


async def test_with_redis_batches_go_to_the_model(redis_url: str) -> None:
    cache, _ = redis_cache(redis_url)
    async with harness(Doubler, cache=cache) as h:
        batches = [await h.predict("doubler", {"inputs": [{"x": 9}]}, batch=True) for _ in range(2)]
    assert [(b.status, b.cache) for b in batches] == [(200, None), (200, None)]
    assert CALLS.items == [9.0, 9.0]


def test_a_redis_url_that_is_not_one_is_refused_without_showing_it() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        CacheConfig(redis_url=SecretStr("http://:hunter2@cache:6379"))
    assert "hunter2" not in str(raised.value)
    assert CacheConfig(redis_url=SecretStr("rediss://:p@cache:6380/2")).redis_url is not None


async def test_the_fast_path_waits_for_redis_without_declining(redis_url: str) -> None:
    from modelserve.http.predict import PredictEndpoint
    from modelserve.runtime.manager import ModelRuntime
    from modelserve.service.spec import ServiceSpec

    cache, _ = redis_cache(redis_url)
    runtime = ModelRuntime([ServiceSpec.from_class(Doubler)], device="cpu")
    endpoint = PredictEndpoint(runtime, max_body_bytes=1 << 20, max_batch_inputs=8, cache=cache)
    runtime.start()
    await runtime.wait_loaded()
    answers: list[tuple[int, dict[bytes, bytes]]] = []
    scope = {"headers": [(b"content-type", b"application/json")], "query_string": b""}
    try:
        for expected in (1, 2):
            served = endpoint.serve_now(
                "doubler",
                None,
                scope,
                b'{"x": 6}',
                lambda status, head, body: answers.append((status, dict(head))),
            )
            assert served  # a lookup needs I/O: answered later, never declined
            for _ in range(500):
                if len(answers) == expected:
                    break
                await asyncio.sleep(0.01)
            await settled(cache)
    finally:
        await cache.close()
        await runtime.stop(1.0, 5.0)
    assert [(s, h[b"x-cache"]) for s, h in answers] == [(200, b"miss"), (200, b"hit")]
