"""`ModelRuntime`: loads served models and their versions, routes predictions between them.

Models load in the background so `/livez` answers at once; a model whose setup fails is marked
FAILED with its reason while the others keep serving (R19). Each model name may hold several
loaded versions; a TrafficPolicy says which answers unpinned requests (primary, canaries) and
which is mirrored (shadow). Deploy, policy switch and retire of one name are serialized by a
per-name lock, so concurrent rollouts cannot deadlock or leave two copies of a version (R5).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from modelserve.batcher.engine import BatchEngine, BatchTrace
from modelserve.batcher.observer import CountingObserver, EngineObserver
from modelserve.errors import (
    ConflictError,
    ServiceNotFoundError,
    ServiceUnavailableError,
)
from modelserve.runtime.heap import HeapFreezer
from modelserve.runtime.shadow import DEFAULT_SHADOW_BUFFER, ShadowRecord, ShadowRecorder
from modelserve.runtime.traffic import Router, TrafficPolicy
from modelserve.service.spec import ServiceSpec
from modelserve.types import Replica, ServiceStatus

logger = logging.getLogger("modelserve.runtime")
# How long, in all, stopping the replicas may wait for batches still running at shutdown.
REPLICA_STOP_S = 5.0

ReplicaFactory = Callable[[ServiceSpec, str, int], Replica]
ObserverFactory = Callable[[ServiceSpec], EngineObserver]
BatchTraceFactory = Callable[[ServiceSpec], BatchTrace]


def default_replica_factory(spec: ServiceSpec, device: str, index: int) -> Replica:
    """Build a thread, process or inline replica as the service's `isolation` asks."""
    label = f"{spec.name}-{spec.version}-{index}"
    if spec.isolation == "process":
        from modelserve.runtime.process import ProcessReplica

        assert spec.source is not None  # checked by ServiceSpec.from_class
        return ProcessReplica(spec, device=device, label=label)
    if spec.isolation == "inline":
        from modelserve.runtime.inline import InlineReplica

        return InlineReplica(spec.cls, device=device, label=label, artifacts=spec.artifact_dir)
    from modelserve.runtime.thread import ThreadReplica

    return ThreadReplica(spec.cls, device=device, label=label, artifacts=spec.artifact_dir)


