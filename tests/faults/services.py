"""Services the fault suite serves: each makes one scenario easy to trigger and to check.

No model files and no heavy dependencies; every output is predictable from the input, so a
scenario can tell a right answer from a wrong one, not only a 200 from a 500.
"""

from __future__ import annotations

import time
from typing import Annotated

from pydantic import BaseModel, Field

from modelserve import Service, batching

# R1: this many requests held in one sleeping batch when SIGTERM arrives.
HELD_BATCH = 200
# The overload scenario's model: one batch takes WORK_BATCH_S; CAPACITY = running + queued.
WORK_BATCH_S = 0.05
WORK_BATCH = 8
WORK_QUEUE = 8
CAPACITY = WORK_BATCH + WORK_QUEUE
# The poisoned-batch scenario: an input equal to this makes `predict` raise for its batch.
POISON = -1.0
POISON_BATCH = 16


class Nap(BaseModel):
    seconds: Annotated[float, Field(ge=0, le=5.0)] = 0.0
    tag: int = 0


class Napped(BaseModel):
    tag: int
    batch_size: int


def _nap(batch: list[Nap]) -> list[Napped]:
    time.sleep(max(item.seconds for item in batch))
    return [Napped(tag=item.tag, batch_size=len(batch)) for item in batch]


class Held(Service[Nap, Napped]):
    """Holds HELD_BATCH requests in one running batch (it closes only when full)."""

    name = "held"
    batching = batching(max_batch_size=HELD_BATCH, max_wait_ms=10_000, max_queue=512)

    def predict(self, batch: list[Nap]) -> list[Napped]:
        return _nap(batch)


class Tagged(BaseModel):
    tag: int


class Work(Service[Tagged, Napped]):
    """A 50 ms-per-batch model with capacity 16 (8 running, 8 queued): the overload target."""

    name = "work"
    batching = batching(max_batch_size=WORK_BATCH, max_wait_ms=2, max_queue=WORK_QUEUE)

    def predict(self, batch: list[Tagged]) -> list[Napped]:
        time.sleep(WORK_BATCH_S)
        return [Napped(tag=item.tag, batch_size=len(batch)) for item in batch]


class Number(BaseModel):
    x: float


class Doubled(BaseModel):
    y: float


class Doubler(Service[Number, Doubled]):
    """Fast and always right: the 'other client' of the hostile-client scenarios."""

    name = "doubler"
    batching = batching(max_batch_size=16, max_wait_ms=1)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        return [Doubled(y=2 * n.x) for n in batch]


class Poisoned(Service[Number, Doubled]):
    """Raises for a whole batch when any input is POISON, as a real model's kernel would."""

    name = "poisoned"
    batching = batching(max_batch_size=POISON_BATCH, max_wait_ms=50)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        if any(n.x == POISON for n in batch):
            raise ValueError("input out of the model's domain")
        return [Doubled(y=2 * n.x) for n in batch]


class Isolated(Service[Number, Doubled]):
    """Two worker-process replicas (isolation="process"): one is killed under load."""

    name = "isolated"
    isolation = "process"
    replicas = 2
    batching = batching(max_batch_size=4, max_wait_ms=1)

    def predict(self, batch: list[Number]) -> list[Doubled]:
        time.sleep(0.005)
        return [Doubled(y=2 * n.x) for n in batch]
