"""What the runtime holds per model: one loaded version (`DeployedService`) and every version of
a name with its traffic split (`ServedModel`).

Plain state, no behaviour beyond reading it: loading lives in `runtime/loading.py`, lookups and
traffic in `runtime/routing.py`, the lifecycle in `runtime/manager.py`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from modelserve.batcher.engine import BatchEngine
from modelserve.batcher.observer import CountingObserver
from modelserve.errors import ServiceUnavailableError
from modelserve.runtime.shadow import ShadowRecorder
from modelserve.runtime.traffic import Router
from modelserve.service.spec import ServiceSpec
from modelserve.types import Replica, ServiceStatus


@dataclass(eq=False)
class DeployedService:
    """One loaded version of a model: its spec, lifecycle status and engine.

    Compared and hashed by identity (`eq=False`): the HTTP layer keys what it builds per version
    (its wire codec) by the object itself, so that goes when the version does.
    """

    spec: ServiceSpec
    status: ServiceStatus = ServiceStatus.LOADING
    # Why it is not serving, as every caller may read it: never the exception's text, which may
    # hold file paths, hostnames or secrets (S11). `detail` has the full text, for the log and
    # for admins (GET /v1/models/{name} with the `admin` scope).
    reason: str | None = None
    detail: str | None = None
    engine: BatchEngine | None = None
    replicas: list[Replica] = field(default_factory=list)
    counters: CountingObserver = field(default_factory=CountingObserver)
    loaded_at: float | None = None

    def require_ready(self) -> BatchEngine:
        """The engine, or ServiceUnavailableError saying why there is none."""
        engine = self.engine
        if self.status is ServiceStatus.READY and engine is not None:
            return engine
        name = self.spec.name
        if self.status is ServiceStatus.LOADING:
            raise ServiceUnavailableError(f"model {name!r} is still loading", retry_after_s=5)
        if self.status is ServiceStatus.FAILED:
            raise ServiceUnavailableError(
                f"model {name!r} failed to load", details={"reason": self.reason}
            )
        raise ServiceUnavailableError(f"model {name!r} is stopped")


@dataclass(eq=False)
class ServedModel:
    """Every loaded version of one model name, and how traffic is split between them."""

    name: str
    versions: dict[str, DeployedService] = field(default_factory=dict)
    router: Router | None = None
    shadows: ShadowRecorder = field(default_factory=ShadowRecorder)
    # Serializes deploy, policy switch and retire of this name (R5).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def primary(self) -> DeployedService | None:
        """The version answering unpinned requests by default."""
        if self.router is None:
            return None
        return self.versions.get(self.router.policy.primary)
