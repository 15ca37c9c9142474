"""`ModelRuntime`: the lifecycle of every served model version of one server process.

Models load in the background so `/livez` answers at once; a model whose setup fails is marked
FAILED with its reason while the others keep serving (R19). Each model name may hold several
loaded versions; a TrafficPolicy says which answers unpinned requests (primary, canaries) and
which is mirrored (shadow). Deploy, policy switch and retire of one name are serialized by a
per-name lock, so concurrent rollouts cannot deadlock or leave two copies of a version (R5).

The runtime is the one writer of its parts, each with one job:

- `ModelTable` (`runtime/routing.py`): lookups, which version answers, what is mirrored;
- `VersionLoader` (`runtime/loading.py`): one version's replicas and engine, up and down;
- `DeployedService`, `ServedModel` (`runtime/versions.py`): the state they share.

Its read methods (`get`, `resolve`, `versions`, ...) are the table's, kept here so callers
need one object; the predict pipeline reads `runtime.table` directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator

from modelserve.errors import ConflictError, ServiceNotFoundError, ServiceUnavailableError
from modelserve.runtime.heap import HeapFreezer
from modelserve.runtime.loading import (
    BatchTraceFactory,
    ObserverFactory,
    ReplicaFactory,
    VersionLoader,
    default_replica_factory,
    stop_all,
)
from modelserve.runtime.routing import ModelTable
from modelserve.runtime.shadow import DEFAULT_SHADOW_BUFFER, ShadowRecord
from modelserve.runtime.traffic import Router, TrafficPolicy
from modelserve.runtime.versions import DeployedService, ServedModel
from modelserve.service.spec import ServiceSpec
from modelserve.types import ServiceStatus

__all__ = [
    "REPLICA_STOP_S",
    "BatchTraceFactory",
    "DeployedService",
    "ModelRuntime",
    "ObserverFactory",
    "ReplicaFactory",
    "ServedModel",
    "default_replica_factory",
]

logger = logging.getLogger("modelserve.runtime")
# How long, in all, stopping the replicas may wait for batches still running at shutdown.
REPLICA_STOP_S = 5.0


class ModelRuntime:
    """Owns every loaded model version of one server process."""

    def __init__(
        self,
        specs: Iterable[ServiceSpec] = (),
        *,
        device: str = "cpu",
        replica_factory: ReplicaFactory = default_replica_factory,
        observer_factory: ObserverFactory | None = None,
        shadow_buffer: int = DEFAULT_SHADOW_BUFFER,
        batch_trace_factory: BatchTraceFactory | None = None,
        heap: HeapFreezer | None = None,
    ) -> None:
        self.table = ModelTable(shadow_buffer=shadow_buffer)
        self.loader = VersionLoader(
            device=device,
            replica_factory=replica_factory,
            observer_factory=observer_factory,
            batch_trace_factory=batch_trace_factory,
        )
        self._heap = heap
        self._load_tasks: list[asyncio.Task[None]] = []
        for spec in specs:
            if self.table.versions(spec.name):
                raise ValueError(f"two services are named {spec.name!r}")
            model = self.table.entry(spec.name)
            model.versions[spec.version] = DeployedService(spec)
            model.router = Router(TrafficPolicy(primary=spec.version))

    # -- lookup (the table's) ----------------------------------------------------------------

    def get(self, name: str) -> DeployedService:
        """The primary version of the named model, or ServiceNotFoundError."""
        return self.table.get(name)

    def model(self, name: str) -> ServedModel:
        """Every version of the named model, or ServiceNotFoundError."""
        return self.table.model(name)

    def resolve(
        self, name: str, version: str | None = None, sticky_key: str | None = None
    ) -> DeployedService:
        """The version that answers a request: pinned, or chosen by the traffic policy."""
        return self.table.resolve(name, version, sticky_key)

    def mirror(self, name: str) -> DeployedService | None:
        """The shadow version to copy this request to, if the policy samples it."""
        return self.table.mirror(name)

    def record_shadow(self, name: str, record: ShadowRecord) -> None:
        """Keep one shadow comparison for the model."""
        self.table.record_shadow(name, record)

    def shadow_records(self, name: str, limit: int = 100) -> list[ShadowRecord]:
        """The newest shadow comparisons of a model (per process)."""
        return self.table.shadow_records(name, limit)

    def policy(self, name: str) -> TrafficPolicy | None:
        """The current traffic policy of a model."""
        return self.table.policy(name)

    def versions(self, name: str) -> dict[str, DeployedService]:
        """Loaded versions of a model (a copy)."""
        return self.table.versions(name)

    def models(self) -> list[ServedModel]:
        """Every served model name that has a policy."""
        return self.table.models()

    def __iter__(self) -> Iterator[DeployedService]:
        """Every loaded version of every model."""
        return iter(self.table)

    def __len__(self) -> int:
        return len(self.table)

    def is_ready(self, *, any_ready: bool = False) -> bool:
        """Every model's primary version ready (default), or at least one (`any_ready`)."""
        return self.table.is_ready(any_ready=any_ready)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading every initial version in the background."""
        loop = asyncio.get_running_loop()
        for deployed in self.table:
            self._load_tasks.append(loop.create_task(self.loader.load(deployed)))
        if self._heap is not None:
            initial = list(self._load_tasks)
            self._load_tasks.append(loop.create_task(self._freeze_when_loaded(self._heap, initial)))

    @staticmethod
    async def _freeze_when_loaded(heap: HeapFreezer, loads: list[asyncio.Task[None]]) -> None:
        if loads:
            await asyncio.wait(loads)
        heap.freeze_now()

    async def wait_loaded(self, timeout_s: float | None = None) -> None:
        """Wait until every initial version is READY or FAILED."""
        if self._load_tasks:
            await asyncio.wait(self._load_tasks, timeout=timeout_s)

    async def deploy(self, spec: ServiceSpec) -> DeployedService:
        """Load and warm one version next to the others; idempotent per (name, version).

        Raises ServiceUnavailableError with the reason if setup fails; nothing stays loaded.
        """
        model = self.table.entry(spec.name)
        async with model.lock:
            existing = model.versions.get(spec.version)
            if existing is not None and existing.status is not ServiceStatus.FAILED:
                return existing
            deployed = DeployedService(spec)
            model.versions[spec.version] = deployed
            await self.loader.load(deployed)
            if deployed.status is not ServiceStatus.READY:
                del model.versions[spec.version]
                raise ServiceUnavailableError(
                    f"model {spec.name!r} version {spec.version!r} failed to load",
                    details={"reason": deployed.reason},
                )
            if self._heap is not None:
                self._heap.loaded()
            return deployed

    async def set_policy(self, name: str, policy: TrafficPolicy) -> None:
        """Switch a model's traffic atomically; every version named must be loaded and ready."""
        model = self.table.entry(name)
        async with model.lock:
            for version in policy.versions:
                deployed = model.versions.get(version)
                if deployed is None or deployed.status is not ServiceStatus.READY:
                    raise ConflictError(
                        f"model {name!r} version {version!r} is not loaded and ready"
                    )
            model.router = Router(policy)
        logger.info("model %r traffic: %s", name, policy)

    async def withdraw(self, name: str) -> None:
        """Drop a model's traffic policy: it stops answering; its versions stay until retired."""
        model = self.table.find(name)
        if model is None:
            return
        async with model.lock:
            model.router = None
        logger.info("model %r withdrawn from traffic", name)

    async def retire(self, name: str, version: str, *, drain_timeout_s: float = 30.0) -> None:
        """Stop routing to a version, drain its in-flight work, stop it and let memory go."""
        model = self.table.model(name)
        async with model.lock:
            if model.router is not None and version in model.router.policy.versions:
                raise ConflictError(
                    f"model {name!r} version {version!r} still receives traffic; change the"
                    " traffic policy first"
                )
            deployed = model.versions.pop(version, None)
            if deployed is None:
                raise ServiceNotFoundError(f"model {name!r} has no loaded version {version!r}")
            if not model.versions:
                model.router = None
            await self.loader.unload(deployed, drain_timeout_s)
            if self._heap is not None:
                self._heap.release()

    async def stop(
        self, drain_timeout_s: float = 30.0, stop_timeout_s: float = REPLICA_STOP_S
    ) -> None:
        """Drain in-flight work for up to `drain_timeout_s`, then stop every replica at once,
        waiting up to `stop_timeout_s` in all for them (a thread replica still inside
        `predict` then is left to end with the process)."""
        for task in self._load_tasks:
            task.cancel()
        await asyncio.gather(*self._load_tasks, return_exceptions=True)
        deployed = list(self.table)
        await asyncio.gather(
            *(d.engine.drain(drain_timeout_s) for d in deployed if d.engine is not None)
        )
        for d in deployed:
            if d.status is ServiceStatus.READY:
                d.status = ServiceStatus.STOPPED
        replicas = [r for d in deployed for r in d.replicas]
        await asyncio.to_thread(stop_all, replicas, stop_timeout_s)
        if self._heap is not None:
            self._heap.close()
