"""Whether a service's answers may be reused: the `cache_policy(...)` value object.

A Service opts in with `cache = cache_policy(ttl_s=3600)`; without it nothing is cached. The
policy lives here, beside `batching`, because the Service class declares it; the cache itself
(keys, backends, single-flight) is `modelserve.cache`, used by the HTTP pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelserve.errors import ServiceDefinitionError

DEFAULT_TTL_S = 3600.0
DEFAULT_MAX_ITEMS = 100_000
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# An answer is stored for at most a year: a TTL is how a forgotten entry leaves a shared Redis.
MAX_TTL_S = 365 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one service's answers are cached (see `cache_policy`).

    `ttl_s`: how long an answer is reused. `max_items` and `max_bytes`: the in-process cache's
    budget for this model (least recently used answers go first); Redis entries are bounded by
    the TTL and by the server's per-entry cap instead. `per_tenant`: answers depend on who
    asks, so the caller's tenant (the owner of its credential) is part of the key and one
    tenant never receives an answer computed for another.
    """

    ttl_s: float = DEFAULT_TTL_S
    max_items: int = DEFAULT_MAX_ITEMS
    max_bytes: int = DEFAULT_MAX_BYTES
    per_tenant: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.ttl_s <= MAX_TTL_S:
            raise ServiceDefinitionError(f"cache_policy: ttl_s must be in (0, {MAX_TTL_S:g}]")
        if self.max_items < 1:
            raise ServiceDefinitionError("cache_policy: max_items must be >= 1")
        if self.max_bytes < 1:
            raise ServiceDefinitionError("cache_policy: max_bytes must be >= 1")
        if not isinstance(self.per_tenant, bool):
            raise ServiceDefinitionError("cache_policy: per_tenant must be True or False")


def cache_policy(
    ttl_s: float = DEFAULT_TTL_S,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_bytes: int = DEFAULT_MAX_BYTES,
    *,
    per_tenant: bool = False,
) -> CachePolicy:
    """Declare that a service's answers may be reused (`cache = cache_policy(ttl_s=600)`).

    Only for deterministic models whose output depends on the input alone (or, with
    `per_tenant=True`, on the input and the caller's tenant): see docs/cache.md for when not
    to cache. Answers are keyed by the exact version that computed them, so a promotion,
    rollback or canary change never serves another version's answer.
    """
    return CachePolicy(ttl_s=ttl_s, max_items=max_items, max_bytes=max_bytes, per_tenant=per_tenant)
