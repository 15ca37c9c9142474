"""Traffic policies: which version of a model answers an unpinned request, and what is mirrored.

A policy is an immutable value; switching traffic is replacing the policy object, which is
atomic for every request that starts afterwards.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from modelserve.errors import ConfigError


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """Split of one model's unpinned traffic between its versions.

    `primary` answers whatever the canaries do not take; each canary takes `percent` (0-100) of
    unpinned requests; `sticky` keeps a caller on the same side of the split (by hashing its
    rate key) so one client does not flip between versions; `shadow` receives a copy of
    `shadow_percent` of requests whose answers are compared and recorded, never returned.
    """

    primary: str
    canary: tuple[tuple[str, float], ...] = ()
    sticky: bool = False
    shadow: str | None = None
    shadow_percent: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for version, percent in self.canary:
            if not 0 <= percent <= 100 or not math.isfinite(percent):
                raise ConfigError(f"canary share of {version!r} must be within 0..100")
            if version == self.primary:
                raise ConfigError("a canary version must differ from the primary version")
            total += percent
        if total > 100:
            raise ConfigError("canary shares add up to more than 100 %")
        if not 0 <= self.shadow_percent <= 100:
            raise ConfigError("shadow_percent must be within 0..100")
        if self.shadow is not None and self.shadow == self.primary:
            raise ConfigError("the shadow version must differ from the primary version")

    @property
    def versions(self) -> frozenset[str]:
        """Every version this policy routes to or mirrors to."""
        named = {self.primary, *(v for v, _ in self.canary)}
        if self.shadow is not None:
            named.add(self.shadow)
        return frozenset(named)


class Router:
    """Picks versions for one policy; built once per policy so each request is a few compares."""

    def __init__(self, policy: TrafficPolicy, *, rng: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._rng = rng
        # Cumulative thresholds in [0, 1): a draw below the first goes to the first canary...
        bounds: list[tuple[float, str]] = []
        edge = 0.0
        for version, percent in policy.canary:
            edge += percent / 100.0
            bounds.append((edge, version))
        self._bounds = tuple(bounds)
        self._shadow_share = policy.shadow_percent / 100.0

    def pick(self, sticky_key: str | None = None) -> str:
        """The version that answers this unpinned request."""
        if not self._bounds:
            return self.policy.primary
        if self.policy.sticky and sticky_key is not None:
            draw = _unit_hash(sticky_key)
        else:
            draw = self._rng()
        for edge, version in self._bounds:
            if draw < edge:
                return version
        return self.policy.primary

    def mirror(self) -> str | None:
        """The shadow version if this request is to be mirrored, else None."""
        if self.policy.shadow is None or self._shadow_share <= 0:
            return None
        return self.policy.shadow if self._rng() < self._shadow_share else None


def _unit_hash(key: str) -> float:
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64
