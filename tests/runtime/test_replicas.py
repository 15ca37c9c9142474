"""Thread replicas of one service: the first setup runs alone, the rest side by side."""

from __future__ import annotations

import asyncio
import threading
import time

from pydantic import BaseModel

from modelserve import Service
from modelserve.runtime.manager import ModelRuntime
from modelserve.service.spec import ServiceSpec

setups: list[tuple[str, float]] = []
lock = threading.Lock()


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float


class Slow(Service[In, Out]):
    """Its setup takes a while, long enough for overlapping setups to show."""

    name = "slow"
    replicas = 3

    def setup(self, device: str) -> None:
        with lock:
            setups.append(("start", time.perf_counter()))
        time.sleep(0.2)
        with lock:
            setups.append(("end", time.perf_counter()))

    def predict(self, batch: list[In]) -> list[Out]:
        return [Out(y=i.x) for i in batch]


def test_first_thread_replica_sets_up_alone_then_the_others_together() -> None:
    # Lazy imports in setup() (transformers' `from transformers import BertModel`) raise
    # ImportError when two threads race through them; the first replica's setup imports them
    # for everyone before the rest start.
    async def scenario() -> str:
        runtime = ModelRuntime([ServiceSpec.from_class(Slow)])
        runtime.start()
        await runtime.wait_loaded(30)
        status = runtime.get("slow").status.value
        await runtime.stop(5)
        return str(status)

    setups.clear()
    assert asyncio.run(scenario()) == "ready"
    kinds = [kind for kind, _ in setups]
    assert kinds == ["start", "end", "start", "start", "end", "end"]
