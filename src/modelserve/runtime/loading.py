"""`VersionLoader`: brings one model version up (replicas set up, engine started) and down.

Its one job is a single version's replicas and engine; which versions exist and which answer is
the table's (`runtime/routing.py`), when to load or retire them the manager's
(`runtime/manager.py`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from modelserve.batcher.engine import BatchEngine, BatchTrace
from modelserve.batcher.observer import EngineObserver
from modelserve.runtime.versions import DeployedService
from modelserve.service.spec import ServiceSpec
from modelserve.types import Replica, ServiceStatus

logger = logging.getLogger("modelserve.runtime")

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


class VersionLoader:
    """Sets up a version's replicas and starts its engine; drains and stops them again."""

    def __init__(
        self,
        *,
        device: str = "cpu",
        replica_factory: ReplicaFactory = default_replica_factory,
        observer_factory: ObserverFactory | None = None,
        batch_trace_factory: BatchTraceFactory | None = None,
    ) -> None:
        self._device = device
        self._replica_factory = replica_factory
        self._observer_factory = observer_factory
        self._batch_trace_factory = batch_trace_factory

    async def load(self, deployed: DeployedService) -> None:
        """Set up every replica, then start the engine: READY, or FAILED with the reason."""
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
            await asyncio.to_thread(stop_all, replicas)
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

    async def unload(self, deployed: DeployedService, drain_timeout_s: float) -> None:
        """Drain the version's in-flight work, then stop its replicas (STOPPED)."""
        if deployed.engine is not None:
            await deployed.engine.drain(drain_timeout_s)
        deployed.status = ServiceStatus.STOPPED
        replicas, deployed.replicas = deployed.replicas, []
        deployed.engine = None
        await asyncio.to_thread(stop_all, replicas)


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


def stop_all(replicas: Sequence[Replica], timeout_s: float | None = None) -> None:
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
