"""The cache in the predict pipeline: hits, misses, bypass, tenants, single-flight."""

from __future__ import annotations

import asyncio

import pytest

from modelserve.cache import PredictionCache
from modelserve.config import CacheConfig
from modelserve.http.predict import PredictEndpoint
from modelserve.runtime.manager import ModelRuntime
from modelserve.service.spec import ServiceSpec
from tests.cache.harness import harness
from tests.cache.services import CALLS, Doubler, PerTenant, SlowDoubler, Uncached


@pytest.fixture(autouse=True)
def _calls() -> None:
    CALLS.reset()


async def test_a_repeated_input_is_answered_from_the_cache() -> None:
    async with harness(Doubler) as h:
        first = await h.predict("doubler", {"x": 2})
        again = await h.predict("doubler", {"x": 2.0})
        other = await h.predict("doubler", {"x": 3})
    assert (first.status, first.cache, first.json()) == (200, "miss", {"y": 4.0})
    assert (again.status, again.cache, again.body) == (200, "hit", first.body)
    assert again.headers[b"x-model-version"] == b"1"
    assert other.cache == "miss"
    assert CALLS.items == [2.0, 3.0]


async def test_models_without_a_policy_or_with_the_cache_off_are_never_cached() -> None:
    async with harness(Uncached) as h:
        replies = [await h.predict("uncached", {"x": 2}) for _ in range(2)]
    assert all(r.status == 200 and r.cache is None for r in replies)
    off = PredictionCache(CacheConfig(enabled=False))
    async with harness(Doubler, cache=off) as h:
        replies += [await h.predict("doubler", {"x": 2}) for _ in range(2)]
    assert all(r.cache is None for r in replies)
    assert CALLS.items == [2.0] * 4


async def test_rejections_and_invalid_inputs_are_never_cached() -> None:
    async with harness(Doubler) as h:
        rejected = [await h.predict("doubler", {"x": 13}) for _ in range(2)]
        invalid = [await h.predict("doubler", {"x": "no"}) for _ in range(2)]
        malformed = await h.predict("doubler", b'{"x": 1,')
        (version,) = h.cache.cached_versions("doubler")
        assert version.memory is not None and len(version.memory) == 0
    assert [r.status for r in rejected] == [422, 422]
    assert [r.cache for r in rejected] == [None, None]
    assert [r.status for r in invalid] == [422, 422] and malformed.status == 400
    assert CALLS.items == [13.0, 13.0]  # the invalid ones never reached the model


async def test_raw_bodies_are_keyed_by_their_digest() -> None:
    from pydantic import BaseModel

    from modelserve import Service, cache_policy

    class Blob(BaseModel):
        data: bytes

    class Size(BaseModel):
        n: int

    class Sizer(Service[Blob, Size]):
        name = "sizer"
        isolation = "inline"
        cache = cache_policy()

        def predict(self, batch: list[Blob]) -> list[Size]:
            return [Size(n=len(b.data)) for b in batch]

    async with harness(Sizer) as h:
        a = await h.predict("sizer", b"\x00\xff" * 100, raw=True)
        b = await h.predict("sizer", b"\x00\xff" * 100, raw=True)
        c = await h.predict("sizer", b"\x00\xfe" * 100, raw=True)
    assert (a.cache, b.cache, c.cache) == ("miss", "hit", "miss")
    assert a.json() == c.json() == {"n": 200}


async def test_no_cache_skips_reading_only_for_callers_with_the_scope() -> None:
    no_cache = [(b"cache-control", b"no-cache")]
    async with harness(Doubler) as h:
        await h.predict("doubler", {"x": 2}, who=b"alice")
        member = await h.predict("doubler", {"x": 2}, who=b"alice", headers=no_cache)
        ops = await h.predict("doubler", {"x": 2}, who=b"ops", headers=no_cache)
        cased = await h.predict(
            "doubler", {"x": 2}, who=b"ops", headers=[(b"cache-control", b"max-age=0, No-Cache")]
        )
        after = await h.predict("doubler", {"x": 2}, who=b"alice")
    assert member.cache == "hit"  # ignored: served from the cache as usual
    assert (ops.status, ops.cache, cased.cache) == (200, "bypass", "bypass")
    assert after.cache == "hit"
    assert CALLS.items == [2.0, 2.0, 2.0]


