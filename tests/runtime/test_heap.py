"""The heap freezer: models leave the collector's full collections, retired ones still go."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from modelserve import Service, ServiceSpec
from modelserve.runtime.heap import HeapFreezer
from modelserve.runtime.manager import ModelRuntime
from modelserve.runtime.traffic import TrafficPolicy


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    # The collector is process-wide: leave it as the other tests expect it.
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    """An object in a reference cycle: only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_freeze_now_moves_the_heap_out_of_collections() -> None:
    heap = HeapFreezer()
    heap.freeze_now()
    assert gc.get_freeze_count() > 1000


def test_disabled_freezer_does_nothing() -> None:
    heap = HeapFreezer(enabled=False)
    heap.freeze_now()
    heap.loaded()
    assert gc.get_freeze_count() == 0


def test_release_makes_frozen_cycles_collectable_then_refreezes() -> None:
    heap = HeapFreezer()
    node = Node()
    ref = weakref.ref(node)
    heap.freeze_now()
    del node
    gc.collect()
    assert ref() is not None  # frozen: the collector does not see it
    heap.release()
    assert gc.get_freeze_count() == 0
    gc.collect()  # the next full collection frees the cycle, then freezes what is left
    assert ref() is None
    assert gc.get_freeze_count() > 1000
    heap.close()


def test_loaded_freezes_after_the_next_full_collection() -> None:
    heap = HeapFreezer()
    heap.loaded()
    assert gc.get_freeze_count() == 0
    gc.collect(1)  # a younger generation: not yet
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert gc.get_freeze_count() > 1000
    heap.close()


class In(BaseModel):
    x: float


class Out(BaseModel):
    y: float


instances: weakref.WeakSet[Any] = weakref.WeakSet()


class Cyclic(Service[In, Out]):
    """Holds a reference cycle, as many real models do (modules, hooks, bound methods)."""

    name = "cyclic"
    version = "1"

    def setup(self, device: str) -> None:
        self.me = self
        instances.add(self)

    def predict(self, batch: list[In]) -> list[Out]:
        return [Out(y=i.x) for i in batch]


class CyclicV2(Cyclic):
    version = "2"


def test_runtime_freezes_after_loading_and_frees_a_retired_frozen_version() -> None:
    async def scenario() -> None:
        runtime = ModelRuntime([ServiceSpec.from_class(Cyclic)], heap=HeapFreezer())
        runtime.start()
        await runtime.wait_loaded(30)
        assert gc.get_freeze_count() > 1000  # the initial version is frozen
        assert len(instances) == 1
        await runtime.deploy(ServiceSpec.from_class(CyclicV2))
        await runtime.set_policy("cyclic", TrafficPolicy(primary="2"))
        await runtime.retire("cyclic", "1")
        gc.collect()
        assert [s.version for s in instances] == ["2"]  # v1's cycle was collected
        assert gc.get_freeze_count() > 1000  # and the heap is frozen again
        await runtime.stop(5)

    asyncio.run(scenario())
