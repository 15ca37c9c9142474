"""Services the cache tests serve: each counts its model calls, so a test can tell a hit."""

from __future__ import annotations

import json
import threading
import time

from pydantic import BaseModel, Field

from modelserve import ItemError, Service, batching, cache_policy


class X(BaseModel):
    x: float = Field(ge=-1e6, le=1e6)
    tags: dict[str, int] = Field(default_factory=dict)


class Y(BaseModel):
    y: float


class Calls:
    """Model calls and inputs seen, shared by the test and the model's thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[float] = []

    def add(self, batch: list[X]) -> None:
        with self.lock:
            self.items.extend(item.x for item in batch)

    def reset(self) -> None:
        with self.lock:
            self.items.clear()


CALLS = Calls()


class Doubler(Service[X, Y]):
    """Doubles x, inline; rejects x == 13 (an item error must never be cached)."""

    name = "doubler"
    isolation = "inline"
    cache = cache_policy(ttl_s=60)

    def predict(self, batch: list[X]) -> list[Y | ItemError]:
        CALLS.add(batch)
        return [ItemError("unlucky") if i.x == 13 else Y(y=i.x * 2) for i in batch]


class SlowDoubler(Service[X, Y]):
    """Doubles x on a thread after a pause: concurrent identical requests overlap."""

    name = "slow-doubler"
    batching = batching(max_batch_size=64, max_wait_ms=5)
    cache = cache_policy(ttl_s=60)

    def predict(self, batch: list[X]) -> list[Y]:
        CALLS.add(batch)
        time.sleep(0.2)
        return [Y(y=i.x * 2) for i in batch]


class PerTenant(Doubler):
    """Doubler whose answers are per tenant."""

    name = "per-tenant"
    cache = cache_policy(ttl_s=60, per_tenant=True)


class Uncached(Doubler):
    """Doubler without a cache policy."""

    name = "uncached"
    cache = None


class CachedScaled(Service[X, Y]):
    """The registry tests' Scaled (x times its version's `config.json` scale), cached, and
    counting its calls: versions answer differently, so a stale answer shows."""

    name = "cached-scaled"
    batching = batching(max_batch_size=16, max_wait_ms=1)
    cache = cache_policy(ttl_s=600)

    def setup(self, device: str) -> None:
        assert self.artifacts is not None, "served from the registry only"
        config = json.loads((self.artifacts / "config.json").read_text())
        self.scale = float(config["scale"])

    def predict(self, batch: list[X]) -> list[Y]:
        CALLS.add(batch)
        return [Y(y=item.x * self.scale) for item in batch]