@dataclass(eq=False)
class DeployedService:
    """One loaded version of a model: its spec, lifecycle status and engine."""

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
    # Whatever the HTTP layer builds once per version (its wire codec): kept here so a request
    # finds it with one attribute read, and it goes when the version does.
    wire: Any = None

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
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def primary(self) -> DeployedService | None:
        """The version answering unpinned requests by default."""
        if self.router is None:
            return None
        return self.versions.get(self.router.policy.primary)


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

    def on_rerun(self) -> None:
        for o in self._observers:
            rerun = getattr(o, "on_rerun", None)  # optional hook
            if rerun is not None:
                rerun()


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
        self._models: dict[str, ServedModel] = {}
        self._heap = heap
        self._batch_trace_factory = batch_trace_factory
        self._device = device
        self._replica_factory = replica_factory
        self._observer_factory = observer_factory
        self._shadow_buffer = shadow_buffer
        self._load_tasks: list[asyncio.Task[None]] = []
        for spec in specs:
            if spec.name in self._models:
                raise ValueError(f"two services are named {spec.name!r}")
            model = self._model(spec.name)
            model.versions[spec.version] = DeployedService(spec)
            model.router = Router(TrafficPolicy(primary=spec.version))

    def _model(self, name: str) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = ServedModel(
                name, shadows=ShadowRecorder(self._shadow_buffer)
            )
        return model

    # -- lookup ----------------------------------------------------------------------------

    def get(self, name: str) -> DeployedService:
        """The primary version of the named model, or ServiceNotFoundError."""
        model = self._models.get(name)
        primary = None if model is None else model.primary
        if primary is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return primary

    def model(self, name: str) -> ServedModel:
        """Every version of the named model, or ServiceNotFoundError."""
        model = self._models.get(name)
        if model is None or not model.versions:
            raise ServiceNotFoundError(f"no model named {name!r}")
        return model

    def resolve(
        self, name: str, version: str | None = None, sticky_key: str | None = None
    ) -> DeployedService:
        """The version that answers a request: pinned, or chosen by the traffic policy."""
        model = self._models.get(name)
        if model is None or model.router is None:
            raise ServiceNotFoundError(f"no model named {name!r}")
        chosen = version if version is not None else model.router.pick(sticky_key)
        deployed = model.versions.get(chosen)
        if deployed is None:
            raise ServiceNotFoundError(f"model {name!r} has no loaded version {chosen!r}")
        return deployed

    def mirror(self, name: str) -> DeployedService | None:
        """The shadow version to copy this request to, if the policy samples it."""
        model = self._models.get(name)
        if model is None or model.router is None:
            return None
        version = model.router.mirror()
        return None if version is None else model.versions.get(version)

    def record_shadow(self, name: str, record: ShadowRecord) -> None:
        """Keep one shadow comparison for the model."""
        model = self._models.get(name)
        if model is not None:
            model.shadows.add(record)

    def shadow_records(self, name: str, limit: int = 100) -> list[ShadowRecord]:
        """The newest shadow comparisons of a model (per process)."""
        return self.model(name).shadows.latest(limit)

    def policy(self, name: str) -> TrafficPolicy | None:
        """The current traffic policy of a model."""
        model = self._models.get(name)
        return None if model is None or model.router is None else model.router.policy

    def versions(self, name: str) -> dict[str, DeployedService]:
        """Loaded versions of a model (a copy)."""
        model = self._models.get(name)
        return {} if model is None else dict(model.versions)

    def models(self) -> list[ServedModel]:
        """Every served model name that has a policy."""
        return [m for m in self._models.values() if m.router is not None]

    def __iter__(self) -> Iterator[DeployedService]:
        """Every loaded version of every model."""
        return iter([d for m in self._models.values() for d in m.versions.values()])

    def __len__(self) -> int:
        return sum(len(m.versions) for m in self._models.values())

    def is_ready(self, *, any_ready: bool = False) -> bool:
        """Every model's primary version ready (default), or at least one (`any_ready`)."""
        states = [
            m.primary is not None and m.primary.status is ServiceStatus.READY for m in self.models()
        ]
        if not states:
            return True
        return any(states) if any_ready else all(states)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin loading every initial version in the background."""
        loop = asyncio.get_running_loop()
        for deployed in self:
            self._load_tasks.append(loop.create_task(self._load(deployed)))
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
        model = self._model(spec.name)
        async with model.lock:
            existing = model.versions.get(spec.version)
            if existing is not None and existing.status is not ServiceStatus.FAILED:
                return existing
            deployed = DeployedService(spec)
            model.versions[spec.version] = deployed
            await self._load(deployed)
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
        model = self._model(name)
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
        model = self._models.get(name)
        if model is None:
            return
        async with model.lock:
            model.router = None
        logger.info("model %r withdrawn from traffic", name)

    async def retire(self, name: str, version: str, *, drain_timeout_s: float = 30.0) -> None:
        """Stop routing to a version, drain its in-flight work, stop it and let memory go."""
        model = self.model(name)
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
            await self._unload(deployed, drain_timeout_s)

    async def _load(self, deployed: DeployedService) -> None:
        spec = deployed.spec
        device = spec.device or self._device
        started = time.perf_counter()
        replicas = [self._replica_factory(spec, device, i) for i in range(spec.replicas)]
        deployed.replicas = replicas
        try:
            rest = replicas
            if spec.isolation == "thread" and len(replicas) > 1:
                # Thread replicas share one interpreter: the first setup() runs alone so the
                # imports it triggers finish before the others start. Lazy module imports
                # (transformers' `from transformers import BertModel`) are not thread-safe
                # and fail with ImportError when two setups race through them.
                await asyncio.wrap_future(replicas[0].start())
                rest = replicas[1:]
            await asyncio.gather(*(asyncio.wrap_future(r.start()) for r in rest))
        except Exception as exc:
            deployed.status = ServiceStatus.FAILED
            deployed.detail = f"setup failed: {type(exc).__name__}: {exc}"
            deployed.reason = f"setup failed ({type(exc).__name__}); the server log has the details"
            logger.error("model %r failed to load: %s", spec.name, deployed.detail, exc_info=exc)
            await asyncio.to_thread(_stop_all, replicas)
            deployed.replicas = []
            return
        observers: list[EngineObserver] = [deployed.counters]
        if self._observer_factory is not None:
            observers.append(self._observer_factory(spec))
        engine = BatchEngine(
            name=spec.name,
            config=spec.batching,
            executors=replicas,
            check_output=_output_checker(spec.output_type),
            observer=_FanOut(observers),
            trace_batch=(
                self._batch_trace_factory(spec) if self._batch_trace_factory is not None else None
            ),
            isolate_failures=spec.isolate_failures,
        )
        engine.start()
        deployed.engine = engine
        deployed.loaded_at = time.time()
        deployed.status = ServiceStatus.READY
        logger.info(
            "model %r version %s ready on %s (%d replica(s), %.2fs)",
            spec.name,
            spec.version,
            device,
            len(replicas),
            time.perf_counter() - started,
        )

    async def _unload(self, deployed: DeployedService, drain_timeout_s: float) -> None:
        if deployed.engine is not None:
            await deployed.engine.drain(drain_timeout_s)
        deployed.status = ServiceStatus.STOPPED
        replicas, deployed.replicas = deployed.replicas, []
        deployed.engine = None
        await asyncio.to_thread(_stop_all, replicas)
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
        deployed = list(self)
        await asyncio.gather(
            *(d.engine.drain(drain_timeout_s) for d in deployed if d.engine is not None)
        )
        for d in deployed:
            if d.status is ServiceStatus.READY:
                d.status = ServiceStatus.STOPPED
        replicas = [r for d in deployed for r in d.replicas]
        await asyncio.to_thread(_stop_all, replicas, stop_timeout_s)
        if self._heap is not None:
            self._heap.close()


def _stop_all(replicas: Sequence[Replica], timeout_s: float | None = None) -> None:
    """Stop replicas; with `timeout_s`, all at once and for at most that long in all.

    One after another, each replica's stop waits up to its own 5 s for a batch in progress, so
    a server with two busy replicas took 10 s to stop after its graceful timeout (R1 allows 2).
    """
    if timeout_s is None:
        for replica in replicas:
            _stop_one(replica)
        return
    stoppers = [
        threading.Thread(target=_stop_one, args=(r, timeout_s), name="modelserve-stop", daemon=True)
        for r in replicas
    ]
    for stopper in stoppers:
        stopper.start()
    deadline = time.monotonic() + timeout_s
    for stopper in stoppers:
        stopper.join(max(0.0, deadline - time.monotonic()))


def _stop_one(replica: Replica, timeout_s: float | None = None) -> None:
    try:
        if timeout_s is None:
            replica.stop()
        else:
            replica.stop(timeout_s)
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
