"""`PredictionCache` and `VersionCache`: the cache as the predict pipeline sees it.

The pipeline asks `PredictionCache.version(deployed)` for the version that its `admit` step
picked (None unless that version's Service declares a `cache_policy` and the cache is on),
builds the request's key with `VersionCache.key`, and gets its answer with `VersionCache.serve`,
which reads the store, joins an identical flight in progress, or calls the model (`compute`)
once and stores the encoded answer (`encode`).

With the in-process store a hit is answered without a coroutine: `serve` returns a future that
is already done, so the task-free fast path stays task-free. With Redis a lookup needs I/O:
`serve` then returns a task's future, which every adapter already knows how to wait for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelserve.cache.answers import Answer, Answers, CacheObserver, NullObserver, Outcome
from modelserve.cache.breaker import CircuitBreaker
from modelserve.cache.flight import SingleFlight, follow
from modelserve.cache.keys import canonical_input, entry_key, raw_input, served_version_id
from modelserve.cache.memory import MemoryStore
from modelserve.cache.redis import RedisStore
from modelserve.config import CacheConfig
from modelserve.runtime.versions import DeployedService
from modelserve.service.caching import CachePolicy

if TYPE_CHECKING:
    import redis.asyncio as aioredis

Compute = Callable[[], "asyncio.Future[Any]"]
"""Submits the request's input to the version's engine; may raise (503 queue full)."""
ComputeMany = Callable[[list[int]], "asyncio.Future[list[Any]]"]
"""Submits the batch request's inputs at these indexes together; their results, in order (an
output, or the exception that rejected that input)."""
Encode = Callable[[Any], tuple[bytes, bool]]
"""One model output as the response body, and whether it held a non-finite number."""

_UNSET = object()


class VersionCache:
    """The cache of one loaded version: its key material, store and flights."""

    __slots__ = (
        "_cache",
        "flights",
        "memory",
        "name",
        "policy",
        "version",
        "version_id",
    )

    def __init__(
        self,
        cache: PredictionCache,
        deployed: DeployedService,
        policy: CachePolicy,
        memory: MemoryStore | None,
    ) -> None:
        spec = deployed.spec
        self._cache = cache
        self.name = spec.name
        self.version = spec.version
        self.policy = policy
        self.version_id = served_version_id(spec)
        self.memory = memory
        self.flights = SingleFlight()

    def key(self, item: Any, raw_body: bytes | None, tenant: str | None) -> bytes | None:
        """The key of one validated input (`raw_body`: the body of a raw request), or None
        when it has no canonical form (it is then answered without the cache).

        `tenant` is used only when the policy says answers are per tenant."""
        canonical = raw_input(raw_body) if raw_body is not None else canonical_input(item)
        if canonical is None:
            return None
        return entry_key(
            self.name,
            self.version_id,
            tenant if self.policy.per_tenant else None,
            canonical,
        )

    def serve(
        self, key: bytes, *, read: bool, compute: Compute, encode: Encode
    ) -> asyncio.Future[Answer]:
        """The request's answer: stored (hit), shared with an identical request in flight,
        or computed by the model and stored. `read=False` (the caller's `no-cache`) skips the
        store and any flight, calls the model and stores its fresh answer.

        Raises what `compute` raises (the answer is then an error, and nothing is stored).
        """
        cache = self._cache
        observer = cache.observer
        if read:
            memory = self.memory
            if memory is not None:
                hit = memory.get(key)
                if hit is not None:
                    observer.on_lookup(self.name, "hit")
                    done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
                    done.set_result(hit)
                    return done
            shared = self.flights.find(key)
            if shared is not None:
                observer.on_lookup(self.name, "shared")
                return follow(shared, "shared")
            if cache.redis is not None:
                return self._lookup_remote(key, compute, encode)
        outcome: Outcome = "miss" if read else "bypass"
        engine = compute()
        observer.on_lookup(self.name, outcome)
        flights = self.flights
        # A bypass leads a flight only when none is in progress; it never replaces one.
        shared = flights.start(key) if flights.find(key) is None else _detached()
        generation = cache.generation(self.name)
        if engine.done():
            self._finish(key, engine, encode, shared, outcome, generation)
        else:
            engine.add_done_callback(
                lambda done: self._finish(key, done, encode, shared, outcome, generation)
            )
        return follow(shared, None)

    @property
    def caches_batches(self) -> bool:
        """True when batch requests are looked up item by item (in-process only)."""
        return self.memory is not None

    def serve_many(
        self, keys: list[bytes | None], *, read: bool, compute: ComputeMany, encode: Encode
    ) -> asyncio.Future[Answers] | None:
        """A batch request's answers, item by item: stored ones (hits), the others computed
        in one engine submission and stored. Each result is an `Answer`, or the exception that
        rejected its input (never stored). A `None` key is computed and not stored.

        Identical items of one batch are computed once (the others share its answer); there
        is no single-flight across requests: a batch's misses are one engine call already.
        In-process only (None with Redis: the request then goes to the model as before).
        """
        memory = self.memory
        if memory is None:
            return None
        observer = self._cache.observer
        results = Answers([None] * len(keys))
        missing: list[int] = []
        # Later items with the same key as a missing one: index -> the index computed for it.
        repeats: dict[int, int] = {}
        first: dict[bytes, int] = {}
        for index, key in enumerate(keys):
            hit = memory.get(key) if read and key is not None else None
            if hit is not None:
                results[index] = hit
                observer.on_lookup(self.name, "hit")
            elif key is not None and key in first:
                repeats[index] = first[key]
            else:
                missing.append(index)
                if key is not None:
                    first[key] = index
        loop = asyncio.get_running_loop()
        if not missing:
            done: asyncio.Future[Answers] = loop.create_future()
            done.set_result(results)
            return done
        engine = compute(missing)
        outcome: Outcome = "miss" if read else "bypass"
        for _ in missing:
            observer.on_lookup(self.name, outcome)
        for _ in repeats:
            observer.on_lookup(self.name, "shared")
        generation = self._cache.generation(self.name)
        answered: asyncio.Future[Answers] = loop.create_future()

        def finish(done: asyncio.Future[list[Any]]) -> None:
            if answered.done():
                return
            if done.cancelled():
                answered.cancel()
                return
            error = done.exception()
            if error is not None:  # the whole submission failed (deadline, 503)
                answered.set_exception(error)
                return
            store = self._cache.generation(self.name) == generation
            try:
                for index, result in zip(missing, done.result(), strict=True):
                    if isinstance(result, BaseException):
                        results[index] = result
                        continue
                    payload, non_finite = encode(result)
                    answer = results[index] = Answer(payload, non_finite, outcome, result)
                    key = keys[index]
                    if store and key is not None:
                        memory.put(key, answer)
            except Exception as exc:  # an output the codec cannot write: the request's 500
                answered.set_exception(exc)
                return
            for index, source in repeats.items():
                found = results[source]
                results[index] = found.as_outcome("shared") if isinstance(found, Answer) else found
            answered.set_result(results)

        if engine.done():
            finish(engine)
        else:
            engine.add_done_callback(finish)
            # A client that goes away cancels the submission, as awaiting it would have.
            answered.add_done_callback(lambda mine: engine.cancel() if mine.cancelled() else None)
        return answered

    def _lookup_remote(
        self, key: bytes, compute: Compute, encode: Encode
    ) -> asyncio.Future[Answer]:
        shared = self.flights.start(key)
        task = asyncio.get_running_loop().create_task(
            self._remote(key, compute, encode, shared, self._cache.generation(self.name))
        )
        self._cache.hold(task)
        return follow(shared, None)

    async def _remote(
        self,
        key: bytes,
        compute: Compute,
        encode: Encode,
        shared: asyncio.Future[Answer],
        generation: int,
    ) -> None:
        cache = self._cache
        assert cache.redis is not None  # only called in Redis mode
        try:
            hit = await cache.redis.get(self.name, key)
            if hit is not None:
                cache.observer.on_lookup(self.name, "hit")
                self.flights.end(key, shared)
                shared.set_result(hit)
                return
            engine = compute()
            cache.observer.on_lookup(self.name, "miss")
            await asyncio.wait([engine])
        except BaseException as exc:  # compute refused (503): every waiter gets that answer
            self.flights.end(key, shared)
            if not shared.done():
                shared.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self._finish(key, engine, encode, shared, "miss", generation)

    def _finish(
        self,
        key: bytes,
        engine: asyncio.Future[Any],
        encode: Encode,
        shared: asyncio.Future[Answer],
        outcome: Outcome,
        generation: int,
    ) -> None:
        """The model call is over: encode its answer once, store it, hand it to everyone."""
        self.flights.end(key, shared)
        if shared.done():
            return
        if engine.cancelled():
            shared.cancel()
            return
        error = engine.exception()
        if error is not None:  # a rejected input, a deadline, a failed model: never stored
            shared.set_exception(error)
            return
        result = engine.result()
        try:
            payload, non_finite = encode(result)
        except Exception as exc:  # an output the codec cannot write: that request's 500
            shared.set_exception(exc)
            return
        answer = Answer(payload, non_finite, outcome, result)
        cache = self._cache
        # A purge while the model was running: this answer may predate what the purge was
        # for, so it is handed out but not stored.
        if cache.generation(self.name) == generation:
            if self.memory is not None:
                self.memory.put(key, answer)
            elif cache.redis is not None:
                cache.redis.put_soon(self.name, key, answer, self.policy.ttl_s)
        shared.set_result(answer)


def _detached() -> asyncio.Future[Answer]:
    return asyncio.get_running_loop().create_future()


class PredictionCache:
    """The prediction cache of one predict pipeline (one server process).

    In-process by default: one `MemoryStore` per loaded version, sized by its policy, gone
    with the version. With `config.redis_url`, one `RedisStore` shared by every version (and
    every worker and replica using that Redis). `clock` is injectable for tests.
    """

    def __init__(
        self,
        config: CacheConfig | None = None,
        *,
        observer: CacheObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
        redis_client_factory: Callable[[], aioredis.Redis] | None = None,
    ) -> None:
        config = config if config is not None else CacheConfig()
        self.config = config
        self.observer: CacheObserver = observer if observer is not None else NullObserver()
        self.clock = clock
        self.redis: RedisStore | None = None
        if config.enabled and config.redis_url is not None:
            self.redis = RedisStore(
                config.redis_url.get_secret_value(),
                prefix=config.key_prefix,
                timeout_s=config.redis_timeout_s,
                breaker=CircuitBreaker(
                    failures=config.breaker_failures, reset_s=config.breaker_reset_s, clock=clock
                ),
                max_entry_bytes=config.max_entry_bytes,
                observer=self.observer,
                client_factory=redis_client_factory,
            )
        self._versions: dict[int, VersionCache | None] = {}
        self._refs: dict[int, weakref.ref[DeployedService]] = {}
        self._generations: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def version(self, deployed: DeployedService) -> VersionCache | None:
        """The cache of a loaded version; None when it is not cached (no policy, or off).

        One dict read per request once known; forgotten when the version is freed."""
        found = self._versions.get(id(deployed), _UNSET)
        if found is _UNSET:
            return self._build(deployed)
        return found  # type: ignore[return-value]

    def _build(self, deployed: DeployedService) -> VersionCache | None:
        key = id(deployed)
        policy = self.policy(deployed.spec.name, deployed.spec.cache)
        built: VersionCache | None = None
        if policy is not None:
            memory = None
            if self.redis is None:
                memory = MemoryStore(
                    deployed.spec.name,
                    ttl_s=policy.ttl_s,
                    max_items=policy.max_items,
                    max_bytes=min(policy.max_bytes, self.config.max_bytes),
                    observer=self.observer,
                    clock=self.clock,
                )
            built = VersionCache(self, deployed, policy, memory)
        versions, refs, observer = self._versions, self._refs, self.observer

        def forget(_: object) -> None:
            gone = versions.pop(key, None)
            refs.pop(key, None)
            if gone is not None and gone.memory is not None:
                observer.on_bytes(gone.name, -gone.memory.bytes)

        versions[key] = built
        refs[key] = weakref.ref(deployed, forget)
        return built

    def policy(self, name: str, declared: CachePolicy | None) -> CachePolicy | None:
        """The policy a model's versions are cached with: the Service's, with the operator's
        `cache.models[name]` override applied; None when either switches it off."""
        if declared is None or not self.config.enabled:
            return None
        override = self.config.models.get(name)
        if override is None:
            return declared
        if not override.enabled:
            return None
        changes = override.model_dump(exclude={"enabled"}, exclude_none=True)
        return dataclasses.replace(declared, **changes) if changes else declared

    def generation(self, name: str) -> int:
        """How many purges of `name` this process has seen."""
        return self._generations.get(name, 0)

    def hold(self, task: asyncio.Task[None]) -> None:
        """Keep a background task referenced until it ends (the loop only holds weak ones)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cached_versions(self, name: str) -> list[VersionCache]:
        """The cached versions of `name` loaded in this process."""
        return [v for v in self._versions.values() if v is not None and v.name == name]

    async def purge(self, name: str) -> int:
        """Drop every answer of model `name` (every version and tenant); how many.

        In-process: this process's answers. With Redis: every answer in that Redis (all
        workers and replicas). Answers being computed now are handed out but not stored.
        Raises ServiceUnavailableError when Redis does not answer.
        """
        self._generations[name] = self.generation(name) + 1
        count = 0
        for version in self.cached_versions(name):
            if version.memory is not None:
                count += version.memory.purge()
        if self.redis is not None:
            count += await self.redis.purge(name)
        return count

    async def close(self) -> None:
        """Stop background work and close the Redis connections."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
        if self.redis is not None:
            await self.redis.close()
