"""`ModelRuntime`: loads every served model, tracks its status, and routes predictions to it.

Models load in the background so `/livez` answers at once; a model whose setup fails is marked
FAILED with its reason while the others keep serving (R19).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from modelserve.batching.engine import BatchEngine
from modelserve.batching.observer import CountingObserver, EngineObserver
from modelserve.errors import ServiceNotFoundError, ServiceUnavailableError
from modelserve.service.spec import ServiceSpec
from modelserve.types import Replica, ServiceStatus

logger = logging.getLogger("modelserve.runtime")

ReplicaFactory = Callable[[ServiceSpec, str, int], Replica]
ObserverFactory = Callable[[ServiceSpec], EngineObserver]


def default_replica_factory(spec: ServiceSpec, device: str, index: int) -> Replica:
    """Build a thread or process replica as the service's `isolation` asks."""
    label = f"{spec.name}-{index}"
    if spec.isolation == "process":
        from modelserve.runtime.process import ProcessReplica

        assert spec.source is not None  # checked by ServiceSpec.from_class
        return ProcessReplica(spec, device=device, label=label)
    from modelserve.runtime.thread import ThreadReplica

    return ThreadReplica(spec.cls, device=device, label=label)


@dataclass(eq=False)
class DeployedService:
    """One served model: its spec, lifecycle status and engine."""

    spec: ServiceSpec
    status: ServiceStatus = ServiceStatus.LOADING
    reason: str | None = None
    engine: BatchEngine | None = None
    replicas: list[Replica] = field(default_factory=list)
    counters: CountingObserver = field(default_factory=CountingObserver)
    loaded_at: float | None = None

    def require_ready(self) -> BatchEngine:
        """The engine, or ServiceUnavailableError saying why there is none."""
        engine = self.engine
        if self.status is ServiceStatus.READY and engine is not None:
            return engine
        if self.status is ServiceStatus.LOADING:
            raise ServiceUnavailableError(
                f"model {self.spec.name!r} is still loading", retry_after_s=5
            )
        if self.status is ServiceStatus.FAILED:
            raise ServiceUnavailableError(
                f"model {self.spec.name!r} failed to load", details={"reason": self.reason}
            )
        raise ServiceUnavailableError(f"model {self.spec.name!r} is stopped")


class _FanOut:
    """Sends engine events to several observers."""

    def __init__(self, observers: Sequence[EngineObserver]) -> None:
        self._observers = observers

    def on_batch(self, size: int, queue_wait_s: float, run_s: float) -> None:
        for o in self._observers:
            o.on_batch(size, queue_wait_s, run_s)

    def on_shed(self, count: int) -> None:
        for o in self._observers:
            o.on_shed(count)

    def on_expired(self, where: Any) -> None:
        for o in self._observers:
            o.on_expired(where)

    def on_error(self, kind: str) -> None:
        for o in self._observers:
            o.on_error(kind)


class ModelRuntime:
    """Owns every DeployedService of one server process."""

    def __init__(
        self,
        specs: Iterable[ServiceSpec],
        *,
        device: str = "cpu",
        replica_factory: ReplicaFactory = default_replica_factory,
        observer_factory: ObserverFactory | None = None,
    ) -> None:
        self._services: dict[str, DeployedService] = {}
        for spec in specs:
            if spec.name in self._services:
                raise ValueError(f"two services are named {spec.name!r}")
            self._services[spec.name] = DeployedService(spec)
        self._device = device
        self._replica_factory = replica_factory
        self._observer_factory = observer_factory
        self._load_tasks: list[asyncio.Task[None]] = []

    # -- lookup ----------------------------------------------------------------------------

    def get(self, name: str) -> DeployedService:
        """The named service, or ServiceNotFoundError."""
        service = self._services.get(name)
        if service is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return service

    def __iter__(self) -> Any:
        return iter(self._services.values())

    def __len__(self) -> int:
        return len(self._services)

    def is_ready(self, *, any_ready: bool = False) -> bool:
        """All services ready (default) or at least one (`any_ready`)."""
        states = [s.status is ServiceStatus.READY for s in self._services.values()]
        if not states:
            return True
        return any(states) if any_ready else all(states)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading every service in the background."""
        for service in self._services.values():
            task = asyncio.get_running_loop().create_task(self._load(service))
            self._load_tasks.append(task)

    async def wait_loaded(self, timeout_s: float | None = None) -> None:
        """Wait until every service is READY or FAILED."""
        if self._load_tasks:
            await asyncio.wait(self._load_tasks, timeout=timeout_s)

    async def _load(self, service: DeployedService) -> None:
        spec = service.spec
        device = spec.device or self._device
        started = time.perf_counter()
        replicas = [self._replica_factory(spec, device, i) for i in range(spec.replicas)]
        service.replicas = replicas
        try:
            await asyncio.gather(*(asyncio.wrap_future(r.start()) for r in replicas))
        except Exception as exc:
            service.status = ServiceStatus.FAILED
            service.reason = f"setup failed: {type(exc).__name__}: {exc}"
            logger.error("model %r failed to load: %s", spec.name, service.reason, exc_info=exc)
            await asyncio.to_thread(_stop_all, replicas)
            return
        observers: list[EngineObserver] = [service.counters]
        if self._observer_factory is not None:
            observers.append(self._observer_factory(spec))
        engine = BatchEngine(
            name=spec.name,
            config=spec.batching,
            executors=replicas,
            check_output=_output_checker(spec.output_type),
            observer=_FanOut(observers),
        )
        engine.start()
        service.engine = engine
        service.loaded_at = time.time()
        service.status = ServiceStatus.READY
        logger.info(
            "model %r version %s ready on %s (%d replica(s), %.2fs)",
            spec.name,
            spec.version,
            device,
            len(replicas),
            time.perf_counter() - started,
        )

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Drain in-flight work, then stop every replica."""
        for task in self._load_tasks:
            task.cancel()
        await asyncio.gather(*self._load_tasks, return_exceptions=True)
        services = list(self._services.values())
        await asyncio.gather(
            *(s.engine.drain(drain_timeout_s) for s in services if s.engine is not None)
        )
        for service in services:
            if service.status is ServiceStatus.READY:
                service.status = ServiceStatus.STOPPED
        await asyncio.to_thread(_stop_all, [r for s in services for r in s.replicas])


def _stop_all(replicas: Sequence[Replica]) -> None:
    for replica in replicas:
        try:
            replica.stop()
        except Exception:
            logger.exception("stopping a replica failed")


def _output_checker(output_type: type[BaseModel]) -> Callable[[Any], Any]:
    def check(output: Any) -> Any:
        if isinstance(output, output_type):
            return output
        try:
            return output_type.model_validate(output)
        except ValidationError as exc:
            raise ValueError(str(exc)) from exc

    return check