async def test_per_tenant_answers_are_never_served_to_another_tenant() -> None:
    async with harness(PerTenant, Doubler) as h:
        alice = await h.predict("per-tenant", {"x": 2}, who=b"alice")
        bob = await h.predict("per-tenant", {"x": 2}, who=b"bob")
        alice_again = await h.predict("per-tenant", {"x": 2}, who=b"alice")
        shared_alice = await h.predict("doubler", {"x": 2}, who=b"alice")
        shared_bob = await h.predict("doubler", {"x": 2}, who=b"bob")
    assert (alice.cache, bob.cache, alice_again.cache) == ("miss", "miss", "hit")
    assert (shared_alice.cache, shared_bob.cache) == ("miss", "hit")


async def test_identical_concurrent_misses_call_the_model_once() -> None:
    async with harness(SlowDoubler) as h:
        replies = await asyncio.gather(
            *(h.predict("slow-doubler", {"x": 5}) for _ in range(20)),
            h.predict("slow-doubler", {"x": 6}),
        )
        later = await h.predict("slow-doubler", {"x": 5})
        assert len(h.cache.cached_versions("slow-doubler")[0].flights) == 0
    assert all(r.status == 200 for r in replies)
    assert sorted(CALLS.items) == [5.0, 6.0]
    outcomes = [r.cache for r in replies[:20]]
    assert outcomes.count("miss") == 1 and outcomes.count("shared") == 19
    assert {r.body for r in replies[:20]} == {b'{"y":10.0}'}
    assert later.cache == "hit"


async def test_a_follower_that_goes_away_does_not_cancel_the_others() -> None:
    async with harness(SlowDoubler) as h:
        tasks = [asyncio.create_task(h.predict("slow-doubler", {"x": 7})) for _ in range(3)]
        await asyncio.sleep(0.05)
        tasks[0].cancel()  # the leader's client disconnects
        tasks[1].cancel()
        done = await tasks[2]
        assert (await h.predict("slow-doubler", {"x": 7})).cache == "hit"
    assert (done.status, done.cache) == (200, "shared")
    assert CALLS.items == [7.0]


async def test_an_answer_computed_across_a_purge_is_not_stored() -> None:
    async with harness(SlowDoubler) as h:
        pending = asyncio.create_task(h.predict("slow-doubler", {"x": 8}))
        await asyncio.sleep(0.05)
        assert await h.cache.purge("slow-doubler") == 0
        assert (await pending).status == 200
        assert (await h.predict("slow-doubler", {"x": 8})).cache == "miss"
        assert (await h.predict("slow-doubler", {"x": 8})).cache == "hit"
        assert await h.cache.purge("slow-doubler") == 1
        assert (await h.predict("slow-doubler", {"x": 8})).cache == "miss"


async def test_batch_items_are_looked_up_one_by_one() -> None:
    async with harness(Doubler) as h:
        one = await h.predict("doubler", {"x": 1})
        mixed = await h.predict(
            "doubler", {"inputs": [{"x": 1}, {"x": 2}, {"x": 13}, {"x": 2.0}]}, batch=True
        )
        again = await h.predict("doubler", {"inputs": [{"x": 2}, {"x": 1}]}, batch=True)
        single = await h.predict("doubler", {"x": 2})
        rejected = await h.predict("doubler", {"inputs": [{"x": 13}]}, batch=True)
    assert one.cache == "miss"
    assert (mixed.status, mixed.cache) == (200, "partial")
    assert mixed.json() == {
        "outputs": [{"y": 2.0}, {"y": 4.0}, None, {"y": 4.0}],
        "errors": [{"index": 2, "code": "item_rejected", "message": "unlucky", "details": None}],
    }
    assert (again.cache, again.json()["outputs"]) == ("hit", [{"y": 4.0}, {"y": 2.0}])
    assert single.cache == "hit"  # stored by the batch, found by a one-input request
    assert (rejected.cache, rejected.json()["errors"][0]["index"]) == ("miss", 0)
    # The batch's misses went to the model together, its two spellings of 2.0 once; hits
    # never again, the rejection each time.
    assert CALLS.items == [1.0, 2.0, 13.0, 13.0]


async def test_a_hit_on_the_fast_path_is_answered_before_serve_now_returns() -> None:
    runtime = ModelRuntime([ServiceSpec.from_class(Doubler)], device="cpu")
    endpoint = PredictEndpoint(runtime, max_body_bytes=1 << 20, max_batch_inputs=8)
    runtime.start()
    await runtime.wait_loaded()
    answers: list[tuple[int, dict[bytes, bytes], bytes]] = []
    scope = {"headers": [(b"content-type", b"application/json")], "query_string": b""}
    try:
        for _ in range(2):
            served = endpoint.serve_now(
                "doubler",
                None,
                scope,
                b'{"x": 4}',
                lambda status, head, body: answers.append((status, dict(head), body)),
            )
            assert served and len(answers) == _ + 1  # answered synchronously, no task
    finally:
        await runtime.stop(1.0, 5.0)
    assert [a[1][b"x-cache"] for a in answers] == [b"miss", b"hit"]
    assert answers[0][2] == answers[1][2] == b'{"y":8.0}'
    assert CALLS.items == [4.0]


def test_the_test_client_sees_the_cache_as_the_server_does() -> None:
    from modelserve.testing import ServiceClient

    with ServiceClient(Doubler) as client:
        first = client.predict({"x": 3})
        again = client.predict({"x": 3.0})
        batch = client.predict_batch([{"x": 3}, {"x": 4}])
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.body == first.body
    assert batch.headers["x-cache"] == "partial"
    assert CALLS.items == [3.0, 4.0]


async def test_a_fresh_batch_with_repeated_items_is_a_miss_computed_once() -> None:
    async with harness(Doubler) as h:
        fresh = await h.predict("doubler", {"inputs": [{"x": 5}, {"x": 5.0}]}, batch=True)
    assert (fresh.cache, fresh.json()["outputs"]) == ("miss", [{"y": 10.0}, {"y": 10.0}])
    assert CALLS.items == [5.0]


async def test_an_operator_tunes_or_switches_off_a_models_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelserve.config import Settings
    from tests.cache.recorder import Clock

    monkeypatch.setenv(
        "MODELSERVE_CACHE__MODELS", '{"doubler": {"ttl_s": 5}, "per-tenant": {"enabled": false}}'
    )
    config = Settings().cache
    clock = Clock()
    async with harness(
        Doubler, PerTenant, Uncached, cache=PredictionCache(config, clock=clock)
    ) as h:
        assert (await h.predict("doubler", {"x": 1})).cache == "miss"
        clock.now += 4.9
        assert (await h.predict("doubler", {"x": 1})).cache == "hit"
        clock.now += 0.1  # the override's 5 s, not the policy's 60
        assert (await h.predict("doubler", {"x": 1})).cache == "miss"
        off = [await h.predict("per-tenant", {"x": 1}) for _ in range(2)]
        assert all(r.status == 200 and r.cache is None for r in off)
    assert config.models["doubler"].ttl_s == 5
    # An override never turns caching on for a Service without a policy.
    forced = PredictionCache(Settings(cache={"models": {"uncached": {"ttl_s": 5}}}).cache)  # type: ignore[arg-type]
    assert forced.policy("uncached", None) is None
